import Glibc
import Testing
import WeftCore
import WeftDataPath
import WeftDataPathTesting

/// UDP → TUN through a real lane thread (its receiving half).
@Suite struct InboundTests {
    @Test func aPacketFromItsPeerIsWrittenToTheTun() throws {
        let node = try TestNode()
        defer { node.stop() }
        let packet = makeUDPPacket(source: TestNode.podB, destination: TestNode.localPod)
        node.transport.inject([InjectedDatagram(packet, from: TestNode.peerB)])
        expectSamePackets(node.tunnel.waitForWritten(1), [decrementedTTL(packet)])
        let counters = node.waitForCounters { $0.forwarded(.udpToTun) == 1 }
        #expect(counters.bytes[.udpToTun] == packet.count)
        #expect(counters.drops.isEmpty)
    }

    @Test func everyLaneWritesWhatItsSocketReceivesToItsOwnTunQueue() throws {
        let node = try TestNode(lanes: 2)
        defer { node.stop() }
        let perLane = (0..<2).map { lane in
            (0..<20).map { makeUDPPacket(source: TestNode.podB, destination: TestNode.localPod, payloadLength: 32, seed: 50 * lane + $0) }
        }
        for lane in 0..<2 { node.transports[lane].inject(perLane[lane].map { InjectedDatagram($0, from: TestNode.peerB) }) }
        for lane in 0..<2 {
            expectSamePackets(node.tunnels[lane].waitForWritten(20), perLane[lane].map(decrementedTTL), "lane \(lane)")
        }
        let counters = node.waitForCounters { $0.forwarded(.udpToTun) == 40 }
        #expect(counters.forwarded(.udpToTun) == 40)
        #expect(counters.drops.isEmpty)
    }

    @Test("a datagram longer than the path MTU is refused the same way with and without offloads",
          arguments: [Offload.off, .superPackets])
    func anOversizeDatagramIsTooBig(offload: Offload) throws {
        let node = try TestNode(offload: offload)
        defer { node.stop() }
        let oversize = makeUDPPacket(source: TestNode.podB, destination: TestNode.localPod, payloadLength: 9000 - 28)
        let largest = makeUDPPacket(source: TestNode.podB, destination: TestNode.localPod, payloadLength: 1472 - 28)
        node.transport.inject([InjectedDatagram(oversize, from: TestNode.peerB), InjectedDatagram(largest, from: TestNode.peerB)])
        let written = node.tunnel.waitForWritten(1)
        let expected = offload.usesSuperPackets ? withVirtioHeader(decrementedTTL(largest)) : decrementedTTL(largest)
        expectSamePackets(written, [expected], "only the packet that fits the path")
        let counters = node.waitForCounters { $0.forwarded(.udpToTun) + $0.dropped(.udpToTun) == 2 }
        #expect(counters.dropped(.udpToTun, .tooBig) == 1)
        #expect(counters.dropped(.udpToTun) == 1)
    }

    @Test func everyRefusedDatagramLandsInItsOwnCounter() throws {
        let node = try TestNode()
        defer { node.stop() }
        let good = makeUDPPacket(source: TestNode.podB, destination: TestNode.localPod)
        var badChecksum = good
        badChecksum[10] ^= 0xFF
        node.transport.inject([
            InjectedDatagram(good, from: IPv4Address(198, 18, 0, 99)),                                 // unknown peer
            InjectedDatagram(good, from: TestNode.peerC),                                             // B's pod via C
            InjectedDatagram(makeUDPPacket(source: TestNode.podB, destination: TestNode.podC), from: TestNode.peerB),  // transit
            InjectedDatagram(badChecksum, from: TestNode.peerB),
            InjectedDatagram([], from: TestNode.peerB),                                               // empty
            InjectedDatagram(Array(good[0..<10]), from: TestNode.peerB),                              // cut short
            InjectedDatagram([0x60] + [UInt8](repeating: 0, count: 39), from: TestNode.peerB),        // IPv6
            InjectedDatagram(good, from: TestNode.peerB),
        ])
        expectSamePackets(node.tunnel.waitForWritten(1), [decrementedTTL(good)])
        let counters = node.waitForCounters { $0.forwarded(.udpToTun) + $0.dropped(.udpToTun) == 8 }
        #expect(counters.forwarded(.udpToTun) == 1)
        #expect(counters.dropped(.udpToTun, .unknownPeer) == 1)
        #expect(counters.dropped(.udpToTun, .spoofedSource) == 1)
        #expect(counters.dropped(.udpToTun, .notLocalDestination) == 1)
        #expect(counters.dropped(.udpToTun, .badChecksum) == 1)
        #expect(counters.dropped(.udpToTun, .tooShort) == 2, "the empty datagram and the cut one")
        #expect(counters.dropped(.udpToTun, .ipv6) == 1)
        #expect(counters.dropped(.udpToTun) == 7)
        #expect(node.tunnel.written.count == 1)
    }

