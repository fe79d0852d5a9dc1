import CWeftLinux
import Glibc
import Synchronization
import WeftCore

/// A blocking IPv4 TCP socket: a listener, or one end of a connection (`weft bench`'s control
/// connections and TCP streams). Close-on-exec; sends never raise SIGPIPE (MSG_NOSIGNAL).
/// Nothing here waits without a bound unless asked to: `connect` takes a timeout, and
/// `waitReadable` tells whether `accept`/`receive` would return at once.
///
/// Thread-safety: one thread may `receive` while another `send`s. `shutdown()` may be called
/// from any thread and wakes both. `close()` only after those threads stopped.
public final class TCPSocket: @unchecked Sendable {
    public var fileDescriptor: Int32 { descriptor.fd }
    /// "listen 0.0.0.0:5301" or the peer, "10.0.0.2:40112", for error messages.
    public let endpointDescription: String
    private let descriptor: SocketDescriptor

    private init(fileDescriptor: Int32, endpointDescription: String) {
        descriptor = SocketDescriptor(fileDescriptor)
        self.endpointDescription = endpointDescription
    }

    /// A listening socket on address:port (port 0: the kernel chooses, see `localPort`), with
    /// SO_REUSEADDR so a restarted server binds at once despite connections in TIME_WAIT.
    public static func listen(on address: IPv4Address, port: UInt16, backlog: Int32 = 64) throws(SystemError) -> TCPSocket {
        let description = "\(address):\(port)"
        let fd = try Syscall.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0,
                                    "tcp \(description)")
        do throws(SystemError) {
            try Syscall.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, Int32(1), "SO_REUSEADDR tcp \(description)")
            var socketAddress = sockaddr_in(address, port: port)
            try withUnsafePointer(to: &socketAddress) { pointer throws(SystemError) in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw throws(SystemError) in
                    try Syscall.bind(fd, raw, socklen_t(MemoryLayout<sockaddr_in>.size), "tcp \(description)")
                }
            }
            _ = try Syscall.retrying("listen tcp \(description)") { Glibc.listen(fd, backlog) }
        } catch {
            _ = Glibc.close(fd)
            throw error
        }
        return TCPSocket(fileDescriptor: fd, endpointDescription: "listen \(description)")
    }

    /// Connects to address:port, giving up with ETIMEDOUT after `timeoutMilliseconds`. A refused
    /// or unreachable peer throws at once with the kernel's errno (ECONNREFUSED, ENETUNREACH…).
    /// The returned socket is blocking.
    public static func connect(to address: IPv4Address, port: UInt16,
                               timeoutMilliseconds: Int32) throws(SystemError) -> TCPSocket {
        let description = "\(address):\(port)"
        let fd = try Syscall.socket(
            AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0,
            "tcp \(description)")
        do throws(SystemError) {
            var socketAddress = sockaddr_in(address, port: port)
            let code = withUnsafePointer(to: &socketAddress) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                    Syscall.connect(fd, raw, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if code == EINPROGRESS {
                var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                if try Syscall.poll(&entry, 1, timeoutMilliseconds) == 0 {
                    throw SystemError(errno: ETIMEDOUT, operation: "connect tcp \(description)")
                }
                let pending: Int32 = try Syscall.getsockopt(fd, SOL_SOCKET, SO_ERROR, "SO_ERROR tcp \(description)")
                if pending != 0 { throw SystemError(errno: pending, operation: "connect tcp \(description)") }
            } else if code != 0 {
                throw SystemError(errno: code, operation: "connect tcp \(description)")
            }
            let flags = try Syscall.fcntl(fd, F_GETFL, 0, "tcp \(description)")
            _ = try Syscall.fcntl(fd, F_SETFL, flags & ~Int32(O_NONBLOCK), "tcp \(description)")
        } catch {
            _ = Glibc.close(fd)
            throw error
        }
        return TCPSocket(fileDescriptor: fd, endpointDescription: description)
    }

    /// accept4 on a listener (blocking: call it when `waitReadable` said so). The new socket is
    /// blocking and close-on-exec.
    public func accept() throws(SystemError) -> TCPSocket {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let fd = try withUnsafeMutablePointer(to: &address) { pointer throws(SystemError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw throws(SystemError) in
                try Syscall.accept(fileDescriptor, raw, &length, endpointDescription)
            }
        }
        let peer = IPv4Address(rawValue: UInt32(bigEndian: address.sin_addr.s_addr))
        return TCPSocket(fileDescriptor: fd, endpointDescription: "\(peer):\(UInt16(bigEndian: address.sin_port))")
    }

    /// The bound port (getsockname), e.g. the kernel's choice after listening on port 0.
    public var localPort: UInt16 {
        get throws(SystemError) { try descriptor.localPort }
    }

    /// TCP_NODELAY: small control messages leave at once instead of waiting for an ACK.
    public func setNoDelay() throws(SystemError) {
        try Syscall.setsockopt(fileDescriptor, Int32(IPPROTO_TCP), TCP_NODELAY, Int32(1),
                               "TCP_NODELAY tcp \(endpointDescription)")
    }

    /// Waits up to `timeoutMilliseconds` (0: just look) until `receive` or `accept` would not
    /// block: data, end of stream, an error or a pending connection. EINTR restarts the wait.
    public func waitReadable(timeoutMilliseconds: Int32) throws(SystemError) -> Bool {
        try Self.firstReadable([self], timeoutMilliseconds: timeoutMilliseconds) != nil
    }

    /// Waits on several sockets at once; returns the index of the first readable one in
    /// `sockets`' order (so the caller sets the priority), or nil after the timeout.
    public static func firstReadable(_ sockets: [TCPSocket], timeoutMilliseconds: Int32) throws(SystemError) -> Int? {
        var entries = sockets.map { pollfd(fd: $0.fileDescriptor, events: Int16(POLLIN), revents: 0) }
        let ready = try entries.withUnsafeMutableBufferPointer { buffer throws(SystemError) in
            try Syscall.poll(buffer.baseAddress!, buffer.count, timeoutMilliseconds)
        }
        if ready == 0 { return nil }
        for (index, entry) in entries.enumerated() where entry.revents != 0 {
            if entry.revents & Int16(POLLNVAL) != 0 {
                throw SystemError(errno: EBADF, operation: "poll tcp \(sockets[index].endpointDescription)")
            }
            return index
        }
        return nil
    }

    /// One send(2) with MSG_NOSIGNAL; returns the bytes taken (possibly fewer than given).
    /// A peer that went away throws EPIPE or ECONNRESET; so does a send after `shutdown()`.
    public func send(_ buffer: UnsafeRawBufferPointer) throws(SystemError) -> Int {
        try Syscall.sendStream(fileDescriptor, buffer, endpointDescription)
    }

    /// Sends all of `buffer`, looping over partial sends.
    public func sendAll(_ buffer: UnsafeRawBufferPointer) throws(SystemError) {
        var offset = 0
        while offset < buffer.count {
            offset += try send(UnsafeRawBufferPointer(rebasing: buffer[offset...]))
        }
    }

    /// One recv(2); returns the bytes read, 0 at the end of the stream (the peer closed, or
    /// `shutdown()` was called). Blocks until data arrives unless `waitReadable` said so.
    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        try Syscall.recv(fileDescriptor, buffer, 0, "tcp \(endpointDescription)")
    }

    /// shutdown(SHUT_RDWR): wakes a thread blocked in `receive` (it returns 0) or `send` (it
    /// throws EPIPE). Idempotent; errors (ENOTCONN) are ignored.
    public func shutdown() {
        descriptor.shutdown()
    }

    /// Closes the descriptor. Idempotent.
    public func close() {
        descriptor.close("tcp \(endpointDescription)")
    }

    deinit {
        close()
    }
}

