/// The legacy 10-byte `struct virtio_net_hdr` that a TUN opened with IFF_VNET_HDR puts before every
/// packet it reads and expects before every packet written. Fields are in host byte order, which is
/// little-endian on every machine Weft runs on (the kernel's "legacy" header, not virtio 1.0's
/// explicitly little-endian one, but the two agree there).
public struct VirtioNetHeader: Equatable, Sendable {
    /// Bytes on the wire (no `num_buffers`: TUNSETVNETHDRSZ stays at 10).
    public static let size = 10
    /// VIRTIO_NET_HDR_F_NEEDS_CSUM: the transport checksum is only the pseudo-header sum.
    public static let needsChecksum: UInt8 = 1
    /// VIRTIO_NET_HDR_GSO_NONE.
    public static let gsoNone: UInt8 = 0
    /// VIRTIO_NET_HDR_GSO_TCPV4.
    public static let gsoTCPv4: UInt8 = 1
    /// VIRTIO_NET_HDR_GSO_UDP_L4: a UDP super-packet the kernel cuts into datagrams of gso_size
    /// payload bytes (accepted on TUN writes since Linux 6.2, with TUN_F_USO4).
    public static let gsoUDPL4: UInt8 = 5
    /// VIRTIO_NET_HDR_GSO_ECN, or-ed into gsoType when the super-packet carries CWR.
    public static let gsoECN: UInt8 = 0x80

    public var flags: UInt8
    public var gsoType: UInt8
    /// hdr_len: IP + transport header bytes (a hint to the kernel).
    public var headerLength: UInt16
    /// gso_size: transport payload bytes per segment.
    public var gsoSize: UInt16
    /// csum_start: from the start of the IP packet (not of this header).
    public var checksumStart: UInt16
    /// csum_offset: from csum_start to the checksum field (16 for TCP, 6 for UDP).
    public var checksumOffset: UInt16

    /// All zero is "a plain packet with finished checksums".
    public init(
        flags: UInt8 = 0, gsoType: UInt8 = 0, headerLength: UInt16 = 0,
        gsoSize: UInt16 = 0, checksumStart: UInt16 = 0, checksumOffset: UInt16 = 0
    ) {
        self.flags = flags
        self.gsoType = gsoType
        self.headerLength = headerLength
        self.gsoSize = gsoSize
        self.checksumStart = checksumStart
        self.checksumOffset = checksumOffset
    }

    /// Reads the 10 bytes at `pointer` (any alignment: it sits at the start of a read buffer or
    /// between iovecs).
    @inlinable
    public init(bytesAt pointer: UnsafeRawPointer) {
        func little16(_ offset: Int) -> UInt16 {
            UInt16(littleEndian: pointer.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
        }
        self.init(
            flags: pointer.load(as: UInt8.self),
            gsoType: pointer.load(fromByteOffset: 1, as: UInt8.self),
            headerLength: little16(2), gsoSize: little16(4),
            checksumStart: little16(6), checksumOffset: little16(8)
        )
    }

    /// Writes the 10 bytes at `pointer`.
    @inlinable
    public func store(to pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: flags, as: UInt8.self)
        pointer.storeBytes(of: gsoType, toByteOffset: 1, as: UInt8.self)
        pointer.storeBytes(of: headerLength.littleEndian, toByteOffset: 2, as: UInt16.self)
        pointer.storeBytes(of: gsoSize.littleEndian, toByteOffset: 4, as: UInt16.self)
        pointer.storeBytes(of: checksumStart.littleEndian, toByteOffset: 6, as: UInt16.self)
        pointer.storeBytes(of: checksumOffset.littleEndian, toByteOffset: 8, as: UInt16.self)
    }
}

