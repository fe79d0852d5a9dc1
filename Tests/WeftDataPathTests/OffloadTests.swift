import Glibc
import Testing
import WeftCore
import WeftDataPath
import WeftDataPathTesting

/// TSO super-packets from a TUN with offloads, cut into flannel's packets by the worker.
@Suite struct SuperPacketTests {
    static let segmentSize = 1472 - 40

    /// Checks that `datagrams` are the packets `superPacket` (with its virtio header) is cut
    /// into: each a valid IPv4/TCP packet that fits the path, TTL one lower, sequence numbers
    /// in order, and their payloads joined are the super-packet's payload byte for byte.
    static func expectSegments(_ datagrams: [[UInt8]], of superPacket: [UInt8], segments: Int, segmentSize: Int,
                               sourceLocation: SourceLocation = #_sourceLocation) {
        let original = Array(superPacket[VirtioNetHeader.size...])
        #expect(datagrams.count == segments, sourceLocation: sourceLocation)
        var joined: [UInt8] = []
        for (index, datagram) in datagrams.enumerated() {
            #expect(datagram.count <= 1472, sourceLocation: sourceLocation)
            #expect(Int(loadBigEndian(datagram, at: 2, as: UInt16.self)) == datagram.count, sourceLocation: sourceLocation)
            #expect(headerChecksumVerifies(datagram), "IPv4 checksum of segment \(index)", sourceLocation: sourceLocation)
            #expect(transportChecksumVerifies(datagram), "TCP checksum of segment \(index)", sourceLocation: sourceLocation)
            #expect(datagram[8] == original[8] - 1, sourceLocation: sourceLocation)
            #expect(Array(datagram[12..<24]) == Array(original[12..<24]), "addresses and ports", sourceLocation: sourceLocation)
            let sequence = loadBigEndian(datagram, at: 24, as: UInt32.self)
            #expect(sequence == loadBigEndian(original, at: 24, as: UInt32.self) &+ UInt32(index * segmentSize), sourceLocation: sourceLocation)
            joined += datagram[40...]
        }
        expectSamePackets([joined], [Array(original[40...])], "joined payload", sourceLocation: sourceLocation)
    }

    @Test func aSuperPacketLeavesAsOneSegmentedSend() throws {
        let node = try TestNode(offload: .superPacketsAndSegmentedSends)
        defer { node.stop() }
        let superPacket = makeTCPSuperPacket(source: TestNode.localPod, destination: TestNode.podB, segments: 20, segmentSize: Self.segmentSize)
        node.tunnel.inject([superPacket])

        let datagrams = node.transport.waitForSentDatagrams(20)
        Self.expectSegments(datagrams.map(\.bytes), of: superPacket, segments: 20, segmentSize: Self.segmentSize)
        let entries = node.transport.sent
        #expect(entries.count == 1)
        #expect(entries.first?.segmentSize == 1472)
        #expect(entries.first?.destination == TestNode.peerB)
        let counters = node.waitForCounters { $0.forwarded(.tunToUDP) == 20 }
        #expect(counters.forwarded(.tunToUDP) == 20)
        #expect(counters.drops.isEmpty)
    }

    @Test func withoutSegmentationOffloadEachPacketIsItsOwnSend() throws {
        let node = try TestNode(offload: .superPackets)
        defer { node.stop() }
        let superPacket = makeTCPSuperPacket(source: TestNode.localPod, destination: TestNode.podC, segments: 7, segmentSize: 1000)
        node.tunnel.inject([superPacket])
        let datagrams = node.transport.waitForSentDatagrams(7)
        Self.expectSegments(datagrams.map(\.bytes), of: superPacket, segments: 7, segmentSize: 1000)
        #expect(node.transport.sent.allSatisfy { $0.segmentSize == nil })
    }

    @Test func aRunFillsTheBatchAndContinuesInTheNext() throws {
        // A batch of 4 entries and 64 segments per send: three super-packets of 44 packets each
        // need six UDP_SEGMENT runs, so the second and third straddle batches.
        let node = try TestNode(offload: .superPacketsAndSegmentedSends, batchSize: 4)
        defer { node.stop() }
        let superPackets = (0..<3).map {
            makeTCPSuperPacket(source: TestNode.localPod, destination: TestNode.podB, sourcePort: UInt16(40000 + $0), segments: 44, segmentSize: Self.segmentSize)
        }
        node.tunnel.inject(superPackets)
        let datagrams = node.transport.waitForSentDatagrams(3 * 44).map(\.bytes)
        try #require(datagrams.count == 3 * 44)
        for (index, superPacket) in superPackets.enumerated() {
            Self.expectSegments(Array(datagrams[(index * 44)..<((index + 1) * 44)]), of: superPacket, segments: 44, segmentSize: Self.segmentSize)
        }
    }

    @Test func aDeviceThatRefusesSegmentationGetsOneDatagramPerPacket() throws {
        let node = try TestNode(offload: .superPacketsAndSegmentedSends)
        defer { node.stop() }
        node.transport.setSendOutcome(.refuseSegmentation)
        let first = makeTCPSuperPacket(source: TestNode.localPod, destination: TestNode.podB, segments: 10, segmentSize: Self.segmentSize)
        node.tunnel.inject([first])
        let refused = node.waitForCounters { $0.dropped(.tunToUDP, .sendFailed) == 10 }
        #expect(refused.dropped(.tunToUDP, .sendFailed) == 10, "the refused run is counted, packet by packet")

        let second = makeTCPSuperPacket(source: TestNode.localPod, destination: TestNode.podB, sourcePort: 40001, segments: 10, segmentSize: Self.segmentSize)
        node.tunnel.inject([second])
        let datagrams = node.transport.waitForSentDatagrams(10)
        Self.expectSegments(datagrams.map(\.bytes), of: second, segments: 10, segmentSize: Self.segmentSize)
        #expect(node.transport.sent.allSatisfy { $0.segmentSize == nil })
        #expect(node.waitForCounters { $0.forwarded(.tunToUDP) == 10 }.dropped(.tunToUDP, .sendFailed) == 10)
    }

