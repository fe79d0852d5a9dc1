import Dispatch
import Glibc
import Testing
import WeftCore
import WeftDataPath
import WeftDataPathTesting

/// TUN → UDP through a real lane thread (its sending half).
@Suite struct OutboundTests {
    @Test func eachPacketGoesToThePeerThatOwnsItsDestination() throws {
        let node = try TestNode()
        defer { node.stop() }
        let toB = makeUDPPacket(source: TestNode.localPod, destination: TestNode.podB, seed: 1)
        let toC = makeUDPPacket(source: TestNode.localPod, destination: TestNode.podC, seed: 2)
        node.tunnel.inject([toB, toC])

        let sent = node.transport.waitForSentDatagrams(2)
        #expect(sent.count == 2)
        #expect(Set(sent.map(\.bytes)) == [decrementedTTL(toB), decrementedTTL(toC)])
        for datagram in sent {
            #expect(datagram.port == TestNode.port)
            #expect(datagram.destination == (datagram.bytes[18] == 2 ? TestNode.peerB : TestNode.peerC))
            #expect(headerChecksumVerifies(datagram.bytes))
        }
        let counters = node.waitForCounters { $0.forwarded(.tunToUDP) == 2 }
        #expect(counters.forwarded(.tunToUDP) == 2)
        #expect(counters.bytes[.tunToUDP] == toB.count + toC.count)
        #expect(counters.drops.isEmpty)
    }

    @Test func oneFlowKeepsItsOrder() throws {
        let node = try TestNode()
        defer { node.stop() }
        let packets = (0..<200).map { makeUDPPacket(source: TestNode.localPod, destination: TestNode.podB, payloadLength: 32, seed: $0) }
        node.tunnel.inject(packets)
        let sent = node.transport.waitForSentDatagrams(200)
        expectSamePackets(sent.map(\.bytes), packets.map(decrementedTTL))
    }

    @Test func everyLaneSendsWhatItsTunQueueHandsOverOnItsOwnSocket() throws {
        let node = try TestNode(lanes: 3)
        defer { node.stop() }
        let perLane = (0..<3).map { lane in
            (0..<50).map { makeUDPPacket(source: TestNode.localPod, destination: TestNode.podB, payloadLength: 32, seed: 100 * lane + $0) }
        }
        for lane in 0..<3 { node.tunnels[lane].inject(perLane[lane]) }
        for lane in 0..<3 {
            let sent = node.transports[lane].waitForSentDatagrams(50)
            expectSamePackets(sent.map(\.bytes), perLane[lane].map(decrementedTTL), "lane \(lane)")
        }
        let counters = node.waitForCounters { $0.forwarded(.tunToUDP) == 150 }
        #expect(counters.forwarded(.tunToUDP) == 150)
        #expect(counters.drops.isEmpty)
    }

    @Test func aPacketWithoutARouteIsAnsweredIntoTheTun() throws {
        let node = try TestNode()
        defer { node.stop() }
        let offender = makeUDPPacket(source: TestNode.localPod, destination: IPv4Address(10, 250, 0, 1))
        node.tunnel.inject([offender])

        let written = node.tunnel.waitForWritten(1)
        try #require(written.count == 1)
        let icmp = written[0]
        #expect(headerChecksumVerifies(icmp))
        #expect(icmp[9] == 1)
        #expect(Array(icmp[12..<16]) == [10, 244, 1, 0], "from the TUN's address")
        #expect(Array(icmp[16..<20]) == [10, 244, 1, 5], "to the pod that sent the packet")
        #expect(icmp[20] == 3 && icmp[21] == 0, "net unreachable")
        #expect(referenceChecksum(icmp[20...]) == 0)
        #expect(Array(icmp[28..<(28 + 28)]) == Array(offender[0..<28]), "quotes the header and 8 bytes")
        let counters = node.waitForCounters { $0.icmpSent == 1 }
        #expect(counters.dropped(.tunToUDP, .noRoute) == 1)
        #expect(counters.icmpSent == 1)
        #expect(node.transport.sent.isEmpty)
    }

    @Test func anAnswerTheTunCannotTakeIsReportedWhenTheTunIsGone() throws {
        let node = try TestNode()
        defer { node.stop() }
        node.tunnel.setWriteOutcome(.fail(EBADF))
        node.tunnel.inject([makeUDPPacket(source: TestNode.localPod, destination: IPv4Address(10, 250, 0, 1))])
        let errors = node.waitForFatalErrors()
        #expect(errors.first?.hasPrefix("TUN write failed") == true)
        let counters = node.counters
        #expect(counters.dropped(.tunToUDP, .noRoute) == 1, "the offender is counted once, by its own reason")
        #expect(counters.icmpSent == 0)
    }

