// Shared by every fuzz target: an independent checksum (not WeftCore's) to judge results with,
// and a failure that libFuzzer records as a crash with the input that caused it.

/// RFC 1071 over `bytes`, written plainly, to check WeftCore's optimised one against.
func referenceChecksum(_ bytes: UnsafeRawBufferPointer) -> UInt16 {
    var sum: UInt32 = 0
    var index = 0
    while index + 1 < bytes.count {
        sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
        index += 2
    }
    if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
    while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
    return ~UInt16(sum)
}

/// The IPv4 header at the start of `packet` has a valid checksum.
func headerChecksumVerifies(_ packet: UnsafeRawBufferPointer) -> Bool {
    let length = Int(packet[0] & 0x0F) * 4
    return packet.count >= length && referenceChecksum(UnsafeRawBufferPointer(rebasing: packet[0..<length])) == 0
}

/// The TCP or UDP checksum over pseudo-header and transport bytes verifies (IP options, if
/// any, are not part of it).
func transportChecksumVerifies(_ packet: UnsafeRawBufferPointer) -> Bool {
    let headerLength = Int(packet[0] & 0x0F) * 4
    guard packet.count >= headerLength else { return false }
    let length = packet.count - headerLength
    var bytes = Array(packet[12..<20]) + [0, packet[9], UInt8(length >> 8), UInt8(length & 0xFF)]
    bytes += packet[headerLength...]
    return bytes.withUnsafeBytes { referenceChecksum($0) } == 0
}

/// An invariant broke: abort, so libFuzzer saves the input as a crash.
func violated(_ what: String) -> Never {
    fatalError("fuzz invariant violated: \(what)")
}