    @Test func aSegmentLargerThanOneDatagramIsDroppedAndTheWorkerGoesOn() throws {
        // An underlay MTU of 65,536 (lo) gives a path MTU above what one UDP datagram carries
        // (65,507 bytes). A 65,508-byte segment could never be sent: it must be refused, not
        // stall the worker.
        let node = try TestNode(offload: .superPacketsAndSegmentedSends, pathMTU: 65536 - 28)
        defer { node.stop() }
        #expect(node.forwarder.configuration.policy.pathMTU == 65507)
        let huge = makeTCPSuperPacket(source: TestNode.localPod, destination: TestNode.podB, segments: 1, segmentSize: 65508 - 40)
        let next = withVirtioHeader(makeUDPPacket(source: TestNode.localPod, destination: TestNode.podB))
        node.tunnel.inject([huge, next])

        let datagrams = node.transport.waitForSentDatagrams(1)
        expectSamePackets(datagrams.map(\.bytes), [decrementedTTL(Array(next[VirtioNetHeader.size...]))])
        let counters = node.waitForCounters { $0.dropped(.tunToUDP, .tooBig) == 1 && $0.forwarded(.tunToUDP) == 1 }
        #expect(counters.dropped(.tunToUDP, .tooBig) == 1)
        #expect(counters.forwarded(.tunToUDP) == 1)
    }
}

/// Plain packets (a UDP flood) of one size to one peer leave as UDP_SEGMENT trains, once a
/// train is longer than the path MTU, so a capture still tells trains from glued packets.
@Suite struct PacketRunTests {
    /// 92-byte IPv4/UDP packets to `destination`, behind empty virtio headers.
    static func flood(_ count: Int, to destination: IPv4Address, seed: Int = 0) -> [[UInt8]] {
        (0..<count).map { makeUDPPacket(source: TestNode.localPod, destination: destination, payloadLength: 64, seed: seed + $0) }
    }

    @Test func equalPacketsToOnePeerLeaveAsOneTrain() throws {
        let node = try TestNode(offload: .superPacketsAndSegmentedSends)
        defer { node.stop() }
        let packets = Self.flood(40, to: TestNode.podB)
        node.tunnel.inject(packets.map(withVirtioHeader))
        let datagrams = node.transport.waitForSentDatagrams(40)
        expectSamePackets(datagrams.map(\.bytes), packets.map(decrementedTTL))
        let entries = node.transport.sent
        #expect(entries.count == 1, "one UDP_SEGMENT entry, not \(entries.count)")
        #expect(entries.first?.segmentSize == 92)
        #expect(entries.first?.destination == TestNode.peerB)
        let counters = node.waitForCounters { $0.forwarded(.tunToUDP) == 40 }
        #expect(counters.bytes[.tunToUDP] == 40 * 92)
        #expect(counters.drops.isEmpty)
    }

    @Test func aTrainNoLongerThanThePathMTUStaysSeparateDatagrams() throws {
        let node = try TestNode(offload: .superPacketsAndSegmentedSends)
        defer { node.stop() }
        // 16 × 92 = 1472 bytes: exactly the path MTU, so not a train.
        let packets = Self.flood(16, to: TestNode.podB)
        node.tunnel.inject(packets.map(withVirtioHeader))
        let datagrams = node.transport.waitForSentDatagrams(16)
        expectSamePackets(datagrams.map(\.bytes), packets.map(decrementedTTL))
        #expect(node.transport.sent.count == 16)
        #expect(node.transport.sent.allSatisfy { $0.segmentSize == nil })
    }

    @Test func anotherPeerOrSizeEndsTheTrain() throws {
        let node = try TestNode(offload: .superPacketsAndSegmentedSends)
        defer { node.stop() }
        let toB = Self.flood(20, to: TestNode.podB)
        let toC = Self.flood(20, to: TestNode.podC, seed: 100)
        let longer = makeUDPPacket(source: TestNode.localPod, destination: TestNode.podB, payloadLength: 100)
        let packets = toB + toC + [longer] + Self.flood(20, to: TestNode.podB, seed: 200)
        node.tunnel.inject(packets.map(withVirtioHeader))
        let datagrams = node.transport.waitForSentDatagrams(packets.count)
        expectSamePackets(datagrams.map(\.bytes), packets.map(decrementedTTL), "in order")
        let entries = node.transport.sent
        #expect(entries.map(\.segmentSize) == [92, 92, nil, 92])
        #expect(entries.map(\.destination) == [TestNode.peerB, TestNode.peerC, TestNode.peerB, TestNode.peerB])
    }

    @Test func withoutSegmentationOffloadPlainPacketsAreSentOneByOne() throws {
        let node = try TestNode(offload: .superPackets)
        defer { node.stop() }
        let packets = Self.flood(40, to: TestNode.podB)
        node.tunnel.inject(packets.map(withVirtioHeader))
        _ = node.transport.waitForSentDatagrams(40)
        #expect(node.transport.sent.count == 40)
        #expect(node.transport.sent.allSatisfy { $0.segmentSize == nil })
    }
}
