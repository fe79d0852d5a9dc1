import CWeftLinux
import Glibc

/// The outcome of an operation on a non-blocking descriptor: would-block is not an error.
public enum IOResult<T> {
    case processed(T)
    case wouldBlock
}

extension IOResult: Sendable where T: Sendable {}
extension IOResult: Equatable where T: Equatable {}

/// One `@inline(never)` wrapper per system call Weft uses, so errno is read straight after the
/// call and before any ARC traffic (the SwiftNIO `Posix` pattern). Every wrapper retries EINTR
/// and throws `SystemError`; the `…NonBlocking` variants map EAGAIN/EWOULDBLOCK to `.wouldBlock`.
/// `operation` names the object for the error message ("read flannel0").
enum Syscall {
    // MARK: Helpers (internal, not private: TCPSocket.swift adds its wrappers in an extension)

    @inline(__always)
    static func retrying<T: FixedWidthInteger>(_ operation: @autoclosure () -> String,
                                               _ body: () -> T) throws(SystemError) -> T {
        while true {
            let result = body()
            if result == -1 {
                let code = Glibc.errno
                if code == EINTR { continue }
                throw SystemError(errno: code, operation: operation())
            }
            return result
        }
    }

    @inline(__always)
    static func retryingNonBlocking<T: FixedWidthInteger>(
        _ operation: @autoclosure () -> String, _ body: () -> T
    ) throws(SystemError) -> IOResult<T> {
        while true {
            let result = body()
            if result == -1 {
                let code = Glibc.errno
                if code == EINTR { continue }
                if code == EAGAIN || code == EWOULDBLOCK { return .wouldBlock }
                throw SystemError(errno: code, operation: operation())
            }
            return .processed(result)
        }
    }

    // MARK: Files