    @Test func anExpiredPacketIsAnsweredToTheNodeThatSentIt() throws {
        let node = try TestNode()
        defer { node.stop() }
        let offender = makeUDPPacket(source: TestNode.podB, destination: TestNode.localPod, ttl: 1)
        node.transport.inject([InjectedDatagram(offender, from: TestNode.peerB)])

        let sent = node.transport.waitForSentDatagrams(1)
        try #require(sent.count == 1)
        #expect(sent[0].destination == TestNode.peerB)
        #expect(sent[0].port == TestNode.port)
        let icmp = sent[0].bytes
        #expect(headerChecksumVerifies(icmp))
        #expect(Array(icmp[12..<20]) == [10, 244, 1, 0, 10, 244, 2, 7], "from the TUN's address to the sender's pod")
        #expect(icmp[20] == 11 && icmp[21] == 0, "time exceeded")
        #expect(referenceChecksum(icmp[20...]) == 0)
        #expect(Array(icmp[28..<56]) == Array(offender[0..<28]))
        let counters = node.waitForCounters { $0.icmpSent == 1 }
        #expect(counters.dropped(.udpToTun, .ttlExpired) == 1)
        #expect(node.tunnel.written.isEmpty)
    }

    @Test func aTunThatCannotTakeAPacketCountsIt() throws {
        let node = try TestNode()
        defer { node.stop() }
        node.tunnel.setWriteOutcome(.wouldBlock)
        node.transport.inject([InjectedDatagram(makeUDPPacket(source: TestNode.podB, destination: TestNode.localPod), from: TestNode.peerB)])
        #expect(node.waitForCounters { $0.dropped(.udpToTun, .tunWriteFailed) == 1 }.dropped(.udpToTun, .tunWriteFailed) == 1)
    }

    @Test func aTunThatRefusesOnePacketCountsItAndKeepsRunning() throws {
        let node = try TestNode()
        defer { node.stop() }
        node.tunnel.setWriteOutcome(.fail(EINVAL))
        node.transport.inject([InjectedDatagram(makeUDPPacket(source: TestNode.podB, destination: TestNode.localPod), from: TestNode.peerB)])
        let refused = node.waitForCounters { $0.dropped(.udpToTun, .tunWriteFailed) == 1 }
        #expect(refused.dropped(.udpToTun, .tunWriteFailed) == 1)
        node.tunnel.setWriteOutcome(.accept)
        let packet = makeUDPPacket(source: TestNode.podB, destination: TestNode.localPod, seed: 1)
        node.transport.inject([InjectedDatagram(packet, from: TestNode.peerB)])
        expectSamePackets(node.tunnel.waitForWritten(1), [decrementedTTL(packet)])
        #expect(node.fatalErrorsReported.isEmpty)
    }

    @Test func aTunThatIsGoneIsCountedAndReported() throws {
        let node = try TestNode()
        defer { node.stop() }
        node.tunnel.setWriteOutcome(.fail(ENODEV))
        node.transport.inject([InjectedDatagram(makeUDPPacket(source: TestNode.podB, destination: TestNode.localPod), from: TestNode.peerB)])
        let errors = node.waitForFatalErrors()
        #expect(errors.count == 1)
        #expect(errors.first?.hasPrefix("TUN write failed") == true)
        #expect(node.counters.dropped(.udpToTun, .tunWriteFailed) == 1)
    }

    @Test func aReceiveThatFailsIsReported() throws {
        let node = try TestNode()
        defer { node.stop() }
        node.transport.failReceives(errno: ENOTSOCK)
        let errors = node.waitForFatalErrors()
        #expect(errors.count == 1)
        #expect(errors.first?.hasPrefix("UDP receive failed") == true)
    }
}

