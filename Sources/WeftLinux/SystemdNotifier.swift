import CWeftLinux
import Glibc

/// sd_notify(3) without libsystemd: one datagram per state change to the AF_UNIX socket that
/// systemd names in $NOTIFY_SOCKET for a `Type=notify` unit (a path, or "@name" for the
/// abstract namespace). flanneld's packaged units are `Type=notify`: without READY=1 systemd
/// would time the start out and kill the node.
public struct SystemdNotifier: Sendable {
    /// The socket's sun_path bytes: the path, or a 0 byte and the name for "@name".
    private let address: [UInt8]
    /// For error messages.
    public let socketDescription: String

    /// nil when `notifySocket` (the value of $NOTIFY_SOCKET) is unset or empty: not under
    /// systemd, nothing to tell. A value that cannot be an AF_UNIX address is refused.
    public init?(notifySocket: String?) throws(SystemError) {
        guard let notifySocket, !notifySocket.isEmpty else { return nil }
        var bytes = Array(notifySocket.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: sockaddr_un().sun_path)
        guard bytes.count < capacity, bytes.first == 0 || bytes.first == UInt8(ascii: "/") else {
            throw SystemError(errno: EINVAL, operation: "NOTIFY_SOCKET '\(notifySocket)' (not an absolute path or @name of under \(capacity) bytes)")
        }
        address = bytes
        socketDescription = notifySocket
    }

    /// Sends `state` (e.g. "READY=1\nSTATUS=forwarding") in one datagram.
    public func notify(_ state: String) throws(SystemError) {
        let fd = try Syscall.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, "unix \(socketDescription)")
        defer { _ = Glibc.close(fd) }
        var socketAddress = sockaddr_un()
        socketAddress.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &socketAddress.sun_path) { path in
            path.copyBytes(from: address)
        }
        // An abstract name's length counts exactly its bytes; a path's includes its NUL.
        let length = socklen_t(MemoryLayout<sa_family_t>.size + address.count + (address.first == 0 ? 0 : 1))
        let message = Array(state.utf8)
        let description = "unix \(socketDescription)"
        let result: Result<Int, SystemError> = message.withUnsafeBytes { bytes in
            withUnsafePointer(to: socketAddress) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                    Result { () throws(SystemError) in try Syscall.sendto(fd, bytes, raw, length, description) }
                }
            }
        }
        let sent = try result.get()
        if sent != message.count {
            throw SystemError(errno: EIO, operation: "sendto unix \(socketDescription) (short: \(sent) of \(message.count) bytes)")
        }
    }
}
