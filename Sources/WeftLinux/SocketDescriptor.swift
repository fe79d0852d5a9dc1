import Glibc
import Synchronization
import WeftCore

/// The descriptor of a TCPSocket or UDPSocket and whether it was closed: shutdown and close
/// as both do them, and the IPv4 address helpers both need.
struct SocketDescriptor: ~Copyable, Sendable {
    let fd: Int32
    private let closed = Atomic<Bool>(false)

    init(_ fd: Int32) { self.fd = fd }

    /// shutdown(SHUT_RDWR), unless closed; errors (ENOTCONN) are ignored.
    func shutdown() {
        if closed.load(ordering: .acquiring) { return }
        _ = Syscall.shutdown(fd, Int32(SHUT_RDWR))
    }

    /// Closes the descriptor. Idempotent.
    func close(_ what: @autoclosure () -> String) {
        if closed.exchange(true, ordering: .acquiringAndReleasing) { return }
        try? Syscall.close(fd, what())
    }

    /// The bound port (getsockname).
    var localPort: UInt16 {
        get throws(SystemError) {
            var address = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            try withUnsafeMutablePointer(to: &address) { pointer throws(SystemError) in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw throws(SystemError) in
                    try Syscall.getsockname(fd, raw, &length)
                }
            }
            return UInt16(bigEndian: address.sin_port)
        }
    }
}

extension sockaddr_in {
    /// address:port, in network byte order.
    init(_ address: IPv4Address, port: UInt16) {
        self.init(sin_family: sa_family_t(AF_INET), sin_port: port.bigEndian,
                  sin_addr: in_addr(s_addr: address.rawValue.bigEndian), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
    }
}