/// UDP GRO runs: one receive entry holding several datagrams of one size back to back.
@Suite struct ReceiveCoalescingTests {
    static let payloadSize = 1400

    /// Consecutive full segments of one TCP flow from B's pod to ours, the last with PSH.
    static func flow(_ count: Int, firstSequence: UInt32 = 5000, sourcePort: UInt16 = 40000) -> [[UInt8]] {
        (0..<count).map { index in
            makeTCPPacket(source: TestNode.podB, destination: TestNode.localPod, sourcePort: sourcePort,
                          sequence: firstSequence &+ UInt32(index * payloadSize),
                          flags: index == count - 1 ? TCPFlag.ack | TCPFlag.psh : TCPFlag.ack,
                          payload: (0..<payloadSize).map { UInt8(truncatingIfNeeded: index * 31 + $0) })
        }
    }

    static func groEntry(_ packets: [[UInt8]]) -> InjectedDatagram {
        InjectedDatagram(packets.flatMap { $0 }, from: TestNode.peerB, segmentSize: packets[0].count)
    }

    @Test func aRunOfOneFlowIsWrittenAsOneSuperPacket() throws {
        let node = try TestNode(offload: .superPackets)
        defer { node.stop() }
        let packets = Self.flow(5)
        node.transport.inject([Self.groEntry(packets)])

        let written = node.tunnel.waitForWritten(1)
        try #require(written.count == 1)
        let virtio = written[0].withUnsafeBytes { VirtioNetHeader(bytesAt: $0.baseAddress!) }
        #expect(virtio.gsoType & ~VirtioNetHeader.gsoECN == VirtioNetHeader.gsoTCPv4)
        #expect(Int(virtio.gsoSize) == Self.payloadSize)
        #expect(virtio.flags & VirtioNetHeader.needsChecksum != 0)
        let joined = Array(written[0][VirtioNetHeader.size...])
        #expect(joined.count == 40 + 5 * Self.payloadSize)
        #expect(Int(loadBigEndian(joined, at: 2, as: UInt16.self)) == joined.count)
        #expect(headerChecksumVerifies(joined))
        #expect(joined[8] == 63)
        expectSamePackets([Array(joined[40...])], [packets.flatMap { $0[40...] }], "the payloads in order")
        #expect(joined[33] & TCPFlag.psh != 0, "the last segment's PSH is kept")
        let counters = node.waitForCounters { $0.forwarded(.udpToTun) == 5 }
        #expect(counters.forwarded(.udpToTun) == 5)
        #expect(counters.drops.isEmpty)
    }

    @Test func aSuperPacketSentAsTwoEntriesIsWrittenAsOne() throws {
        // A 64 KiB TSO read of 46 segments is more than one UDP send may carry (65,507 bytes), so
        // the sending node sends 44 and then 2: one receive brings both GRO entries.
        let node = try TestNode(offload: .superPackets)
        defer { node.stop() }
        let packets = Self.flow(6)
        node.transport.inject([Self.groEntry(Array(packets[0..<4])), Self.groEntry(Array(packets[4...]))])

        let written = node.tunnel.waitForWritten(1)
        try #require(written.count == 1)
        let joined = Array(written[0][VirtioNetHeader.size...])
        #expect(joined.count == 40 + 6 * Self.payloadSize)
        expectSamePackets([Array(joined[40...])], [packets.flatMap { $0[40...] }], "the payloads of both entries in order")
        let counters = node.waitForCounters { $0.forwarded(.udpToTun) == 6 }
        #expect(counters.forwarded(.udpToTun) == 6)
        #expect(counters.drops.isEmpty)
    }

    /// Datagrams of one UDP flow from B's pod to ours, with UDP checksums and consecutive IDs.
    static func udpFlow(_ count: Int, size: Int, sourcePort: UInt16 = 40000) -> [[UInt8]] {
        (0..<count).map { index in
            makeChecksummedUDPPacket(source: TestNode.podB, destination: TestNode.localPod, sourcePort: sourcePort,
                                     identification: UInt16(0x100 + index),
                                     payload: (0..<size).map { UInt8(truncatingIfNeeded: index * 7 + $0) })
        }
    }

