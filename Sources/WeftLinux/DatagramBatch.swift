import CWeftLinux
import Glibc
import WeftCore

/// Preallocated mmsghdr/iovec/sockaddr_in arrays for up to `capacity` datagrams; reused for
/// every call, so a batch costs no allocation. The batch only points at the caller's buffers
/// (packet-pool slots); they must stay valid until the receive/send call using them returns.
///
/// Not thread-safe: one batch belongs to one thread at a time.
public final class DatagramBatch: @unchecked Sendable {
    public let capacity: Int
    /// How many entries are set (for send) or were received (set by `UDPSocket.receive`).
    public var count: Int = 0

    let messages: UnsafeMutablePointer<CWeftLinux_mmsghdr>
    private let iovecs: UnsafeMutablePointer<iovec>
    private let addresses: UnsafeMutablePointer<sockaddr_in>
    /// The receive buffer size of each entry (iov_len is overwritten by `setSend`).
    private let receiveCapacities: UnsafeMutablePointer<Int>
    /// Per-entry control-message space, `controlSpace` bytes each: a UDP_SEGMENT cmsg (send)
    /// or a UDP_GRO cmsg (receive).
    private let controls: UnsafeMutableRawPointer
    /// max(CMSG_SPACE(sizeof(uint16_t)), CMSG_SPACE(sizeof(int))): 24 on x86_64/arm64.
    static let controlSpace: Int = max(CWeftLinux_CMSG_SPACE(MemoryLayout<UInt16>.size),
                                       CWeftLinux_CMSG_SPACE(MemoryLayout<Int32>.size))

