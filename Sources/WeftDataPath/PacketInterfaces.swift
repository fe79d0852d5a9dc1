import Glibc
import WeftLinux

/// The TUN side of the data path. A TUN hands over one packet (or, with offloads, one TCP
/// super-packet) per read, so a lane's sender batches by reading until the device would block.
///
/// `TunDevice` is the real one; benchmarks and tests plug in in-memory fakes.
public protocol PacketTunnel: AnyObject, Sendable {
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
    /// Blocks until a packet is waiting or `wakeup` is signalled.
    func waitReadable(orWakeup wakeup: EventFD) throws -> Poll.Readiness
}

/// The underlay side: batches of datagrams, in and out (recvmmsg/sendmmsg on the real socket).
public protocol DatagramTransport: AnyObject, Sendable {
    /// Blocks until at least one datagram arrived; returns how many entries of `batch` were
    /// filled, 0 after `shutdown()`.
    func receive(into batch: DatagramBatch, maxCount: Int) throws -> Int
    /// Sends entries 0..<count; a datagram the kernel refuses is skipped and counted as failed.
    /// Throws only when the socket itself is unusable.
    func send(_ batch: DatagramBatch, count: Int) throws -> (sent: Int, failed: Int)
    /// Unblocks `receive` for shutdown.
    func shutdown()
    /// True once a UDP_SEGMENT send failed because the device cannot checksum for it (EIO):
    /// senders must then send one datagram per packet.
    var segmentationOffloadFailed: Bool { get }
}

extension TunDevice: PacketTunnel {
    public func waitReadable(orWakeup wakeup: EventFD) throws -> Poll.Readiness {
        try Poll.waitReadable(fileDescriptor, orWakeup: wakeup)
    }
}

extension UDPSocket: DatagramTransport {
    public var segmentationOffloadFailed: Bool { gsoFailedWithEIO }
}
