import Testing
import WeftCore
import WeftDataPathTesting

// MARK: helpers (independent of the code under test: byte arrays and referenceChecksum)

/// Reference TCP/UDP checksum over pseudo-header + `segment` (transport header and payload), with
/// the checksum field inside `segment` taken as it is.
private func transportChecksum(packet: [UInt8], protocolNumber: UInt8) -> UInt16 {
    let ihl = Int(packet[0] & 0x0F) * 4
    let length = packet.count - ihl
    let pseudo: [UInt8] = Array(packet[12..<20]) + [0, protocolNumber, UInt8(length >> 8), UInt8(length & 0xFF)]
    return referenceChecksum(ArraySlice(pseudo + packet[ihl...]))
}

private func be16(_ bytes: [UInt8], _ i: Int) -> Int { Int(bytes[i]) << 8 | Int(bytes[i + 1]) }
private func be32(_ bytes: [UInt8], _ i: Int) -> UInt32 {
    UInt32(bytes[i]) << 24 | UInt32(bytes[i + 1]) << 16 | UInt32(bytes[i + 2]) << 8 | UInt32(bytes[i + 3])
}
private func put16(_ bytes: inout [UInt8], _ i: Int, _ v: Int) { bytes[i] = UInt8(v >> 8 & 0xFF); bytes[i + 1] = UInt8(v & 0xFF) }
private func put32(_ bytes: inout [UInt8], _ i: Int, _ v: UInt32) {
    for k in 0..<4 { bytes[i + k] = UInt8(v >> (24 - 8 * UInt32(k)) & 0xFF) }
}

private func randomBytes(_ count: Int, _ rng: inout SplitMix64) -> [UInt8] {
    (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
}

/// A TCP header (with the 12-byte NOP,NOP,timestamps option unless `options` says otherwise).
private func tcpHeader(
    sourcePort: Int = 40000, destinationPort: Int = 5201, sequence: UInt32 = 0xFFFF_F000,
    ack: UInt32 = 0x1234_5678, flags: UInt8 = 0x18, window: Int = 502,
    options: [UInt8] = [1, 1, 8, 10, 0, 1, 2, 3, 4, 5, 6, 7]
) -> [UInt8] {
    var h = [UInt8](repeating: 0, count: 20)
    put16(&h, 0, sourcePort)
    put16(&h, 2, destinationPort)
    put32(&h, 4, sequence)
    put32(&h, 8, ack)
    h[12] = UInt8((20 + options.count) / 4) << 4
    h[13] = flags
    put16(&h, 14, window)
    return h + options
}

/// A complete IPv4/TCP packet with correct IP and TCP checksums.
private func tcpPacket(tcp: [UInt8], payload: [UInt8], id: Int = 0x1234, ipOptions: [UInt8] = [], protocolNumber: UInt8 = 6) -> [UInt8] {
    var packet = makePacket(protocolNumber: protocolNumber, options: ipOptions, payload: tcp + payload)
    put16(&packet, 4, id)
    packet[10] = 0; packet[11] = 0
    let ihl = 20 + ipOptions.count
    put16(&packet, 10, Int(referenceChecksum(packet[0..<ihl])))
    if protocolNumber == 6 {
        put16(&packet, ihl + 16, Int(transportChecksum(packet: packet, protocolNumber: 6)))
    }
    return packet
}

private struct Segmented {
    var count: Int?
    var packets: [[UInt8]] = []
    var segments: [TCPSegment] = []
}

/// Runs the segmenter with `capacity` segment slots and rebuilds each segment as header + slice.
private func segment(_ packet: [UInt8], gsoSize: Int, capacity: Int = 64) -> Segmented {
    let headers = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity * 128, alignment: 64)
    let slots = UnsafeMutableBufferPointer<TCPSegment>.allocate(capacity: capacity)
    defer { headers.deallocate(); slots.deallocate() }
    var result = Segmented()
    packet.withUnsafeBytes { bytes in
        result.count = TCPSegmenter.segment(bytes, gsoSize: gsoSize, headers: headers, segments: slots)
        for s in slots.prefix(result.count ?? 0) {
            result.segments.append(s)
            result.packets.append(
                Array(headers[s.headerOffset..<s.headerOffset + s.headerLength])
                    + Array(bytes[s.payloadOffset..<s.payloadOffset + s.payloadLength]))
        }
    }
    return result
}

