import WeftCore

// Packets built straight into memory, for the fakes and the benchmarks: no allocation once built.

/// Writes a valid IPv4/UDP packet (no options, DF set, correct header checksum, UDP checksum 0)
/// of `20 + 8 + payloadLength` bytes at `base` and returns its length.
@discardableResult
public func writeUDPPacket(
    at base: UnsafeMutableRawPointer,
    source: IPv4Address,
    destination: IPv4Address,
    sourcePort: UInt16 = 40000,
    destinationPort: UInt16 = 9,
    ttl: UInt8 = 64,
    payloadLength: Int
) -> Int {
    let total = 28 + payloadLength
    precondition(total <= Int(UInt16.max))
    let header: [UInt8] = [
        0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF),
        0x12, 0x34, 0x40, 0x00,
        ttl, 17, 0, 0,
    ]
    header.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: 12) }
    source.store(networkOrderTo: base + 12)
    destination.store(networkOrderTo: base + 16)
    let checksum = InternetChecksum.checksum(UnsafeRawBufferPointer(start: base, count: 20))
    base.storeBytes(of: checksum.bigEndian, toByteOffset: 10, as: UInt16.self)
    base.storeBytes(of: sourcePort.bigEndian, toByteOffset: 20, as: UInt16.self)
    base.storeBytes(of: destinationPort.bigEndian, toByteOffset: 22, as: UInt16.self)
    base.storeBytes(of: UInt16(8 + payloadLength).bigEndian, toByteOffset: 24, as: UInt16.self)
    base.storeBytes(of: UInt16(0), toByteOffset: 26, as: UInt16.self)
    for index in 0..<payloadLength {
        base.storeBytes(of: UInt8(truncatingIfNeeded: index), toByteOffset: 28 + index, as: UInt8.self)
    }
    return total
}

/// Writes what a TUN with offloads (TSO, TUN_F_CSUM) hands over for a bulk TCP flow: a 10-byte
/// virtio-net header (GSO TCPv4, NEEDS_CSUM, gso_size `segmentSize`) and an IPv4/TCP
/// super-packet of `segments` × `segmentSize` payload bytes with a valid IPv4 header checksum
/// and, as CHECKSUM_PARTIAL leaves it, only the pseudo-header sum in the TCP checksum. Returns
/// the bytes written.
@discardableResult
public func writeTCPSuperPacket(
    at base: UnsafeMutableRawPointer,
    source: IPv4Address,
    destination: IPv4Address,
    sourcePort: UInt16,
    segments: Int,
    segmentSize: Int
) -> Int {
    let headerLength = 40
    let total = headerLength + segments * segmentSize
    precondition(total <= Int(UInt16.max))
    VirtioNetHeader(
        flags: VirtioNetHeader.needsChecksum, gsoType: VirtioNetHeader.gsoTCPv4,
        headerLength: UInt16(headerLength), gsoSize: UInt16(segmentSize),
        checksumStart: 20, checksumOffset: 16
    ).store(to: base)
    let ip = base + VirtioNetHeader.size
    let header: [UInt8] = [
        0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF),
        0x12, 0x34, 0x40, 0x00,
        64, 6, 0, 0,
    ]
    header.withUnsafeBytes { ip.copyMemory(from: $0.baseAddress!, byteCount: 12) }
    source.store(networkOrderTo: ip + 12)
    destination.store(networkOrderTo: ip + 16)
    let checksum = InternetChecksum.checksum(UnsafeRawBufferPointer(start: ip, count: 20))
    ip.storeBytes(of: checksum.bigEndian, toByteOffset: 10, as: UInt16.self)
    let tcp = ip + 20
    tcp.storeBytes(of: sourcePort.bigEndian, as: UInt16.self)
    tcp.storeBytes(of: UInt16(5201).bigEndian, toByteOffset: 2, as: UInt16.self)
    tcp.storeBytes(of: UInt32(1_000_000).bigEndian, toByteOffset: 4, as: UInt32.self)
    tcp.storeBytes(of: UInt32(1).bigEndian, toByteOffset: 8, as: UInt32.self)
    tcp.storeBytes(of: UInt8(5 << 4), toByteOffset: 12, as: UInt8.self)
    tcp.storeBytes(of: UInt8(0x18), toByteOffset: 13, as: UInt8.self)  // ACK, PSH
    tcp.storeBytes(of: UInt16(65535).bigEndian, toByteOffset: 14, as: UInt16.self)
    tcp.storeBytes(of: UInt16(0), toByteOffset: 18, as: UInt16.self)
    // Pseudo-header: source, destination, protocol 6, TCP length.
    var pseudo = [UInt8](repeating: 0, count: 12)
    pseudo.withUnsafeMutableBytes { bytes in
        bytes.baseAddress!.copyMemory(from: ip + 12, byteCount: 8)
        bytes[9] = 6
        bytes.storeBytes(of: UInt16(total - 20).bigEndian, toByteOffset: 10, as: UInt16.self)
    }
    let pseudoSum = pseudo.withUnsafeBytes { InternetChecksum.partialSum($0) }
    tcp.storeBytes(of: pseudoSum.bigEndian, toByteOffset: 16, as: UInt16.self)
    for index in 0..<(segments * segmentSize) {
        ip.storeBytes(of: UInt8(truncatingIfNeeded: index &* 7), toByteOffset: headerLength + index, as: UInt8.self)
    }
    return VirtioNetHeader.size + total
}

/// Prebuilt packets in one 64-byte-aligned region, each in its own fixed-size cell.
public final class PacketSet: @unchecked Sendable {
    public let count: Int
    private let stride: Int
    private let region: UnsafeMutableRawPointer
    private let lengths: UnsafeMutablePointer<Int>

    /// `count` packets of at most `maxLength` bytes, each written by `build(index, cell)`, which
    /// returns the packet's length.
    public init(count: Int, maxLength: Int, build: (Int, UnsafeMutableRawPointer) -> Int) {
        self.count = count
        stride = (maxLength + 63) & ~63
        region = .allocate(byteCount: count * stride, alignment: 64)
        region.initializeMemory(as: UInt8.self, repeating: 0, count: count * stride)
        lengths = .allocate(capacity: count)
        for index in 0..<count {
            let length = build(index, region + index * stride)
            precondition(length <= maxLength)
            (lengths + index).initialize(to: length)
        }
    }

    deinit {
        region.deallocate()
        lengths.deallocate()
    }

    @inline(__always)
    public func packet(_ index: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: region + index * stride, count: lengths[index])
    }

    @inline(__always)
    public func mutablePacket(_ index: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: region + index * stride, count: lengths[index])
    }
}