    public init(capacity: Int) {
        precondition(capacity > 0 && capacity <= 1024, "DatagramBatch capacity must be 1...1024 (UIO_MAXIOV)")
        self.capacity = capacity
        messages = .allocate(capacity: capacity)
        iovecs = .allocate(capacity: capacity)
        addresses = .allocate(capacity: capacity)
        receiveCapacities = .allocate(capacity: capacity)
        controls = .allocate(byteCount: capacity * Self.controlSpace, alignment: MemoryLayout<cmsghdr>.alignment)
        controls.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * Self.controlSpace)
        messages.initialize(repeating: CWeftLinux_mmsghdr(), count: capacity)
        iovecs.initialize(repeating: iovec(iov_base: nil, iov_len: 0), count: capacity)
        addresses.initialize(repeating: sockaddr_in(), count: capacity)
        receiveCapacities.initialize(repeating: 0, count: capacity)
        for i in 0..<capacity {
            messages[i].msg_hdr.msg_iov = iovecs + i
            messages[i].msg_hdr.msg_iovlen = 1
            messages[i].msg_hdr.msg_name = UnsafeMutableRawPointer(addresses + i)
            messages[i].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
        }
    }

    deinit {
        messages.deallocate()
        iovecs.deallocate()
        addresses.deallocate()
        receiveCapacities.deallocate()
        controls.deallocate()
    }

    @inline(__always)
    private func control(_ i: Int) -> UnsafeMutableRawPointer {
        controls + i * Self.controlSpace
    }

    /// For receive: point entry `i` at `buffer` (a packet-pool slot). With UDP_GRO enabled on
    /// the socket the buffer should hold 64 KiB, as one entry may receive many datagrams.
    public func setReceiveBuffer(_ i: Int, _ buffer: UnsafeMutableRawBufferPointer) {
        precondition(i >= 0 && i < capacity, "DatagramBatch index out of range")
        iovecs[i] = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
        receiveCapacities[i] = buffer.count
        messages[i].msg_hdr.msg_iov = iovecs + i
        messages[i].msg_hdr.msg_iovlen = 1
    }

    /// For send: entry `i` sends all of `buffer` to address:port, as one plain datagram (any
    /// scatter/gather list or UDP_SEGMENT control message a previous use left is cleared).
    public func setSend(_ i: Int, _ buffer: UnsafeRawBufferPointer, to address: IPv4Address, port: UInt16) {
        precondition(i >= 0 && i < capacity, "DatagramBatch index out of range")
        iovecs[i] = iovec(iov_base: UnsafeMutableRawPointer(mutating: buffer.baseAddress), iov_len: buffer.count)
        receiveCapacities[i] = 0
        messages[i].msg_hdr.msg_iov = iovecs + i
        messages[i].msg_hdr.msg_iovlen = 1
        messages[i].msg_hdr.msg_control = nil
        messages[i].msg_hdr.msg_controllen = 0
        setDestination(i, address, port)
    }

    /// For send: entry `i` gathers `vectors[0..<count]` (the caller's iovec array, e.g.
    /// [outer header][payload slices…]; it and the memory it points at must stay valid until the
    /// send returns) and sends it to address:port.
    ///
    /// With `segmentSize` (UDP GSO, see `UDPSocket.supportsGSO`) a per-message `SOL_UDP`/
    /// `UDP_SEGMENT` control message is attached: the kernel cuts the gathered bytes into
    /// datagrams of `segmentSize` bytes each, the last possibly shorter. Kernel limits: at most
    /// UDP_MAX_SEGMENTS segments (64; 128 on recent kernels), total at most 65507 bytes,
    /// segmentSize + 28 at most the route's MTU; beyond them the entry fails (EINVAL/EMSGSIZE,
    /// counted as failed by `send`). With `segmentSize` nil it is one plain datagram.
    public func setSend(_ i: Int, vectors: UnsafeMutablePointer<iovec>, count: Int, to address: IPv4Address,
                        port: UInt16, segmentSize: Int?) {
        precondition(i >= 0 && i < capacity, "DatagramBatch index out of range")
        precondition(count >= 0 && count <= 1024, "iovec count must be 0...1024 (UIO_MAXIOV)")
        receiveCapacities[i] = 0
        messages[i].msg_hdr.msg_iov = vectors
        messages[i].msg_hdr.msg_iovlen = count
        if let segmentSize {
            precondition(segmentSize > 0 && segmentSize <= Int(UInt16.max), "segmentSize must be 1...65535")
            let space = CWeftLinux_CMSG_SPACE(MemoryLayout<UInt16>.size)
            let base = control(i)
            base.initializeMemory(as: UInt8.self, repeating: 0, count: Self.controlSpace)
            messages[i].msg_hdr.msg_control = base
            messages[i].msg_hdr.msg_controllen = space
            let header = CWeftLinux_CMSG_FIRSTHDR(&messages[i].msg_hdr)!
            header.pointee.cmsg_level = CWeftLinux_SOL_UDP
            header.pointee.cmsg_type = CWeftLinux_UDP_SEGMENT
            header.pointee.cmsg_len = CWeftLinux_CMSG_LEN(MemoryLayout<UInt16>.size)
            UnsafeMutableRawPointer(CWeftLinux_CMSG_DATA(header)!)
                .storeBytes(of: UInt16(segmentSize), as: UInt16.self)
        } else {
            messages[i].msg_hdr.msg_control = nil
            messages[i].msg_hdr.msg_controllen = 0
        }
        setDestination(i, address, port)
    }

    private func setDestination(_ i: Int, _ address: IPv4Address, _ port: UInt16) {
        addresses[i] = sockaddr_in(
            sin_family: sa_family_t(AF_INET),
            sin_port: port.bigEndian,
            sin_addr: in_addr(s_addr: address.rawValue.bigEndian),
            sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        messages[i].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
        messages[i].msg_hdr.msg_flags = 0
        messages[i].msg_len = 0
    }

    /// Entry `i` was set for send with a segment size (a UDP_SEGMENT control message).
    func hasSegmentSize(_ i: Int) -> Bool {
        sendSegmentSize(i) != nil
    }

    /// For send entry `i`: the UDP_SEGMENT size it was set with, nil for one plain datagram.
    /// With `sendVectors` this lets a `DatagramTransport` other than `UDPSocket` see what
    /// sendmmsg would send.
    public func sendSegmentSize(_ i: Int) -> Int? {
        precondition(i >= 0 && i < capacity, "DatagramBatch index out of range")
        guard let data = findControl(i, type: CWeftLinux_UDP_SEGMENT, size: MemoryLayout<UInt16>.size) else { return nil }
        return Int(data.loadUnaligned(as: UInt16.self))
    }

    /// For send entry `i`: the scatter/gather list whose bytes, in order, form its payload.
    public func sendVectors(_ i: Int) -> UnsafeBufferPointer<iovec> {
        precondition(i >= 0 && i < capacity, "DatagramBatch index out of range")
        return UnsafeBufferPointer(start: messages[i].msg_hdr.msg_iov, count: messages[i].msg_hdr.msg_iovlen)
    }

    /// For received entry `i`: the UDP_GRO segment size when the kernel coalesced datagrams
    /// into it (`UDPSocket.enableGRO()`). The buffer then holds `length(i)` bytes of datagrams
    /// back to back, each `segmentSize` bytes except possibly the last. nil when there is no
    /// such control message: the entry is a single datagram.
    public func segmentSize(_ i: Int) -> Int? {
        precondition(i >= 0 && i < capacity, "DatagramBatch index out of range")
        guard let data = findControl(i, type: CWeftLinux_UDP_GRO, size: MemoryLayout<Int32>.size) else { return nil }
        return Int(data.loadUnaligned(as: Int32.self))
    }

    /// The data of the first SOL_UDP control message of `type` in entry `i`, if any.
    private func findControl(_ i: Int, type: Int32, size: Int) -> UnsafeMutableRawPointer? {
        guard messages[i].msg_hdr.msg_control != nil, messages[i].msg_hdr.msg_controllen != 0 else { return nil }
        var header = CWeftLinux_CMSG_FIRSTHDR(&messages[i].msg_hdr)
        while let current = header {
            if current.pointee.cmsg_level == CWeftLinux_SOL_UDP && current.pointee.cmsg_type == type
                && current.pointee.cmsg_len >= CWeftLinux_CMSG_LEN(size) {
                return UnsafeMutableRawPointer(CWeftLinux_CMSG_DATA(current))
            }
            header = CWeftLinux_CMSG_NXTHDR(&messages[i].msg_hdr, current)
        }
        return nil
    }

    /// Bytes received in entry `i`: the datagram's real length, which exceeds the buffer when
    /// `isTruncated(i)` (only the buffer's size was stored). After a send, bytes sent.
    public func length(_ i: Int) -> Int {
        precondition(i >= 0 && i < capacity, "DatagramBatch index out of range")
        return Int(messages[i].msg_len)
    }

    /// The datagram in entry `i` was longer than its buffer (MSG_TRUNC in msg_flags).
    public func isTruncated(_ i: Int) -> Bool {
        precondition(i >= 0 && i < capacity, "DatagramBatch index out of range")
        return messages[i].msg_hdr.msg_flags & CWeftLinux_MSG_TRUNC != 0
    }

    /// The source of received entry `i` (the destination, after `setSend`).
    public func sender(_ i: Int) -> (address: IPv4Address, port: UInt16) {
        precondition(i >= 0 && i < capacity, "DatagramBatch index out of range")
        let address = addresses[i]
        return (IPv4Address(rawValue: UInt32(bigEndian: address.sin_addr.s_addr)), UInt16(bigEndian: address.sin_port))
    }

    /// The receive buffer set for entry `i` with `setReceiveBuffer` (its whole size).
    ///
    /// With `setReceived` this lets a `DatagramTransport` other than `UDPSocket` (an in-memory
    /// fake for tests and benchmarks) fill a batch the way recvmmsg does.
    public func receiveBuffer(_ i: Int) -> UnsafeMutableRawBufferPointer {
        precondition(i >= 0 && i < capacity, "DatagramBatch index out of range")
        return UnsafeMutableRawBufferPointer(start: iovecs[i].iov_base, count: receiveCapacities[i])
    }

    /// Records entry `i` as recvmmsg would after receiving `length` bytes from address:port,
    /// already copied into `receiveBuffer(i)`: one plain datagram, or with `segmentSize` a
    /// UDP_GRO run of datagrams of that size back to back (the last possibly shorter). A
    /// `length` above the buffer's size marks the entry truncated, as MSG_TRUNC does. For
    /// transports other than `UDPSocket`; the socket fills entries itself.
    public func setReceived(_ i: Int, length: Int, from address: IPv4Address, port: UInt16, segmentSize: Int? = nil) {
        precondition(i >= 0 && i < capacity, "DatagramBatch index out of range")
        precondition(length >= 0 && length <= Int(UInt32.max), "datagram length out of range")
        setDestination(i, address, port)
        iovecs[i].iov_len = receiveCapacities[i]
        messages[i].msg_hdr.msg_iov = iovecs + i
        messages[i].msg_hdr.msg_iovlen = 1
        if let segmentSize {
            precondition(segmentSize > 0 && segmentSize <= Int(UInt16.max), "segmentSize must be 1...65535")
            let base = control(i)
            base.initializeMemory(as: UInt8.self, repeating: 0, count: Self.controlSpace)
            messages[i].msg_hdr.msg_control = base
            messages[i].msg_hdr.msg_controllen = CWeftLinux_CMSG_SPACE(MemoryLayout<Int32>.size)
            let header = CWeftLinux_CMSG_FIRSTHDR(&messages[i].msg_hdr)!
            header.pointee.cmsg_level = CWeftLinux_SOL_UDP
            header.pointee.cmsg_type = CWeftLinux_UDP_GRO
            header.pointee.cmsg_len = CWeftLinux_CMSG_LEN(MemoryLayout<Int32>.size)
            UnsafeMutableRawPointer(CWeftLinux_CMSG_DATA(header)!).storeBytes(of: Int32(segmentSize), as: Int32.self)
        } else {
            messages[i].msg_hdr.msg_control = nil
            messages[i].msg_hdr.msg_controllen = 0
        }
        messages[i].msg_hdr.msg_flags = length > receiveCapacities[i] ? CWeftLinux_MSG_TRUNC : 0
        messages[i].msg_len = UInt32(length)
    }

    /// Entry `i` carries no source address: the kernel's end-of-stream marker after shutdown
    /// (a real UDP datagram, even an empty one, always has a sockaddr_in).
    func hasNoSender(_ i: Int) -> Bool {
        messages[i].msg_hdr.msg_namelen == 0
    }

    /// Resets entries 0..<n for a receive: namelen, flags, iov_len back to each buffer size,
    /// msg_iov to the entry's own iovec, and msg_control/msg_controllen to the entry's
    /// control-message space (for a UDP_GRO segment size).
    func prepareForReceive(_ n: Int) {
        for i in 0..<n {
            precondition(iovecs[i].iov_base != nil, "DatagramBatch entry \(i) has no receive buffer")
            iovecs[i].iov_len = receiveCapacities[i]
            messages[i].msg_hdr.msg_iov = iovecs + i
            messages[i].msg_hdr.msg_iovlen = 1
            messages[i].msg_hdr.msg_control = control(i)
            messages[i].msg_hdr.msg_controllen = Self.controlSpace
            messages[i].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
            messages[i].msg_hdr.msg_flags = 0
            messages[i].msg_len = 0
        }
    }
}