// MARK: virtio header

@Suite struct OffloadVirtioHeaderTests {
    @Test func roundTripsLittleEndianBytes() {
        let bytes: [UInt8] = [0x01, 0x81, 0x42, 0x00, 0x8C, 0x05, 0x14, 0x00, 0x10, 0x00]
        let header = bytes.withUnsafeBytes { VirtioNetHeader(bytesAt: $0.baseAddress!) }
        #expect(header == VirtioNetHeader(
            flags: VirtioNetHeader.needsChecksum, gsoType: VirtioNetHeader.gsoTCPv4 | VirtioNetHeader.gsoECN,
            headerLength: 66, gsoSize: 1420, checksumStart: 20, checksumOffset: 16))
        var out = [UInt8](repeating: 0xEE, count: 12)
        out.withUnsafeMutableBytes { header.store(to: $0.baseAddress! + 1) }
        #expect(Array(out[1..<11]) == bytes)
        #expect(out[0] == 0xEE && out[11] == 0xEE)
        #expect(VirtioNetHeader.size == 10)
        let zero = [UInt8](repeating: 0, count: 10).withUnsafeBytes { VirtioNetHeader(bytesAt: $0.baseAddress!) }
        #expect(zero == VirtioNetHeader())
    }
}

// MARK: checksum completion

@Suite struct OffloadChecksumTests {
    @Test(arguments: [UInt8(6), UInt8(17)])
    func completesLikeAFullComputation(protocolNumber: UInt8) {
        var rng = SplitMix64(seed: 0x0FF1_0AD0 + UInt64(protocolNumber))
        let checksumOffset = protocolNumber == 6 ? 16 : 6
        for round in 0..<200 {
            let transportHeader = protocolNumber == 6 ? 20 : 8
            let options: [UInt8] = round % 3 == 0 ? [1, 1, 1, 0] : []
            let transport = randomBytes(transportHeader + Int.random(in: 0...1500, using: &rng), &rng)
            var packet = makePacket(protocolNumber: protocolNumber, options: options, payload: transport)
            let ihl = 20 + options.count
            let field = ihl + checksumOffset
            packet[field] = 0; packet[field + 1] = 0
            let expected = transportChecksum(packet: packet, protocolNumber: protocolNumber)
            // What the kernel leaves: the uncomplemented pseudo-header sum.
            let length = packet.count - ihl
            let pseudo = ~referenceChecksum(ArraySlice(Array(packet[12..<20]) + [0, protocolNumber, UInt8(length >> 8), UInt8(length & 0xFF)]))
            put16(&packet, field, Int(pseudo))
            let ok = packet.withUnsafeMutableBytes { OffloadChecksum.complete($0, start: ihl, offset: checksumOffset) }
            #expect(ok)
            let stored = UInt16(be16(packet, field))
            #expect(stored == (expected == 0 ? 0xFFFF : expected))
            #expect(transportChecksum(packet: packet, protocolNumber: protocolNumber) == 0)
        }
    }

    @Test func rejectsOutOfBounds() {
        var packet = makePacket(payload: [UInt8](repeating: 1, count: 8))
        let before = packet
        packet.withUnsafeMutableBytes { buffer in
            #expect(!OffloadChecksum.complete(buffer, start: 28, offset: 0))
            #expect(!OffloadChecksum.complete(buffer, start: 20, offset: 7))
            #expect(!OffloadChecksum.complete(buffer, start: -2, offset: 6))
            #expect(!OffloadChecksum.complete(buffer, start: 20, offset: -1))
            #expect(!OffloadChecksum.complete(buffer, start: Int.max, offset: 6))
            #expect(OffloadChecksum.complete(buffer, start: 20, offset: 6))
        }
        #expect(Array(packet[0..<26]) == Array(before[0..<26]))
    }
}

// MARK: segmenter

