import CWeftLinux
import Glibc
import Synchronization
import WeftCore

/// A blocking IPv4 UDP socket moving datagrams in batches (recvmmsg/sendmmsg), in the style of
/// wireguard-go's `conn.Bind`.
///
/// Thread-safety: one thread may `receive` while another `send`s. `shutdown()` may be called
/// from any thread. `close()` must only be called after the receiving and sending threads
/// have stopped (after `shutdown()` woke them), as the descriptor number could be reused.
public final class UDPSocket: @unchecked Sendable {
    public var fileDescriptor: Int32 { descriptor.fd }
    /// The bound address ("10.0.0.1:8285"), for error messages.
    public let localDescription: String
    private let descriptor: SocketDescriptor
    private let gsoEIO = Atomic<Bool>(false)

    /// Set (and never cleared) when `send` saw sendmmsg fail with EIO on an entry carrying a
    /// segment size: the route's device lacks checksum offload, so UDP GSO cannot work on it.
    /// The caller should stop passing segment sizes (wireguard-go does the same, commit 6a84778).
    /// The entry itself was counted as failed. Safe to read from any thread.
    public private(set) var gsoFailedWithEIO: Bool {
        get { gsoEIO.load(ordering: .relaxed) }
        set { gsoEIO.store(newValue, ordering: .relaxed) }
    }

    /// Whether the kernel accepts UDP_SEGMENT (Linux ≥ 4.18): probed once, with setsockopt
    /// SOL_UDP/UDP_SEGMENT on a throwaway socket.
    public static var supportsGSO: Bool { probedGSO }

    private static let probedGSO: Bool = {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { _ = Glibc.close(fd) }
        var size: Int32 = 1400
        return Glibc.setsockopt(fd, CWeftLinux_SOL_UDP, CWeftLinux_UDP_SEGMENT, &size,
                                socklen_t(MemoryLayout<Int32>.size)) == 0
    }()

    /// The socket buffer size asked for (SO_RCVBUF/SO_SNDBUF).
    public static let bufferSize: Int32 = 4 << 20

