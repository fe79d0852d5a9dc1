import Testing
import WeftCore
import WeftDataPath
import WeftDataPathTesting

/// One lane's thread serving both of its devices.
@Suite struct LaneTests {
    @Test func oneLaneForwardsBothWaysAtOnce() throws {
        // Small batches, so the thread must alternate between its TUN queue and its socket many
        // times while both have work, and sleep on both once they are empty.
        let node = try TestNode(batchSize: 4)
        defer { node.stop() }
        let outbound = (0..<200).map { makeUDPPacket(source: TestNode.localPod, destination: TestNode.podB, seed: $0) }
        let inbound = (0..<200).map { makeUDPPacket(source: TestNode.podB, destination: TestNode.localPod, seed: 1000 + $0) }
        node.tunnel.inject(outbound)
        node.transport.inject(inbound.map { InjectedDatagram($0, from: TestNode.peerB) })
        expectSamePackets(node.transport.waitForSentDatagrams(200).map(\.bytes), outbound.map(decrementedTTL), "TUN → UDP, in order")
        expectSamePackets(node.tunnel.waitForWritten(200), inbound.map(decrementedTTL), "UDP → TUN, in order")

        // Then one datagram more, once both devices are empty: the lane must wake for it.
        let late = makeUDPPacket(source: TestNode.podB, destination: TestNode.localPod, seed: 7)
        node.transport.inject([InjectedDatagram(late, from: TestNode.peerB)])
        #expect(node.tunnel.waitForWritten(201).last == decrementedTTL(late))
        let counters = node.waitForCounters { $0.forwarded(.tunToUDP) == 200 && $0.forwarded(.udpToTun) == 201 }
        #expect(counters.forwarded(.tunToUDP) == 200)
        #expect(counters.forwarded(.udpToTun) == 201)
        #expect(counters.drops.isEmpty)
    }
}