@Suite struct OffloadSegmenterTests {
    @Test func cutsASuperPacketIntoValidPackets() {
        var rng = SplitMix64(seed: 42)
        let payload = randomBytes(10_000, &rng)
        let header = tcpHeader(flags: 0x18 | 0x80)  // PSH|ACK|CWR
        let superPacket = tcpPacket(tcp: header, payload: payload, id: 0xFFFE)
        let result = segment(superPacket, gsoSize: 1420)
        #expect(result.count == 8)
        #expect(result.segments.map(\.payloadLength) == Array(repeating: 1420, count: 7) + [60])
        #expect(result.segments.allSatisfy { $0.headerOffset % 64 == 0 && $0.headerLength == 52 })
        var joined: [UInt8] = []
        for (index, packet) in result.packets.enumerated() {
            #expect(packet.withUnsafeBytes { IPv4Header.validate($0) } == nil)
            #expect(transportChecksum(packet: packet, protocolNumber: 6) == 0)
            #expect(be16(packet, 4) == (0xFFFE + index) & 0xFFFF)
            #expect(packet[6] & 0x40 != 0)  // DF kept
            #expect(be32(packet, 24) == 0xFFFF_F000 &+ UInt32(index * 1420))  // wraps past 2^32
            let flags = packet[33]
            #expect((flags & 0x08 != 0) == (index == 7))  // PSH only last
            #expect((flags & 0x80 != 0) == (index == 0))  // CWR only first
            #expect(flags & 0x10 != 0)
            #expect(Array(packet[20..<52].enumerated().filter { ![4, 5, 6, 7, 13, 16, 17].contains($0.offset) }.map(\.element))
                == Array(header.enumerated().filter { ![4, 5, 6, 7, 13, 16, 17].contains($0.offset) }.map(\.element)))
            joined += packet[52...]
        }
        #expect(joined == payload)
        // Payload is referenced in place, not copied.
        #expect(result.segments.map(\.payloadOffset) == (0..<8).map { 52 + $0 * 1420 })
    }

    @Test func copiesIPOptionsAndHandlesOddSizes() {
        var rng = SplitMix64(seed: 7)
        let payload = randomBytes(3001, &rng)
        let superPacket = tcpPacket(tcp: tcpHeader(flags: 0x11), payload: payload, ipOptions: [0x94, 4, 0, 0])
        let result = segment(superPacket, gsoSize: 999)
        #expect(result.count == 4)
        #expect(result.segments.map(\.payloadLength) == [999, 999, 999, 4])
        for (index, packet) in result.packets.enumerated() {
            #expect(packet.withUnsafeBytes { IPv4Header.validate($0) } == nil)
            #expect(Array(packet[20..<24]) == [0x94, 4, 0, 0])
            #expect(transportChecksum(packet: packet, protocolNumber: 6) == 0)
            #expect((packet[24 + 13] & 0x01 != 0) == (index == 3))  // FIN only last
        }
    }

    @Test func smallPayloadGivesOneSegment() {
        let superPacket = tcpPacket(tcp: tcpHeader(), payload: [UInt8](repeating: 9, count: 1000))
        let result = segment(superPacket, gsoSize: 1000)
        #expect(result.count == 1)
        #expect(result.packets.first == superPacket)
        let empty = tcpPacket(tcp: tcpHeader(flags: 0x10), payload: [])
        #expect(segment(empty, gsoSize: 1420).packets == [empty])
    }

    @Test func refusesWhatItCannotSegment() {
        let superPacket = tcpPacket(tcp: tcpHeader(), payload: [UInt8](repeating: 9, count: 10_000))
        #expect(segment(superPacket, gsoSize: 1420, capacity: 7).count == nil)
        #expect(segment(superPacket, gsoSize: 1420, capacity: 8).count == 8)
        #expect(segment(superPacket, gsoSize: 0).count == nil)
        let udp = tcpPacket(tcp: tcpHeader(), payload: [1, 2, 3], protocolNumber: 17)
        #expect(segment(udp, gsoSize: 1).count == nil)
        var badOffset = superPacket
        badOffset[32] = 0x40  // TCP data offset 4 words
        #expect(segment(badOffset, gsoSize: 1420).count == nil)
        #expect(segment(Array(superPacket.dropLast()), gsoSize: 1420).count == nil)
        var fragment = superPacket
        fragment[6] |= 0x20
        #expect(segment(fragment, gsoSize: 1420).count == nil)
    }
}

