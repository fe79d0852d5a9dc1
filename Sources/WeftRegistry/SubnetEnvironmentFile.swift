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

    /// flanneld's four lines (`SubnetEnvironmentFormat.render`).
    public static func render(network: IPv4Prefix, subnet: IPv4Prefix, mtu: Int, ipMasquerade: Bool) -> String {
        SubnetEnvironmentFormat.render(network: network, subnet: subnet, mtu: mtu, ipMasquerade: ipMasquerade)
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

    /// The file's variables (`SubnetEnvironmentFormat.variables`); none when it cannot be read.
    static func readVariables(at path: String) -> [String: String] {
        guard let bytes = readFile(at: path) else { return [:] }
        return SubnetEnvironmentFormat.variables(in: bytes)
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
