#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif
import WeftCore
import WeftLinux

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
    /// one (`Files.replace`: a temporary in the same directory, mode 0644 whatever the umask,
    /// fsync, rename); the directory is created (0755, as flanneld's `os.MkdirAll`) if missing.
    public static func write(
        to path: String, network: IPv4Prefix, subnet: IPv4Prefix, mtu: Int, ipMasquerade: Bool
    ) throws(SubnetEnvironmentFileError) {
        let text = render(network: network, subnet: subnet, mtu: mtu, ipMasquerade: ipMasquerade)
        do {
            try Files.makeDirectories(Files.directoryName(of: path))
            try Files.replace(path, with: Array(text.utf8), mode: 0o644)
        } catch {
            throw SubnetEnvironmentFileError(error)
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
        (try? Files.read(path, limit: 65536)) ?? nil
    }
}

/// A failed step of writing subnet.env, with the path and the system's reason.
public struct SubnetEnvironmentFileError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The step that failed and its object, e.g. "mkdir /run/flannel" or "rename …".
    public var operation: String
    /// The errno it failed with.
    public var errno: Int32

    init(_ error: SystemError) {
        operation = error.operation
        errno = error.errno
    }

    public var description: String {
        "subnet.env: \(SystemError(errno: errno, operation: operation))"
    }
}


extension Substring {
    fileprivate func trimmingASCIIWhitespace() -> Substring {
        var result = self
        while let first = result.first, first == " " || first == "\t" { result = result.dropFirst() }
        while let last = result.last, last == " " || last == "\t" { result = result.dropLast() }
        return result
    }
}