// MARK: coalescer

@Suite struct OffloadCoalescerTests {
    /// A 10,000-byte PSH|ACK super-packet cut at 1420, as received from a peer.
    private func receivedSegments() -> (superPacket: [UInt8], packets: [[UInt8]]) {
        var rng = SplitMix64(seed: 99)
        let superPacket = tcpPacket(tcp: tcpHeader(flags: 0x18), payload: randomBytes(10_000, &rng), id: 77)
        return (superPacket, segment(superPacket, gsoSize: 1420).packets)
    }

    private func canAppend(_ first: [UInt8], _ total: Int, _ next: [UInt8]) -> Bool {
        first.withUnsafeBytes { a in next.withUnsafeBytes { b in TCPCoalescer.canAppend(first: a, appendedPayload: total, next: b) } }
    }

    @Test func joinsSegmentsBackIntoTheSuperPacket() {
        let (superPacket, packets) = receivedSegments()
        var first = packets[0]
        let gsoSize = first.withUnsafeBytes { TCPCoalescer.payloadLength($0) }!
        #expect(gsoSize == 1420)
        var total = gsoSize
        var payloads = Array(first[52...])
        var push = false
        for next in packets.dropFirst() {
            #expect(canAppend(first, total, next))
            total += next.withUnsafeBytes { TCPCoalescer.payloadLength($0) }!
            payloads += next[52...]
            push = next[33] & 0x08 != 0
            if push { break }
        }
        #expect(total == 10_000 && push)
        let virtio = first.withUnsafeMutableBytes { TCPCoalescer.finish(first: $0, totalPayload: total, gsoSize: gsoSize, push: push) }
        #expect(virtio == VirtioNetHeader(
            flags: VirtioNetHeader.needsChecksum, gsoType: VirtioNetHeader.gsoTCPv4,
            headerLength: 52, gsoSize: 1420, checksumStart: 20, checksumOffset: 16))
        let joined = Array(first[0..<52]) + payloads
        #expect(joined.count == superPacket.count)
        #expect(be16(joined, 2) == superPacket.count)
        #expect(be32(joined, 24) == be32(superPacket, 24))
        #expect(joined[33] == 0x18)
        #expect(joined.withUnsafeBytes { IPv4Header.validate($0) } == nil)
        // Everything but the TCP checksum is the original; that field holds the pseudo-header sum.
        var a = joined, b = superPacket
        a[36] = 0; a[37] = 0; b[36] = 0; b[37] = 0
        #expect(a == b)
        let length = joined.count - 20
        let pseudo = ~referenceChecksum(ArraySlice(Array(joined[12..<20]) + [0, 6, UInt8(length >> 8), UInt8(length & 0xFF)]))
        #expect(be16(joined, 36) == Int(pseudo))
        // The kernel completes it to the real checksum: same as OffloadChecksum would.
        var completed = joined
        #expect(completed.withUnsafeMutableBytes { OffloadChecksum.complete($0, start: 20, offset: 16) })
        #expect(transportChecksum(packet: completed, protocolNumber: 6) == 0)
    }

    @Test func rejectsWhatDoesNotContinueTheFlow() {
        let (_, packets) = receivedSegments()
        let first = packets[0], second = packets[1], third = packets[2]
        #expect(canAppend(first, 1420, second))
        #expect(!canAppend(first, 1420, third))          // gap in sequence
        #expect(!canAppend(first, 2840, second))         // overlaps what was appended
        #expect(canAppend(first, 2840, third))

        func modified(_ packet: [UInt8], _ edit: (inout [UInt8]) -> Void) -> [UInt8] {
            // Rebuild checksums so only the intended difference remains.
            var p = packet
            edit(&p)
            p[10] = 0; p[11] = 0; put16(&p, 10, Int(referenceChecksum(p[0..<20])))
            p[36] = 0; p[37] = 0; put16(&p, 36, Int(transportChecksum(packet: p, protocolNumber: 6)))
            return p
        }
        #expect(canAppend(first, 1420, modified(second) { _ in }))
        #expect(!canAppend(first, 1420, modified(second) { put16(&$0, 22, 5202) }))           // other port
        #expect(!canAppend(first, 1420, modified(second) { $0[33] = 0x12 }))                  // SYN
        #expect(!canAppend(first, 1420, modified(second) { $0[33] = 0x11 }))                  // FIN
        #expect(!canAppend(first, 1420, modified(second) { $0[8] = 63 }))                     // TTL
        #expect(!canAppend(first, 1420, modified(second) { $0[51] ^= 1 }))                    // timestamp option
        #expect(!canAppend(first, 1420, modified(second) { put16(&$0, 34, 1000) }))           // window
        #expect(!canAppend(first, 1420, modified(second) { $0[31] ^= 1 }))                    // ACK number
        #expect(!canAppend(modified(first) { $0[33] = 0x18 }, 1420, second))                  // PSH on first
        var corrupted = second
        corrupted[100] ^= 0xFF
        #expect(!canAppend(first, 1420, corrupted))                                           // bad checksum
        var corruptedFirst = first
        corruptedFirst[100] ^= 0xFF
        #expect(!canAppend(corruptedFirst, 1420, second))

        // A first segment shorter than the one after it, or short ones in the middle.
        let short = tcpPacket(tcp: tcpHeader(sequence: 0xFFFF_F000 &- 100, flags: 0x10), payload: [UInt8](repeating: 1, count: 100))
        let shortFirst = modified(short) { put16(&$0, 4, 77) }
        #expect(!canAppend(shortFirst, 100, modified(first) { $0[33] = 0x10 }))
        #expect(!canAppend(first, 1420 + 60, modified(third) { _ in }))                    // not a multiple: a short one was appended
        #expect(!canAppend(first, 1420, packets[7]))                                      // gap, and last is short anyway
    }

    @Test func refusesToGrowPast65535() {
        var rng = SplitMix64(seed: 5)
        let payload = randomBytes(1000, &rng)
        let first = tcpPacket(tcp: tcpHeader(sequence: 0, flags: 0x10), payload: payload)
        let next65 = tcpPacket(tcp: tcpHeader(sequence: 65_000, flags: 0x10), payload: payload)
        let next64 = tcpPacket(tcp: tcpHeader(sequence: 64_000, flags: 0x10), payload: payload)
        #expect(canAppend(first, 64_000, next64))   // 52 + 65,000 ≤ 65535
        #expect(!canAppend(first, 65_000, next65))  // 52 + 66,000 > 65535
    }
}

