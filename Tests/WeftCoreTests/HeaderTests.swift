import Testing
import WeftCore
import WeftDataPathTesting

private func validate(_ bytes: [UInt8]) -> DropReason? {
    bytes.withUnsafeBytes { IPv4Header.validate($0) }
}

/// Sets a header byte and recomputes the checksum, so only the intended defect remains.
private func withField(_ bytes: [UInt8], _ index: Int, _ value: UInt8) -> [UInt8] {
    var copy = bytes
    copy[index] = value
    let headerLength = max(20, min(copy.count, Int(copy[0] & 0x0F) * 4))
    copy[10] = 0
    copy[11] = 0
    let checksum = referenceChecksum(copy[0..<headerLength])
    copy[10] = UInt8(checksum >> 8)
    copy[11] = UInt8(checksum & 0xFF)
    return copy
}

@Suite struct HeaderValidationTests {
    @Test func acceptsAValidPacket() {
        #expect(validate(makePacket()) == nil)
        #expect(validate(makePacket(options: [1, 1, 1, 0])) == nil)
        #expect(validate(makePacket(payload: [])) == nil)
    }

    @Test func readsFields() {
        let bytes = makePacket(ttl: 33, protocolNumber: 6, flagsAndOffset: 0x2003, options: [1, 1, 1, 0])
        bytes.withUnsafeBytes { buffer in
            let header = IPv4Header(buffer.baseAddress!)
            #expect(header.version == 4)
            #expect(header.headerLength == 24)
            #expect(header.totalLength == bytes.count)
            #expect(header.ttl == 33)
            #expect(header.protocolNumber == 6)
            #expect(!header.dontFragment)
            #expect(header.moreFragments)
            #expect(header.fragmentOffset == 24)
            #expect(header.source == IPv4Address(10, 244, 1, 5))
            #expect(header.destination == IPv4Address(10, 244, 2, 7))
            #expect(header.checksum == UInt16(bytes[10]) << 8 | UInt16(bytes[11]))
        }
        makePacket().withUnsafeBytes { #expect(IPv4Header($0.baseAddress!).dontFragment) }
    }

    @Test func tooShort() {
        #expect(validate([]) == .tooShort)
        #expect(validate(Array(makePacket().prefix(19))) == .tooShort)
    }

    @Test func versions() {
        var ipv6 = [UInt8](repeating: 0, count: 40)
        ipv6[0] = 0x60
        #expect(validate(ipv6) == .ipv6)
        #expect(validate(withField(makePacket(), 0, 0x55)) == .notIPv4)
        #expect(validate(withField(makePacket(), 0, 0x05)) == .notIPv4)
    }

    @Test func headerLength() {
        #expect(validate(withField(makePacket(), 0, 0x44)) == .badHeaderLength)
        #expect(validate(withField(makePacket(), 0, 0x40)) == .badHeaderLength)
        // IHL 15 is 60 bytes, more than this 32-byte packet holds.
        #expect(validate(withField(makePacket(), 0, 0x4F)) == .badHeaderLength)
    }

    @Test func totalLength() {
        let packet = makePacket()
        #expect(validate(withField(packet, 3, UInt8(packet.count + 1))) == .badTotalLength)
        #expect(validate(withField(packet, 3, UInt8(packet.count - 1))) == .badTotalLength)
        #expect(validate(packet + [0]) == .badTotalLength)
    }

    @Test func checksum() {
        var packet = makePacket()
        packet[11] ^= 0x01
        #expect(validate(packet) == .badChecksum)
        var ttlChanged = makePacket()
        ttlChanged[8] = 7
        #expect(validate(ttlChanged) == .badChecksum)
    }

    @Test func internetChecksumMatchesReference() {
        var generator = SplitMix64(seed: 7)
        for length in 0..<80 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let computed = bytes.withUnsafeBytes { InternetChecksum.checksum($0) }
            #expect(computed == referenceChecksum(bytes[...]), "length \(length)")
        }
        #expect(makePacket().withUnsafeBytes { InternetChecksum.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<20])) } == 0)
    }