    @Test func aPacketLargerThanThePathIsRefusedWithTheMTU() throws {
        let node = try TestNode(pathMTU: 1400)
        defer { node.stop() }
        node.tunnel.inject([makeUDPPacket(source: TestNode.localPod, destination: TestNode.podB, payloadLength: 1400)])
        let written = node.tunnel.waitForWritten(1)
        try #require(written.count == 1)
        #expect(written[0][20] == 3 && written[0][21] == 4, "fragmentation needed")
        #expect(loadBigEndian(written[0], at: 26, as: UInt16.self) == 1400, "next-hop MTU")
        #expect(node.waitForCounters { $0.dropped(.tunToUDP, .tooBig) == 1 }.dropped(.tunToUDP, .tooBig) == 1)
    }

    @Test func aHungSocketStopsTheReadingInsteadOfDroppingPackets() throws {
        // A 4-packet batch and the socket hung: the sender holds one batch in send and must leave
        // the rest in the TUN (the kernel's queue), not read and drop it.
        let node = try TestNode(batchSize: 4)
        defer { node.stop() }
        node.transport.holdSends()
        let packets = (0..<40).map { makeUDPPacket(source: TestNode.localPod, destination: TestNode.podB, seed: $0) }
        node.tunnel.inject(packets)
        #expect(waitUntil { node.tunnel.unread == 36 }, "the sender reads one batch")
        // Room for a wrong implementation to read on; a right one is stuck in send meanwhile.
        usleep(100_000)
        #expect(node.tunnel.unread == 36, "nothing is read while the send blocks")
        #expect(node.counters.drops.isEmpty)
        node.transport.resumeSends()

        let counters = node.waitForCounters { $0.forwarded(.tunToUDP) == 40 }
        #expect(counters.forwarded(.tunToUDP) == 40)
        #expect(counters.drops.isEmpty, "nothing lost")
        expectSamePackets(node.transport.sentDatagrams.map(\.bytes), packets.map(decrementedTTL))
    }

    @Test func aFailedSendIsCountedAndTheWorkerGoesOn() throws {
        let node = try TestNode()
        defer { node.stop() }
        node.transport.setSendOutcome(.failEntries)
        node.tunnel.inject((0..<3).map { makeUDPPacket(source: TestNode.localPod, destination: TestNode.podB, seed: $0) })
        #expect(node.waitForCounters { $0.dropped(.tunToUDP, .sendFailed) == 3 }.dropped(.tunToUDP, .sendFailed) == 3)

        node.transport.setSendOutcome(.accept)
        let later = (0..<2).map { makeUDPPacket(source: TestNode.localPod, destination: TestNode.podC, seed: $0) }
        node.tunnel.inject(later)
        expectSamePackets(node.transport.waitForSentDatagrams(2).map(\.bytes), later.map(decrementedTTL))
        #expect(node.fatalErrorsReported.isEmpty)
    }

    @Test func aSocketThatFailsForGoodIsReported() throws {
        let node = try TestNode()
        defer { node.stop() }
        node.transport.setSendOutcome(.fail(EBADF))
        node.tunnel.inject([makeUDPPacket(source: TestNode.localPod, destination: TestNode.podB)])
        let errors = node.waitForFatalErrors()
        #expect(errors.count == 1)
        #expect(errors.first?.hasPrefix("UDP send failed") == true)
    }

    @Test func aTunThatFailsIsReported() throws {
        let node = try TestNode()
        defer { node.stop() }
        node.tunnel.failReads(errno: EBADFD)
        let errors = node.waitForFatalErrors()
        #expect(errors.count == 1)
        #expect(errors.first?.hasPrefix("TUN read failed") == true)
    }

    @Test func stopWhileBusySendsWhatWasReadAndLeavesTheRestInTheTun() throws {
        let node = try TestNode(batchSize: 8)
        node.transport.holdSends()
        let packets = (0..<300).map { makeUDPPacket(source: TestNode.localPod, destination: TestNode.podB, seed: $0) }
        node.tunnel.inject(packets)
        #expect(waitUntil { node.tunnel.unread == 292 }, "one batch read, its send hung")

        let stopping = DispatchGroup()
        DispatchQueue.global().async(group: stopping) { node.stop() }
        // stop() must wait for the hung send to finish, and then read nothing more.
        #expect(waitUntil { node.transport.wasShutDown }, "the stop has begun")
        #expect(stopping.wait(timeout: .now() + .milliseconds(20)) == .timedOut)
        node.transport.resumeSends()
        #expect(stopping.wait(timeout: .now() + .seconds(5)) == .success)
        expectSamePackets(node.transport.sentDatagrams.map(\.bytes), packets[0..<8].map(decrementedTTL))
        #expect(node.tunnel.unread == 292, "the rest stays in the kernel's queue, which goes with the device")
        #expect(node.counters.drops.isEmpty)
        #expect(node.fatalErrorsReported.isEmpty)
    }
}