    @inline(never)
    static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0) throws(SystemError) -> Int32 {
        try retrying("open \(path)") { Glibc.open(path, flags, mode) }
    }

    /// close(2) is not retried on EINTR: on Linux the descriptor is released regardless.
    @inline(never)
    static func close(_ fd: Int32, _ what: @autoclosure () -> String = "") throws(SystemError) {
        if Glibc.close(fd) == -1 {
            let code = Glibc.errno
            if code == EINTR { return }
            throw SystemError(errno: code, operation: "close \(what())")
        }
    }

    @inline(never)
    static func read(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer,
                     _ what: @autoclosure () -> String) throws(SystemError) -> Int {
        try retrying("read \(what())") { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    @inline(never)
    static func readNonBlocking(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer,
                                _ what: @autoclosure () -> String) throws(SystemError) -> IOResult<Int> {
        try retryingNonBlocking("read \(what())") { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    @inline(never)
    static func write(_ fd: Int32, _ buffer: UnsafeRawBufferPointer,
                      _ what: @autoclosure () -> String) throws(SystemError) -> Int {
        try retrying("write \(what())") { Glibc.write(fd, buffer.baseAddress, buffer.count) }
    }

    @inline(never)
    static func writeNonBlocking(_ fd: Int32, _ buffer: UnsafeRawBufferPointer,
                                 _ what: @autoclosure () -> String) throws(SystemError) -> IOResult<Int> {
        try retryingNonBlocking("write \(what())") { Glibc.write(fd, buffer.baseAddress, buffer.count) }
    }

    /// pipe2(2) with O_CLOEXEC, so no child inherits an end it was not given.
    @inline(never)
    static func pipe() throws(SystemError) -> (read: Int32, write: Int32) {
        var ends: (Int32, Int32) = (-1, -1)
        _ = try withUnsafeMutableBytes(of: &ends) { (raw) throws(SystemError) -> Int32 in
            let fds = raw.baseAddress!.assumingMemoryBound(to: Int32.self)
            return try retrying("pipe") { CWeftLinux_pipe_cloexec(fds) }
        }
        return (ends.0, ends.1)
    }

    @inline(never)
    static func fcntl(_ fd: Int32, _ command: Int32, _ value: Int32,
                      _ what: @autoclosure () -> String) throws(SystemError) -> Int32 {
        try retrying("fcntl \(what())") { Glibc.fcntl(fd, command, value) }
    }

    @inline(never)
    static func ioctl(_ fd: Int32, _ request: UInt, _ argument: UnsafeMutableRawPointer,
                      _ what: @autoclosure () -> String) throws(SystemError) -> Int32 {
        try retrying(what()) { Glibc.ioctl(fd, request, argument) }
    }

    // MARK: TUN

    /// TUNSETIFF on an open /dev/net/tun descriptor; returns the kernel's interface name.
    @inline(never)
    static func tunSetInterface(_ fd: Int32, name: String, flags: Int32) throws(SystemError) -> String {
        var out = [CChar](repeating: 0, count: Int(CWeftLinux_IFNAMSIZ) + 1)
        _ = try retrying("TUNSETIFF \(name)") { CWeftLinux_tun_set_iff(fd, name, flags, &out) }
        let bytes = out.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// TUNSETVNETHDRSZ: the size of the virtio-net header in front of every packet.
    @inline(never)
    static func tunSetVnetHeaderSize(_ fd: Int32, _ size: Int32, _ what: @autoclosure () -> String) throws(SystemError) {
        _ = try retrying("TUNSETVNETHDRSZ \(what())") { CWeftLinux_tun_set_vnet_hdr_size(fd, size) }
    }

    /// TUNSETOFFLOAD with TUN_F_* flags.
    @inline(never)
    static func tunSetOffload(_ fd: Int32, _ flags: UInt32, _ what: @autoclosure () -> String) throws(SystemError) {
        _ = try retrying("TUNSETOFFLOAD \(what())") { CWeftLinux_tun_set_offload(fd, flags) }
    }

    @inline(never)
    static func writevNonBlocking(_ fd: Int32, _ vectors: UnsafeBufferPointer<iovec>,
                                  _ what: @autoclosure () -> String) throws(SystemError) -> IOResult<Int> {
        try retryingNonBlocking("writev \(what())") { Glibc.writev(fd, vectors.baseAddress, Int32(vectors.count)) }
    }

    // MARK: Sockets

    @inline(never)
    static func socket(_ domain: Int32, _ type: Int32, _ proto: Int32,
                       _ what: @autoclosure () -> String) throws(SystemError) -> Int32 {
        try retrying("socket \(what())") { Glibc.socket(domain, type, proto) }
    }

    @inline(never)
    static func bind(_ fd: Int32, _ address: UnsafePointer<sockaddr>, _ length: socklen_t,
                     _ what: @autoclosure () -> String) throws(SystemError) {
        _ = try retrying("bind \(what())") { Glibc.bind(fd, address, length) }
    }

    @inline(never)
    static func sendto(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, _ address: UnsafePointer<sockaddr>, _ length: socklen_t,
                       _ what: @autoclosure () -> String) throws(SystemError) -> Int {
        try retrying("sendto \(what())") { Glibc.sendto(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL), address, length) }
    }

    @inline(never)
    static func getsockname(_ fd: Int32, _ address: UnsafeMutablePointer<sockaddr>,
                            _ length: UnsafeMutablePointer<socklen_t>) throws(SystemError) {
        _ = try retrying("getsockname") { Glibc.getsockname(fd, address, length) }
    }

    @inline(never)
    static func setsockopt<V: FixedWidthInteger>(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: V,
                              _ what: @autoclosure () -> String) throws(SystemError) {
        var value = value
        _ = try retrying("setsockopt \(what())") {
            Glibc.setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<V>.size))
        }
    }

    /// SO_ATTACH_REUSEPORT_CBPF with Weft's inner-address program (see the C shim).
    @inline(never)
    static func attachReusePortInnerHash(_ fd: Int32, groupSize: UInt32, _ what: @autoclosure () -> String) throws(SystemError) {
        _ = try retrying("SO_ATTACH_REUSEPORT_CBPF \(what())") { CWeftLinux_attach_reuseport_inner_hash(fd, groupSize) }
    }

    @inline(never)
    static func getsockopt<V: FixedWidthInteger>(_ fd: Int32, _ level: Int32, _ name: Int32,
                                                 _ what: @autoclosure () -> String) throws(SystemError) -> V {
        var value: V = 0
        var length = socklen_t(MemoryLayout<V>.size)
        _ = try retrying("getsockopt \(what())") { Glibc.getsockopt(fd, level, name, &value, &length) }
        return value
    }

    @inline(never)
    static func shutdown(_ fd: Int32, _ how: Int32) -> Int32 {
        let rc = Glibc.shutdown(fd, how)
        return rc == -1 ? Glibc.errno : 0
    }

    /// recvmmsg(2). Returns the count received (0 if the socket was shut down).
    @inline(never)
    static func recvmmsg(_ fd: Int32, _ vector: UnsafeMutablePointer<CWeftLinux_mmsghdr>, _ count: UInt32,
                         _ flags: Int32, _ what: @autoclosure () -> String) throws(SystemError) -> IOResult<Int32> {
        try retryingNonBlocking("recvmmsg \(what())") { CWeftLinux_recvmmsg(fd, vector, count, flags, nil) }
    }

    /// sendmmsg(2): returns the count sent, or the errno of the first entry when none was sent
    /// (EINTR already retried). Errors are per datagram here, so they are returned, not thrown.
    @inline(never)
    static func sendmmsg(_ fd: Int32, _ vector: UnsafeMutablePointer<CWeftLinux_mmsghdr>, _ count: UInt32,
                         _ flags: Int32) -> Result<Int, SystemError> {
        while true {
            let sent = CWeftLinux_sendmmsg(fd, vector, count, flags)
            if sent >= 0 { return .success(Int(sent)) }
            let code = Glibc.errno
            if code == EINTR { continue }
            return .failure(SystemError(errno: code, operation: "sendmmsg"))
        }
    }

    @inline(never)
    static func send(_ fd: Int32, _ buffer: UnsafeRawBufferPointer,
                     _ what: @autoclosure () -> String) throws(SystemError) -> Int {
        try retrying("send \(what())") { CWeftLinux_netlink_send_to_kernel(fd, buffer.baseAddress, buffer.count) }
    }

    @inline(never)
    static func recv(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, _ flags: Int32,
                     _ what: @autoclosure () -> String) throws(SystemError) -> Int {
        try retrying("recv \(what())") { Glibc.recv(fd, buffer.baseAddress, buffer.count, flags) }
    }

    // MARK: poll, eventfd

    /// poll(2). EINTR is retried with the full timeout again.
    @inline(never)
    static func poll(_ fds: UnsafeMutablePointer<pollfd>, _ count: Int,
                     _ timeoutMilliseconds: Int32) throws(SystemError) -> Int32 {
        try retrying("poll") { Glibc.poll(fds, nfds_t(count), timeoutMilliseconds) }
    }

    @inline(never)
    static func eventfd(_ initialValue: UInt32, _ flags: Int32) throws(SystemError) -> Int32 {
        try retrying("eventfd") { CWeftLinux_eventfd(initialValue, flags) }
    }

    /// Adds `value` to an eventfd counter (8-byte write).
    @inline(never)
    static func eventfdWrite(_ fd: Int32, _ value: UInt64) throws(SystemError) -> IOResult<Void> {
        var value = value
        let result = try retryingNonBlocking("eventfd write") { Glibc.write(fd, &value, 8) }
        switch result {
        case .processed: return .processed(())
        case .wouldBlock: return .wouldBlock
        }
    }

    /// Reads and resets an eventfd counter (8-byte read); `.wouldBlock` when it is zero.
    @inline(never)
    static func eventfdRead(_ fd: Int32) throws(SystemError) -> IOResult<UInt64> {
        var value: UInt64 = 0
        let result = try retryingNonBlocking("eventfd read") { Glibc.read(fd, &value, 8) }
        switch result {
        case .processed: return .processed(value)
        case .wouldBlock: return .wouldBlock
        }
    }
}