    @Test("the wide loop: super-packet sizes, odd starts, and more bytes than its lanes hold between flushes",
          arguments: [31, 32, 33, 95, 1472, 9001, 65_535, 1_100_000])
    func internetChecksumMatchesReferenceOnLongInputs(length: Int) {
        var generator = SplitMix64(seed: UInt64(length))
        let random = (0..<(length + 1)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        // All 0xFF makes every 16-bit word as large as it gets, so any lane overflow shows.
        let ones = [UInt8](repeating: 0xFF, count: length + 1)
        for bytes in [random, ones] {
            for start in 0...1 {
                let slice = bytes[start..<(start + length)]
                let computed = slice.withUnsafeBytes { InternetChecksum.checksum($0) }
                #expect(computed == referenceChecksum(slice), "length \(length) from offset \(start)")
            }
        }
    }

    /// RFC 1071 §3 worked example: words 0x0001 0xf203 0xf4f5 0xf6f7 sum to 0xddf2.
    @Test func internetChecksumRFCExample() {
        let bytes: [UInt8] = [0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]
        #expect(bytes.withUnsafeBytes { InternetChecksum.checksum($0) } == ~UInt16(0xDDF2))
    }
}

@Suite struct TTLRuleTests {
    /// flannel's amd64 code: little-endian view `c`, `c += (c >= 0xFFFE) ? 2 : 1`.
    private func flannelPatch(_ networkValue: UInt16) -> UInt16 {
        var littleEndian = networkValue.byteSwapped
        littleEndian &+= littleEndian >= 0xFFFE ? 2 : 1
        return littleEndian.byteSwapped
    }

    /// RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), for a TTL drop from 64 to 63 (protocol 17).
    private func rfc1624Patch(_ checksum: UInt16) -> UInt16 {
        let old: UInt32 = 0x4011
        let new: UInt32 = 0x3F11
        var sum = UInt32(~checksum) + UInt32(~UInt16(old)) + new
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        return ~UInt16(sum)
    }

    @Test func patchedChecksumIsFlannelExactForAllValues() {
        var mismatches = 0
        var notEquivalent = 0
        for value in 0...0xFFFF {
            let checksum = UInt16(value)
            let patched = TTLRule.patchedChecksum(checksum)
            if patched != flannelPatch(checksum) { mismatches += 1 }
            let reference = rfc1624Patch(checksum)
            // 0x0000 and 0xFFFF are both one's-complement zero.
            let equivalent = patched == reference || (patched == 0 && reference == 0xFFFF) || (patched == 0xFFFF && reference == 0)
            if !equivalent { notEquivalent += 1 }
        }
        #expect(mismatches == 0)
        #expect(notEquivalent == 0)
        #expect(TTLRule.patchedChecksum(0xFEFF) == 0x0000)
        #expect(TTLRule.patchedChecksum(0x1234) == 0x1334)
        #expect(TTLRule.patchedChecksum(0xFF00) == 0x0001)
    }

    @Test func decrementKeepsRandomHeadersValid() {
        var generator = SplitMix64(seed: 42)
        for _ in 0..<20_000 {
            let ttl = UInt8.random(in: 2...255, using: &generator)
            var packet = makePacket(
                source: IPv4Address(rawValue: .random(in: 0...UInt32.max, using: &generator)),
                destination: IPv4Address(rawValue: .random(in: 0...UInt32.max, using: &generator)),
                ttl: ttl,
                protocolNumber: .random(in: 0...255, using: &generator),
                flagsAndOffset: .random(in: 0...0xFFFF, using: &generator),
                payload: [])
            packet[4] = .random(in: 0...255, using: &generator)
            packet[5] = .random(in: 0...255, using: &generator)
            packet[1] = .random(in: 0...255, using: &generator)
            packet[10] = 0
            packet[11] = 0
            let checksum = referenceChecksum(packet[0..<20])
            packet[10] = UInt8(checksum >> 8)
            packet[11] = UInt8(checksum & 0xFF)
            let before = packet
            let decremented = packet.withUnsafeMutableBytes { TTLRule.decrement($0.baseAddress!) }
            #expect(decremented)
            #expect(packet[8] == ttl - 1)
            #expect(headerChecksumVerifies(packet))
            #expect(Array(packet[0..<8]) == Array(before[0..<8]))
            #expect(Array(packet[9...]) != [] && packet[9] == before[9] && Array(packet[12...]) == Array(before[12...]))
        }
    }

    @Test(arguments: [UInt8(0), 1])
    func expiredTTLLeavesPacketUntouched(_ ttl: UInt8) {
        var packet = makePacket(ttl: ttl)
        let before = packet
        let decremented = packet.withUnsafeMutableBytes { TTLRule.decrement($0.baseAddress!) }
        #expect(!decremented)
        #expect(packet == before)
    }
}