    /// Binds address:port (port 0: the kernel chooses, see `localPort`). The daemon passes the
    /// interface address, never 0.0.0.0. Raises SO_RCVBUF/SO_SNDBUF to 4 MiB (the *FORCE variants
    /// first, which ignore rmem_max/wmem_max as root; the plain ones, capped by the sysctl, when
    /// not permitted). Blocking, close-on-exec.
    ///
    /// With `reusePort` the socket joins the SO_REUSEPORT group of address:port (set before the
    /// bind, as the kernel requires): see `openGroup` for what the group is for.
    public init(bindTo address: IPv4Address, port: UInt16, reusePort: Bool = false) throws(SystemError) {
        let description = "\(address):\(port)"
        let fd = try Syscall.socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0,
                                    "udp \(description)")
        do throws(SystemError) {
            for (force, plain, name) in [(SO_RCVBUFFORCE, SO_RCVBUF, "SO_RCVBUF"), (SO_SNDBUFFORCE, SO_SNDBUF, "SO_SNDBUF")] {
                do {
                    try Syscall.setsockopt(fd, SOL_SOCKET, force, UDPSocket.bufferSize, "\(name)FORCE")
                } catch {
                    try Syscall.setsockopt(fd, SOL_SOCKET, plain, UDPSocket.bufferSize, name)
                }
            }
            if reusePort {
                try Syscall.setsockopt(fd, SOL_SOCKET, CWeftLinux_SO_REUSEPORT, Int32(1), "SO_REUSEPORT udp \(description)")
            }
            var socketAddress = sockaddr_in(address, port: port)
            try withUnsafePointer(to: &socketAddress) { pointer throws(SystemError) in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw throws(SystemError) in
                    try Syscall.bind(fd, raw, socklen_t(MemoryLayout<sockaddr_in>.size), "udp \(description)")
                }
            }
        } catch {
            _ = Glibc.close(fd)
            throw error
        }
        descriptor = SocketDescriptor(fd)
        localDescription = description
    }

    /// `count` sockets bound to the same address:port in one SO_REUSEPORT group, among which the
    /// kernel picks the receiving socket of every datagram by its inner IPv4 addresses (a classic
    /// BPF program over the flannel payload): all traffic between two nodes shares one outer
    /// 4-tuple, so the kernel's own hash would send it all to one socket. One inner flow always
    /// reaches the same socket, so a thread per socket keeps each flow's order. With `count` 1 it
    /// is one plain socket.
    ///
    /// Port 0 is not allowed for a group (each socket would get its own port). Errors: as
    /// `init(bindTo:port:)`, plus "SO_REUSEPORT" and "SO_ATTACH_REUSEPORT_CBPF" (Linux < 4.5).
    public static func openGroup(bindTo address: IPv4Address, port: UInt16, count: Int) throws(SystemError) -> [UDPSocket] {
        precondition(count >= 1, "a socket group needs at least one socket")
        guard count > 1 else { return [try UDPSocket(bindTo: address, port: port)] }
        precondition(port != 0, "a socket group needs a fixed port")
        var sockets: [UDPSocket] = []
        for _ in 0..<count {
            sockets.append(try UDPSocket(bindTo: address, port: port, reusePort: true))
        }
        // The program belongs to the group; attaching it through one member is enough.
        try Syscall.attachReusePortInnerHash(sockets[0].fileDescriptor, groupSize: UInt32(count), "udp \(sockets[0].localDescription)")
        return sockets
    }

    /// setsockopt SOL_UDP/UDP_GRO 1 (Linux ≥ 5.0): the kernel may then coalesce consecutive
    /// datagrams of one flow into one receive entry, reported by `DatagramBatch.segmentSize(_:)`.
    /// Give every receive entry a 64 KiB buffer then, or coalesced entries get truncated.
    public func enableGRO() throws(SystemError) {
        try Syscall.setsockopt(fileDescriptor, CWeftLinux_SOL_UDP, CWeftLinux_UDP_GRO, Int32(1),
                               "UDP_GRO udp \(localDescription)")
    }

    /// The bound port (getsockname), e.g. the kernel's choice after binding port 0.
    public var localPort: UInt16 {
        get throws(SystemError) { try descriptor.localPort }
    }

    /// Actual kernel buffer sizes (the kernel reports double what was set).
    public var bufferSizes: (receive: Int, send: Int) {
        get throws(SystemError) {
            let receive: Int32 = try Syscall.getsockopt(fileDescriptor, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF")
            let send: Int32 = try Syscall.getsockopt(fileDescriptor, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF")
            return (Int(receive), Int(send))
        }
    }

    /// recvmmsg into the batch's receive buffers, entries 0..<maxCount. Blocks until at least
    /// one datagram has arrived (MSG_WAITFORONE: then takes whatever else is queued, without
    /// waiting). Returns how many were received, also stored in `batch.count`; per entry,
    /// `length(i)` is the datagram's real length and `isTruncated(i)` says it did not fit.
    /// With `waiting` false it never blocks (MSG_DONTWAIT) and returns 0 when nothing is queued.
    ///
    /// After `shutdown()` it returns 0 (immediately, or by waking a blocked call): treat 0 as
    /// "stop". Throws SystemError for anything else (e.g. EBADF after `close()`).
    public func receive(into batch: DatagramBatch, maxCount: Int, waiting: Bool = true) throws(SystemError) -> Int {
        let n = min(maxCount, batch.capacity)
        precondition(n > 0, "receive needs maxCount > 0")
        batch.prepareForReceive(n)
        let flags = (waiting ? CWeftLinux_MSG_WAITFORONE : CWeftLinux_MSG_DONTWAIT) | CWeftLinux_MSG_TRUNC
        switch try Syscall.recvmmsg(fileDescriptor, batch.messages, UInt32(n), flags, "udp \(localDescription)") {
        case .processed(let received):
            // After shutdown the kernel reports an end-of-stream "datagram" (length 0, no
            // source address) which recvmmsg counts: cut the batch there.
            var count = Int(received)
            for i in 0..<count where batch.hasNoSender(i) {
                count = i
                break
            }
            batch.count = count
        case .wouldBlock:
            batch.count = 0
        }
        return batch.count
    }

    /// sendmmsg entries 0..<count, looping until every entry was sent or refused. An entry the
    /// kernel refuses (EMSGSIZE, ENETUNREACH, EPERM from a firewall, ENOBUFS, …) is skipped and
    /// counted in `failed`; per-datagram errors are never thrown. Throws only when the socket
    /// itself is unusable (EBADF, ENOTSOCK, EFAULT, EINVAL), reporting nothing as sent.
    ///
    /// Entries set with a segment size (UDP GSO) count as one entry each in `sent`/`failed`,
    /// however many datagrams the kernel cuts them into. EIO on such an entry also sets
    /// `gsoFailedWithEIO`. EINVAL on such an entry (beyond the kernel's GSO limits: too many
    /// segments, or segment size + 28 above the route's MTU) is counted as failed, not thrown.
    ///
    /// Deviation from the original sketch: this `throws` for those fatal errors (the sketch
    /// said "throws only for EBADF-like fatal errors" but showed no `throws`).
    public func send(_ batch: DatagramBatch, count: Int) throws(SystemError) -> (sent: Int, failed: Int) {
        precondition(count >= 0 && count <= batch.capacity, "send count out of range")
        var next = 0
        var sent = 0
        var failed = 0
        while next < count {
            switch Syscall.sendmmsg(fileDescriptor, batch.messages + next, UInt32(count - next), 0) {
            case .success(let n):
                // n == 0 cannot happen for count > 0; guard against a spin anyway.
                if n == 0 {
                    failed += 1
                    next += 1
                } else {
                    sent += n
                    next += n
                }
            case .failure(let error):
                switch error.errno {
                case EINVAL where batch.hasSegmentSize(next):
                    // A GSO entry beyond the kernel's limits (too many segments, segment size
                    // above the path MTU): that entry's fault, not the socket's. Skip it.
                    failed += 1
                    next += 1
                case EBADF, ENOTSOCK, EFAULT, EINVAL:
                    throw SystemError(errno: error.errno, operation: "sendmmsg udp \(localDescription)")
                default:
                    // The kernel reports the first entry's error when it sent none: skip it.
                    // EIO on a GSO entry: the device cannot checksum-offload, GSO is unusable.
                    if error.errno == EIO && batch.hasSegmentSize(next) {
                        gsoFailedWithEIO = true
                    }
                    failed += 1
                    next += 1
                }
            }
        }
        return (sent, failed)
    }

    /// shutdown(SHUT_RDWR): wakes any thread blocked in `receive`, which then returns 0, as do
    /// later receives; sends then fail (counted as failed). Idempotent; ignores ENOTCONN, which
    /// Linux returns for an unconnected UDP socket while still shutting it down and waking readers.
    public func shutdown() {
        descriptor.shutdown()
    }

    /// Closes the descriptor. Idempotent. Call `shutdown()` and wait for the I/O threads first.
    public func close() {
        descriptor.close("udp \(localDescription)")
    }

    deinit {
        close()
    }
}
