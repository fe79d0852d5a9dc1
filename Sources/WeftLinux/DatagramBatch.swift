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

    public init(capacity: Int) {
        precondition(capacity > 0 && capacity <= 1024, "DatagramBatch capacity must be 1...1024 (UIO_MAXIOV)")
        self.capacity = capacity
        messages = .allocate(capacity: capacity)
        iovecs = .allocate(capacity: capacity)
        addresses = .allocate(capacity: capacity)
        receiveCapacities = .allocate(capacity: capacity)
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
    }

    /// For receive: point entry `i` at `buffer` (a packet-pool slot).
    public func setReceiveBuffer(_ i: Int, _ buffer: UnsafeMutableRawBufferPointer) {
        precondition(i >= 0 && i < capacity, "DatagramBatch index out of range")
        iovecs[i] = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
        receiveCapacities[i] = buffer.count
    }

    /// For send: entry `i` sends all of `buffer` to address:port.
    public func setSend(_ i: Int, _ buffer: UnsafeRawBufferPointer, to address: IPv4Address, port: UInt16) {
        precondition(i >= 0 && i < capacity, "DatagramBatch index out of range")
        iovecs[i] = iovec(iov_base: UnsafeMutableRawPointer(mutating: buffer.baseAddress), iov_len: buffer.count)
        receiveCapacities[i] = 0
        addresses[i] = sockaddr_in(
            sin_family: sa_family_t(AF_INET),
            sin_port: port.bigEndian,
            sin_addr: in_addr(s_addr: address.rawValue.bigEndian),
            sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        messages[i].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
        messages[i].msg_hdr.msg_flags = 0
        messages[i].msg_len = 0
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

    /// Entry `i` carries no source address: the kernel's end-of-stream marker after shutdown
    /// (a real UDP datagram, even an empty one, always has a sockaddr_in).
    func hasNoSender(_ i: Int) -> Bool {
        messages[i].msg_hdr.msg_namelen == 0
    }

    /// Resets entries 0..<n for a receive: namelen, flags, and iov_len back to each buffer size.
    func prepareForReceive(_ n: Int) {
        for i in 0..<n {
            precondition(iovecs[i].iov_base != nil, "DatagramBatch entry \(i) has no receive buffer")
            iovecs[i].iov_len = receiveCapacities[i]
            messages[i].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
            messages[i].msg_hdr.msg_flags = 0
            messages[i].msg_len = 0
        }
    }
}
