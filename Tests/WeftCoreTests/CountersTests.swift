import Testing
import WeftCore

@Suite struct CountersTests {
    @Test func sumsShards() {
        let counters = Counters()
        let first = counters.makeShard()
        let second = counters.makeShard()
        first.countForwarded(.tunToUDP, bytes: 1000)
        first.countForwarded(.tunToUDP, packets: 2, bytes: 3000)
        second.countForwarded(.tunToUDP, bytes: 500)
        second.countForwarded(.udpToTun, packets: 4, bytes: 400)
        first.countDrop(.tunToUDP, .noRoute)
        second.countDrop(.tunToUDP, .noRoute, packets: 2)
        second.countDrop(.udpToTun, .noRoute)
        second.countDrop(.udpToTun, .unknownPeer, packets: 5)
        first.countICMPSent()
        second.countICMPSent()

        let snapshot = counters.snapshot()
        #expect(snapshot.packets == [.tunToUDP: 4, .udpToTun: 4])
        #expect(snapshot.bytes == [.tunToUDP: 4500, .udpToTun: 400])
        #expect(snapshot.drops == [.tunToUDP: [.noRoute: 3], .udpToTun: [.noRoute: 1, .unknownPeer: 5]])
        #expect(snapshot.drops(.noRoute) == 4)
        #expect(snapshot.drops(.badChecksum) == 0)
        #expect(snapshot.icmpSent == 2)
    }

    @Test func emptySnapshot() {
        let snapshot = Counters().snapshot()
        #expect(snapshot == CounterSnapshot())
        #expect(snapshot.drops.isEmpty)
        #expect(snapshot.summaryLine == "tun→udp 0 pkts 0 B, udp→tun 0 pkts 0 B, icmp 0, drops: none")
    }

    @Test func summaryLine() {
        let snapshot = CounterSnapshot(
            packets: [.tunToUDP: 1200, .udpToTun: 1190],
            bytes: [.tunToUDP: 1_500_000, .udpToTun: 1_420_000],
            drops: [.tunToUDP: [.noRoute: 2], .udpToTun: [.unknownPeer: 5]],
            icmpSent: 3)
        #expect(snapshot.summaryLine
            == "tun→udp 1200 pkts 1.5 MB, udp→tun 1190 pkts 1.4 MB, icmp 3, drops: tun→udp no-route 2, udp→tun unknown-peer 5")
        let small = CounterSnapshot(packets: [.tunToUDP: 1], bytes: [.tunToUDP: 999, .udpToTun: 1_950], drops: [:], icmpSent: 0)
        #expect(small.summaryLine == "tun→udp 1 pkts 999 B, udp→tun 0 pkts 2.0 kB, icmp 0, drops: none")
    }

    @Test("the debug traffic line shows what moved since the last one, and nothing when nothing did")
    func changesSince() {
        let earlier = CounterSnapshot(packets: [.tunToUDP: 100, .udpToTun: 50], bytes: [.tunToUDP: 10_000, .udpToTun: 5_000],
                                      drops: [.udpToTun: [.unknownPeer: 5]], icmpSent: 1)
        #expect(earlier.changes(since: earlier, seconds: 10) == nil)
        let later = CounterSnapshot(packets: [.tunToUDP: 1303, .udpToTun: 53], bytes: [.tunToUDP: 1_510_000, .udpToTun: 5_252],
                                    drops: [.udpToTun: [.unknownPeer: 9, .badChecksum: 1]], icmpSent: 1)
        #expect(later.changes(since: earlier, seconds: 10)
            == "tun→udp +1203 pkts (120.3/s) 1.5 MB, udp→tun +3 pkts (0.3/s) 252 B, icmp +0, drops: udp→tun bad-checksum +1, udp→tun unknown-peer +4")
        let dropsOnly = CounterSnapshot(packets: earlier.packets, bytes: earlier.bytes, drops: [.udpToTun: [.unknownPeer: 6]], icmpSent: 1)
        #expect(dropsOnly.changes(since: earlier, seconds: 10)
            == "tun→udp +0 pkts (0.0/s) 0 B, udp→tun +0 pkts (0.0/s) 0 B, icmp +0, drops: udp→tun unknown-peer +1")
    }

    @Test func shardsCanBeReadWhileWritten() {
        let counters = Counters()
        runOnThreads(2) { _ in
            let shard = counters.makeShard()
            for iteration in 0..<100_000 {
                shard.countForwarded(.udpToTun, bytes: 10)
                if iteration % 1_000 == 0 { _ = counters.snapshot() }
            }
        }
        let snapshot = counters.snapshot()
        #expect(snapshot.packets[.udpToTun] == 200_000)
        #expect(snapshot.bytes[.udpToTun] == 2_000_000)
    }
}