/// Finishing checksums the kernel left to us (TUN_F_CSUM).
public enum OffloadChecksum {
    /// NEEDS_CSUM without GSO: sums `packet[start...]` (the field at start+offset already holds the
    /// pseudo-header sum, as the kernel's CHECKSUM_PARTIAL does) and stores the final checksum there.
    /// Returns false, touching nothing, if start/offset are out of bounds.
    public static func complete(_ packet: UnsafeMutableRawBufferPointer, start: Int, offset: Int) -> Bool {
        guard let base = packet.baseAddress, start >= 0, offset >= 0,
              start <= packet.count, offset <= packet.count - start - 2
        else { return false }
        let covered = UnsafeRawBufferPointer(start: base + start, count: packet.count - start)
        var checksum = InternetChecksum.checksum(covered)
        // As the kernel's skb_checksum_help: 0 becomes 0xFFFF (same value in one's complement), because
        // a UDP checksum of 0 means "none" and would switch verification off at the receiver.
        if checksum == 0 { checksum = 0xFFFF }
        base.storeBytes(of: checksum.bigEndian, toByteOffset: start + offset, as: UInt16.self)
        return true
    }
}

/// Field access shared by the segmenter and the coalescer: offsets into IPv4 and TCP headers.
enum OffloadField {
    static let ipTotalLength = 2
    static let ipID = 4
    static let ipFlags = 6
    static let ipChecksum = 10
    static let tcpSequence = 4
    static let tcpFlags = 13
    static let tcpChecksum = 16

    static let fin: UInt8 = 0x01, syn: UInt8 = 0x02, rst: UInt8 = 0x04, psh: UInt8 = 0x08
    static let ack: UInt8 = 0x10, urg: UInt8 = 0x20, ece: UInt8 = 0x40, cwr: UInt8 = 0x80

    @inline(__always)
    static func load16(_ base: UnsafeRawPointer, _ offset: Int) -> UInt16 {
        UInt16(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inline(__always)
    static func load32(_ base: UnsafeRawPointer, _ offset: Int) -> UInt32 {
        UInt32(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inline(__always)
    static func store16(_ base: UnsafeMutableRawPointer, _ offset: Int, _ value: UInt16) {
        base.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt16.self)
    }

    @inline(__always)
    static func store32(_ base: UnsafeMutableRawPointer, _ offset: Int, _ value: UInt32) {
        base.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
    }

    /// Recomputes the IPv4 header checksum of the header at `ip` (its length from IHL).
    @inline(__always)
    static func refreshIPChecksum(_ ip: UnsafeMutableRawPointer) {
        store16(ip, ipChecksum, 0)
        let length = IPv4Header(ip).headerLength
        store16(ip, ipChecksum, InternetChecksum.checksum(UnsafeRawBufferPointer(start: ip, count: length)))
    }

    /// Uncomplemented sum of the TCP or UDP pseudo-header (RFC 793, RFC 768: source,
    /// destination, zero, the header's protocol, transport length) for the IPv4 header at `ip`.
    @inline(__always)
    static func pseudoHeaderSum(_ ip: UnsafeRawPointer, transportLength: Int) -> UInt16 {
        let addresses = InternetChecksum.partialSum(UnsafeRawBufferPointer(start: ip + 12, count: 8))
        let protocolNumber = UInt16(ip.load(fromByteOffset: 9, as: UInt8.self))
        return InternetChecksum.combine(InternetChecksum.combine(addresses, protocolNumber), UInt16(transportLength))
    }

    /// Whether the TCP or UDP checksum of an IHL-5 packet whose total length is `packet.count`
    /// verifies: the sum over pseudo-header and transport bytes is 0xFFFF (its complement 0).
    /// The coalescers check every packet they join with it.
    static func transportChecksumVerifies(_ packet: UnsafeRawBufferPointer) -> Bool {
        let ip = packet.baseAddress!
        let transport = UnsafeRawBufferPointer(start: ip + 20, count: packet.count - 20)
        let pseudo = pseudoHeaderSum(ip, transportLength: transport.count)
        return InternetChecksum.partialSum(transport, initial: pseudo) == 0xFFFF
    }
}