extension Syscall {
    /// connect(2) on a non-blocking socket: returns 0, or the errno (EINPROGRESS is expected).
    /// EINTR is not retried: the connection goes on in the background, as with EINPROGRESS.
    @inline(never)
    static func connect(_ fd: Int32, _ address: UnsafePointer<sockaddr>, _ length: socklen_t) -> Int32 {
        if Glibc.connect(fd, address, length) == 0 { return 0 }
        let code = Glibc.errno
        return code == EINTR ? EINPROGRESS : code
    }

    @inline(never)
    static func accept(_ fd: Int32, _ address: UnsafeMutablePointer<sockaddr>, _ length: UnsafeMutablePointer<socklen_t>,
                       _ what: @autoclosure () -> String) throws(SystemError) -> Int32 {
        try retrying("accept \(what())") { CWeftLinux_accept4(fd, address, length, Int32(SOCK_CLOEXEC.rawValue)) }
    }

    /// send(2) on a stream socket with MSG_NOSIGNAL (a closed peer is EPIPE, never SIGPIPE).
    @inline(never)
    static func sendStream(_ fd: Int32, _ buffer: UnsafeRawBufferPointer,
                           _ what: @autoclosure () -> String) throws(SystemError) -> Int {
        try retrying("send tcp \(what())") { Glibc.send(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL)) }
    }
}
