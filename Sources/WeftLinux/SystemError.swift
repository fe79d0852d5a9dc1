import Glibc

/// A failed system call: the errno it left and what Weft was doing, e.g.
/// `open /dev/net/tun: No such file or directory (errno 2)`.
public struct SystemError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The errno value (positive).
    public let errno: Int32
    /// What was attempted, with its object: "open /dev/net/tun", "netlink add route 10.244.0.0/16 dev flannel0".
    public let operation: String

    public init(errno: Int32, operation: String) {
        self.errno = errno
        self.operation = operation
    }

    /// The C library's text for `errno` ("No such file or directory").
    public var message: String {
        guard let text = strerror(errno) else { return "Unknown error \(errno)" }
        return String(cString: text)
    }

    public var description: String {
        "\(operation): \(message) (errno \(errno))"
    }
}