@Suite struct UDPCoalescerTests {
    /// An IPv4/UDP datagram with correct IP and UDP checksums.
    private func udpPacket(payload: [UInt8], id: Int, sourcePort: Int = 40000, ttl: UInt8 = 64) -> [UInt8] {
        var udp = [UInt8](repeating: 0, count: 8)
        put16(&udp, 0, sourcePort)
        put16(&udp, 2, 9)
        put16(&udp, 4, 8 + payload.count)
        var packet = makePacket(ttl: ttl, protocolNumber: 17, payload: udp + payload)
        put16(&packet, 4, id)
        packet[10] = 0; packet[11] = 0
        put16(&packet, 10, Int(referenceChecksum(packet[0..<20])))
        var checksum = transportChecksum(packet: packet, protocolNumber: 17)
        if checksum == 0 { checksum = 0xFFFF }
        put16(&packet, 26, Int(checksum))
        return packet
    }

    /// What the kernel's UDP_L4 segmentation makes of a joined packet: each datagram gets the
    /// first's IP header with its length and an ID counting up, and its own UDP length and checksum.
    private func kernelSegments(_ joined: [UInt8], gsoSize: Int) -> [[UInt8]] {
        let payload = Array(joined[28...])
        return stride(from: 0, to: payload.count, by: gsoSize).enumerated().map { index, start in
            let slice = Array(payload[start..<min(payload.count, start + gsoSize)])
            var packet = Array(joined[0..<28]) + slice
            put16(&packet, 2, packet.count)
            put16(&packet, 4, (be16(joined, 4) + index) & 0xFFFF)
            packet[10] = 0; packet[11] = 0
            put16(&packet, 10, Int(referenceChecksum(packet[0..<20])))
            put16(&packet, 24, 8 + slice.count)
            packet[26] = 0; packet[27] = 0
            var checksum = transportChecksum(packet: packet, protocolNumber: 17)
            if checksum == 0 { checksum = 0xFFFF }
            put16(&packet, 26, Int(checksum))
            return packet
        }
    }

