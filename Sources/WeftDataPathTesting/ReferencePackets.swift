import WeftCore

// Packets as byte arrays, built and checked byte by byte, independently of the code under test
// (WeftCore's checksum and header code are what the tests check).

/// RFC 1071 checksum of `bytes`, summed byte pair by byte pair.
public func referenceChecksum(_ bytes: ArraySlice<UInt8>) -> UInt16 {
    var sum: UInt64 = 0
    var index = bytes.startIndex
    while index < bytes.endIndex {
        let high = UInt64(bytes[index])
        let low = index + 1 < bytes.endIndex ? UInt64(bytes[index + 1]) : 0
        sum += high << 8 | low
        index += 2
    }
    while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
    return ~UInt16(sum)
}

/// True when the IPv4 header checksum of `bytes` verifies.
public func headerChecksumVerifies(_ bytes: [UInt8]) -> Bool {
    let headerLength = Int(bytes[0] & 0x0F) * 4
    return bytes.count >= headerLength && referenceChecksum(bytes[0..<headerLength]) == 0
}

/// True when the TCP or UDP checksum of IPv4 packet `bytes` verifies over its pseudo-header.
public func transportChecksumVerifies(_ bytes: [UInt8]) -> Bool {
    let headerLength = Int(bytes[0] & 0x0F) * 4
    let length = bytes.count - headerLength
    let pseudo: [UInt8] = Array(bytes[12..<20]) + [0, bytes[9], UInt8(length >> 8), UInt8(length & 0xFF)]
    return referenceChecksum(ArraySlice(pseudo + bytes[headerLength...])) == 0
}

/// A valid IPv4 packet with the given fields and a correct header checksum (the payload is
/// taken as it is: for UDP, 8 bytes of header with checksum 0 are a valid start).
public func makePacket(
    source: IPv4Address = IPv4Address(10, 244, 1, 5),
    destination: IPv4Address = IPv4Address(10, 244, 2, 7),
    ttl: UInt8 = 64,
    protocolNumber: UInt8 = 17,
    flagsAndOffset: UInt16 = 0x4000,
    identification: UInt16 = 0x1234,
    options: [UInt8] = [],
    payload: [UInt8] = Array(repeating: 0xAB, count: 12)
) -> [UInt8] {
    precondition(options.count % 4 == 0)
    let headerLength = 20 + options.count
    let total = headerLength + payload.count
    var bytes: [UInt8] = [
        0x40 | UInt8(headerLength / 4), 0, UInt8(total >> 8), UInt8(total & 0xFF),
        UInt8(identification >> 8), UInt8(identification & 0xFF), UInt8(flagsAndOffset >> 8), UInt8(flagsAndOffset & 0xFF),
        ttl, protocolNumber, 0, 0,
    ]
    for address in [source, destination] {
        bytes += bigEndianBytes(address.rawValue)
    }
    bytes += options
    let checksum = referenceChecksum(bytes[0..<headerLength])
    bytes[10] = UInt8(checksum >> 8)
    bytes[11] = UInt8(checksum & 0xFF)
    return bytes + payload
}

/// TCP flag bits.
public enum TCPFlag {
    public static let fin: UInt8 = 0x01
    public static let syn: UInt8 = 0x02
    public static let psh: UInt8 = 0x08
    public static let ack: UInt8 = 0x10
}

/// A valid IPv4/TCP packet (20-byte TCP header, no options) with correct header and TCP
/// checksums.
public func makeTCPPacket(
    source: IPv4Address,
    destination: IPv4Address,
    sourcePort: UInt16 = 40000,
    destinationPort: UInt16 = 5201,
    sequence: UInt32,
    acknowledgment: UInt32 = 1,
    flags: UInt8 = TCPFlag.ack,
    ttl: UInt8 = 64,
    identification: UInt16 = 0x1234,
    payload: [UInt8]
) -> [UInt8] {
    var tcp: [UInt8] = bigEndianBytes(sourcePort) + bigEndianBytes(destinationPort)
        + bigEndianBytes(sequence) + bigEndianBytes(acknowledgment)
        + [5 << 4, flags] + bigEndianBytes(UInt16(65535)) + [0, 0, 0, 0]
    tcp += payload
    var packet = makePacket(source: source, destination: destination, ttl: ttl, protocolNumber: 6,
                            identification: identification, payload: tcp)
    let length = tcp.count
    let pseudo: [UInt8] = Array(packet[12..<20]) + [0, 6, UInt8(length >> 8), UInt8(length & 0xFF)]
    let checksum = referenceChecksum(ArraySlice(pseudo + tcp))
    packet[36] = UInt8(checksum >> 8)
    packet[37] = UInt8(checksum & 0xFF)
    return packet
}

/// What a TUN with offloads hands over for a bulk TCP flow (see `writeTCPSuperPacket`): a
/// virtio-net header (TCPv4 GSO, `segmentSize`) and one IPv4/TCP super-packet of
/// `segments` × `segmentSize` payload bytes.
public func makeTCPSuperPacket(source: IPv4Address, destination: IPv4Address, sourcePort: UInt16 = 40000,
                               segments: Int, segmentSize: Int) -> [UInt8] {
    let length = VirtioNetHeader.size + 40 + segments * segmentSize
    return [UInt8](unsafeUninitializedCapacity: length) { buffer, initialized in
        initialized = writeTCPSuperPacket(at: buffer.baseAddress!, source: source, destination: destination,
                                          sourcePort: sourcePort, segments: segments, segmentSize: segmentSize)
    }
}

/// The big-endian bytes of an integer.
public func bigEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    (0..<(T.bitWidth / 8)).reversed().map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }
}

/// The big-endian integer at `offset` of `bytes`.
public func loadBigEndian<T: FixedWidthInteger>(_ bytes: [UInt8], at offset: Int, as type: T.Type = T.self) -> T {
    (0..<(T.bitWidth / 8)).reduce(T(0)) { $0 << 8 | T(bytes[offset + $1]) }
}