    @Test func aRunOfOneUDPFlowIsWrittenAsOneUDPSuperPacket() throws {
        let node = try TestNode(offload: .superPackets, udpSuperPackets: true)
        defer { node.stop() }
        let packets = Self.udpFlow(10, size: 1000) + Self.udpFlow(3, size: 1000, sourcePort: 40001)
        node.transport.inject([Self.groEntry(packets)])

        let written = node.tunnel.waitForWritten(2)
        try #require(written.count == 2)
        let virtio = written[0].withUnsafeBytes { VirtioNetHeader(bytesAt: $0.baseAddress!) }
        #expect(virtio.gsoType == VirtioNetHeader.gsoUDPL4)
        #expect(Int(virtio.gsoSize) == 1000)
        #expect(virtio.flags & VirtioNetHeader.needsChecksum != 0)
        let joined = Array(written[0][VirtioNetHeader.size...])
        #expect(joined.count == 28 + 10 * 1000)
        #expect(Int(loadBigEndian(joined, at: 2, as: UInt16.self)) == joined.count)
        #expect(Int(loadBigEndian(joined, at: 24, as: UInt16.self)) == joined.count - 20)
        #expect(headerChecksumVerifies(joined))
        #expect(joined[8] == 63, "TTL one lower")
        expectSamePackets([Array(joined[28...])], [packets[0..<10].flatMap { $0[28...] }], "the payloads in order")
        let second = Array(written[1][VirtioNetHeader.size...])
        #expect(second.count == 28 + 3 * 1000, "another flow is another super-packet")
        let counters = node.waitForCounters { $0.forwarded(.udpToTun) == 13 }
        #expect(counters.forwarded(.udpToTun) == 13)
        #expect(counters.drops.isEmpty)
    }

    @Test func withoutUDPSuperPacketsInTheKernelEachDatagramIsItsOwnWrite() throws {
        let node = try TestNode(offload: .superPackets, udpSuperPackets: false)
        defer { node.stop() }
        let packets = Self.udpFlow(5, size: 1000)
        node.transport.inject([Self.groEntry(packets)])
        let written = node.tunnel.waitForWritten(5)
        expectSamePackets(written.map { Array($0[VirtioNetHeader.size...]) }, packets.map(decrementedTTL))
        #expect(written.allSatisfy { $0.withUnsafeBytes { VirtioNetHeader(bytesAt: $0.baseAddress!) } == VirtioNetHeader() })
    }

    @Test func aGapOrAnotherFlowStartsANewWrite() throws {
        let node = try TestNode(offload: .superPackets)
        defer { node.stop() }
        var packets = Self.flow(2)                                         // joined
        packets += Self.flow(1, firstSequence: 5000 + 10 * 1400)          // a gap: alone
        packets += Self.flow(2, firstSequence: 90000, sourcePort: 40001)   // another flow: joined
        node.transport.inject([Self.groEntry(packets)])

        let written = node.tunnel.waitForWritten(3)
        try #require(written.count == 3)
        let packetsPerWrite = written.map { (Int(loadBigEndian($0, at: VirtioNetHeader.size + 2, as: UInt16.self)) - 40) / Self.payloadSize }
        #expect(packetsPerWrite == [2, 1, 2])
        let payloads: [[UInt8]] = written.map { Array($0[(VirtioNetHeader.size + 40)...]) }
        let expected: [[UInt8]] = [[0, 1], [2], [3, 4]].map { run in run.flatMap { packets[$0][40...] } }
        expectSamePackets(payloads, expected)
        #expect(node.waitForCounters { $0.forwarded(.udpToTun) == 5 }.forwarded(.udpToTun) == 5)
    }

    @Test func aDamagedSegmentIsNeverJoined() throws {
        // A joined super-packet goes to the kernel as NEEDS_CSUM, which it trusts: a damaged
        // segment inside one would get a fresh, valid checksum. Alone, the kernel checks it.
        let node = try TestNode(offload: .superPackets)
        defer { node.stop() }
        var packets = Self.flow(3)
        packets[1][100] ^= 0x55
        node.transport.inject([Self.groEntry(packets)])
        let written = node.tunnel.waitForWritten(3)
        try #require(written.count == 3, "one write per packet: nothing joins the damaged one")
        for (write, packet) in zip(written, packets) {
            #expect(write.withUnsafeBytes { VirtioNetHeader(bytesAt: $0.baseAddress!) } == VirtioNetHeader())
            expectSamePackets([Array(write[VirtioNetHeader.size...])], [decrementedTTL(packet)])
        }
    }
}
