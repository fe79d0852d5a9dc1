#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif
import WeftCore

/// flanneld's `subnet.env` (default `/run/flannel/subnet.env`), which the CNI plugin and
/// container runtimes read to learn the node's subnet and MTU, and which flanneld reads back on
/// restart to keep the same subnet.
public enum SubnetEnvironmentFile {
    /// flanneld's default path.
    public static let defaultPath = "/run/flannel/subnet.env"

    /// flanneld's four lines, e.g.
    /// `FLANNEL_NETWORK=10.244.0.0/16`, `FLANNEL_SUBNET=10.244.1.1/24`, `FLANNEL_MTU=1472`,
    /// `FLANNEL_IPMASQ=false`. FLANNEL_SUBNET is the lease's first host address (the tunnel's),
    /// with the lease's prefix length.
    public static func render(network: IPv4Prefix, subnet: IPv4Prefix, mtu: Int, ipMasquerade: Bool) -> String {
        let tunnelAddress = IPv4Address(rawValue: subnet.network.rawValue &+ 1)
        return """
            FLANNEL_NETWORK=\(network)
            FLANNEL_SUBNET=\(tunnelAddress)/\(subnet.length)
            FLANNEL_MTU=\(mtu)
            FLANNEL_IPMASQ=\(ipMasquerade)

            """
    }

    /// Writes the file atomically, so readers see the old or the new file and never a partial
    /// one: the directory is created (0755) if missing, the text goes to a temporary file in the
    /// same directory (rename is only atomic within a file system), which is fsynced, set to 0644
    /// whatever the umask, and renamed over the target.
    public static func write(
        to path: String, network: IPv4Prefix, subnet: IPv4Prefix, mtu: Int, ipMasquerade: Bool
    ) throws(SubnetEnvironmentFileError) {
        let text = render(network: network, subnet: subnet, mtu: mtu, ipMasquerade: ipMasquerade)
        let directory = directoryName(of: path)
        try makeDirectories(directory)

        let temporaryPath = "\(directory)/.\(baseName(of: path)).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let descriptor = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw .init(operation: "create", path: temporaryPath, errno: errno) }
        var written = false
        defer {
            if !written { unlink(temporaryPath) }
        }
        do {
            defer { close(descriptor) }
            try writeAll(Array(text.utf8), to: descriptor, path: temporaryPath)
            guard fchmod(descriptor, 0o644) == 0 else { throw SubnetEnvironmentFileError(operation: "chmod", path: temporaryPath, errno: errno) }
            guard fsync(descriptor) == 0 else { throw SubnetEnvironmentFileError(operation: "fsync", path: temporaryPath, errno: errno) }
        }
        guard rename(temporaryPath, path) == 0 else { throw .init(operation: "rename", path: path, errno: errno) }
        written = true
        // Persist the rename itself; failure here leaves a complete file either way, so ignore it.
        let directoryDescriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryDescriptor >= 0 {
            _ = fsync(directoryDescriptor)
            close(directoryDescriptor)
        }
    }

    /// The subnet a previous run recorded (FLANNEL_SUBNET 10.244.1.1/24 gives 10.244.1.0/24),
    /// so a restarted node asks for the same one; nil when the file or line is missing or bad.
    public static func previousSubnet(at path: String) -> IPv4Prefix? {
        guard let value = readVariables(at: path)["FLANNEL_SUBNET"] else { return nil }
        return NetworkConfig.parseCIDR(value)
    }

    /// The network a previous run recorded (FLANNEL_NETWORK), e.g. to clean up its masquerade rules.
    public static func previousNetwork(at path: String) -> IPv4Prefix? {
        guard let value = readVariables(at: path)["FLANNEL_NETWORK"] else { return nil }
        return NetworkConfig.parseCIDR(value)
    }

    /// `KEY=VALUE` lines, read leniently as flanneld's dotenv reader does: blank lines and `#`
    /// comments skipped, `export ` prefixes and matching quotes removed, the last occurrence wins.
    static func readVariables(at path: String) -> [String: String] {
        guard let bytes = readFile(at: path), let text = String(validating: bytes, as: UTF8.self) else { return [:] }
        var variables: [String: String] = [:]
        for rawLine in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
            var line = rawLine.trimmingASCIIWhitespace()
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = line.dropFirst("export ".count).trimmingASCIIWhitespace() }
            guard let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals].trimmingASCIIWhitespace()
            var value = line[line.index(after: equals)...].trimmingASCIIWhitespace()
            if value.count >= 2, let first = value.first, first == "\"" || first == "'", value.last == first {
                value = value.dropFirst().dropLast()
            }
            variables[String(key)] = String(value)
        }
        return variables
    }

    /// The whole file, or nil when it cannot be read; subnet.env is tiny, so a 64 KiB cap is ample.
    private static func readFile(at path: String) -> [UInt8]? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while contents.count < 65536 {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if count == 0 { break }
            contents.append(contentsOf: chunk[..<count])
        }
        return contents
    }

    private static func writeAll(_ bytes: [UInt8], to descriptor: Int32, path: String) throws(SubnetEnvironmentFileError) {
        var offset = 0
        while offset < bytes.count {
            let count = bytes.withUnsafeBytes { writeToDescriptor(descriptor, $0.baseAddress! + offset, $0.count - offset) }
            if count < 0 {
                if errno == EINTR { continue }
                throw .init(operation: "write", path: path, errno: errno)
            }
            offset += count
        }
    }

    /// `mkdir -p` with mode 0755, like Go's `os.MkdirAll(dir, 0755)` in flanneld.
    private static func makeDirectories(_ directory: String) throws(SubnetEnvironmentFileError) {
        var status = stat()
        if stat(directory, &status) == 0 {
            guard status.st_mode & S_IFMT == S_IFDIR else { throw .init(operation: "mkdir", path: directory, errno: ENOTDIR) }
            return
        }
        let parent = directoryName(of: directory)
        if parent != directory { try makeDirectories(parent) }
        // Another writer may create it between the stat and here; that is fine.
        guard mkdir(directory, 0o755) == 0 || errno == EEXIST else {
            throw .init(operation: "mkdir", path: directory, errno: errno)
        }
    }

    private static func directoryName(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        let directory = trimmed[..<slash]
        return directory.isEmpty ? "/" : String(directory)
    }

    private static func baseName(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }
}

/// A failed step of writing subnet.env, with the path and the system's reason.
public struct SubnetEnvironmentFileError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The step that failed: "mkdir", "create", "write", "chmod", "fsync" or "rename".
    public var operation: String
    /// The file or directory the step acted on.
    public var path: String
    /// The errno it failed with.
    public var errno: Int32

    /// Records a failed step.
    public init(operation: String, path: String, errno: Int32) {
        self.operation = operation
        self.path = path
        self.errno = errno
    }

    public var description: String {
        "subnet.env: \(operation) \(path): \(String(cString: strerror(errno)))"
    }
}

/// The C `write`, reachable by name inside `SubnetEnvironmentFile`, whose own `write(to:)` hides it.
private func writeToDescriptor(_ descriptor: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(descriptor, buffer, count)
}

extension Substring {
    fileprivate func trimmingASCIIWhitespace() -> Substring {
        var result = self
        while let first = result.first, first == " " || first == "\t" { result = result.dropFirst() }
        while let last = result.last, last == " " || last == "\t" { result = result.dropLast() }
        return result
    }
}
