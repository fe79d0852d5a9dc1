import Glibc
import WeftLinux

/// A device a lane's thread sleeps on with poll(2) while neither of its devices has work.
public protocol PollableDevice: AnyObject, Sendable {
    /// The descriptor poll(2) watches: readable while a read or receive would return something.
    var readinessDescriptor: Int32 { get }
    /// Called after poll found `readinessDescriptor` readable, before reading (the real devices
    /// need nothing; an in-memory fake clears its readiness here).
    func readinessObserved()
}

extension PollableDevice {
    public func readinessObserved() {}
}

/// The TUN side of the data path. A TUN hands over one packet (or, with offloads, one TCP
/// super-packet) per read, so a lane batches by reading until the device would block.
///
/// `TunDevice` is the real one; benchmarks and tests plug in in-memory fakes.
public protocol PacketTunnel: PollableDevice {
    /// Bytes of the virtio-net header before every packet read or written: 0 without offloads.
    var vnetHeaderSize: Int { get }
    /// Whether writes may carry UDP super-packets (VIRTIO_NET_HDR_GSO_UDP_L4).
    var acceptsUDPSuperPackets: Bool { get }
    /// One packet into `buffer`; nil when none is waiting.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int?
    /// One whole packet; false when the device would block.
    func write(_ packet: UnsafeRawBufferPointer) throws -> Bool
    /// One whole packet gathered from several pieces (writev); false when the device would block.
    func write(vectors: UnsafeBufferPointer<iovec>) throws -> Bool
}

/// The underlay side: batches of datagrams, in and out (recvmmsg/sendmmsg on the real socket).
public protocol DatagramTransport: PollableDevice {
    /// Takes the datagrams waiting, without blocking: how many entries of `batch` were filled,
    /// 0 when none is waiting (or after `shutdown()`).
    func receiveAvailable(into batch: DatagramBatch, maxCount: Int) throws -> Int
    /// Sends entries 0..<count; a datagram the kernel refuses is skipped and counted as failed.
    /// Throws only when the socket itself is unusable.
    func send(_ batch: DatagramBatch, count: Int) throws -> (sent: Int, failed: Int)
    /// Ends the socket's use for the stop: later receives return 0 and sends fail.
    func shutdown()
    /// True once a UDP_SEGMENT send failed because the device cannot checksum for it (EIO):
    /// senders must then send one datagram per packet.
    var segmentationOffloadFailed: Bool { get }
}

extension TunDevice: PacketTunnel {
    public var readinessDescriptor: Int32 { fileDescriptor }
}

extension UDPSocket: DatagramTransport {
    public var readinessDescriptor: Int32 { fileDescriptor }
    public var segmentationOffloadFailed: Bool { gsoFailedWithEIO }

    public func receiveAvailable(into batch: DatagramBatch, maxCount: Int) throws -> Int {
        try receive(into: batch, maxCount: maxCount, waiting: false)
    }
}