    private func canAppend(_ first: [UInt8], _ total: Int, _ next: [UInt8]) -> Bool {
        first.withUnsafeBytes { a in next.withUnsafeBytes { b in UDPCoalescer.canAppend(first: a, appendedPayload: total, next: b) } }
    }

    private func flood(_ count: Int, size: Int, last: Int? = nil) -> [[UInt8]] {
        var rng = SplitMix64(seed: 5)
        return (0..<count).map { index in
            udpPacket(payload: randomBytes(index == count - 1 ? (last ?? size) : size, &rng), id: 0x7000 + index)
        }
    }

    @Test func joinedDatagramsComeBackOutOfTheKernelAsTheyWere() {
        let packets = flood(6, size: 1000, last: 300)
        var first = packets[0]
        let gsoSize = first.withUnsafeBytes { UDPCoalescer.payloadLength($0) }!
        #expect(gsoSize == 1000)
        var total = gsoSize
        var payloads = Array(first[28...])
        for next in packets.dropFirst() {
            #expect(canAppend(first, total, next))
            total += next.withUnsafeBytes { UDPCoalescer.payloadLength($0) }!
            payloads += next[28...]
        }
        let virtio = first.withUnsafeMutableBytes { UDPCoalescer.finish(first: $0, totalPayload: total, gsoSize: gsoSize) }
        #expect(virtio == VirtioNetHeader(
            flags: VirtioNetHeader.needsChecksum, gsoType: VirtioNetHeader.gsoUDPL4,
            headerLength: 28, gsoSize: 1000, checksumStart: 20, checksumOffset: 6))
        let joined = Array(first[0..<28]) + payloads
        #expect(be16(joined, 2) == joined.count)
        #expect(be16(joined, 24) == joined.count - 20)
        #expect(joined.withUnsafeBytes { IPv4Header.validate($0) } == nil)
        // The UDP checksum field holds the uncomplemented pseudo-header sum NEEDS_CSUM expects.
        let pseudo: [UInt8] = Array(joined[12..<20]) + [0, 17, joined[24], joined[25]]
        #expect(be16(joined, 26) == 0xFFFF - Int(referenceChecksum(ArraySlice(pseudo))))
        // Consecutive IDs, as a connected socket sends them: byte for byte what was sent.
        #expect(kernelSegments(joined, gsoSize: gsoSize) == packets)
    }

    @Test func onlyOneFlowOfFullDatagramsWithChecksumsIsJoined() {
        let packets = flood(3, size: 500)
        let total = 500
        #expect(!canAppend(packets[0], total, udpPacket(payload: Array(repeating: 1, count: 500), id: 1, sourcePort: 40001)), "another port")
        #expect(!canAppend(packets[0], total, udpPacket(payload: Array(repeating: 1, count: 500), id: 1, ttl: 63)), "another TTL")
        #expect(!canAppend(packets[0], total, udpPacket(payload: Array(repeating: 1, count: 501), id: 1)), "longer than the first")
        #expect(!canAppend(packets[0], total + 300, packets[2]), "after a short one")
        var damaged = packets[1]
        damaged[40] ^= 0x01
        #expect(!canAppend(packets[0], total, damaged), "a bad UDP checksum")
        var unchecked = packets[1]
        unchecked[26] = 0; unchecked[27] = 0
        #expect(!canAppend(packets[0], total, unchecked), "no UDP checksum")
        #expect(unchecked.withUnsafeBytes { UDPCoalescer.payloadLength($0) } == nil)
        var fragment = packets[1]
        fragment[6] |= 0x20
        #expect(fragment.withUnsafeBytes { UDPCoalescer.payloadLength($0) } == nil, "a fragment")
        #expect(canAppend(packets[0], total, packets[1]))
    }
}
