import Benchmark
import Glibc
import WeftCore
import WeftDataPath
import WeftDataPathTesting
import WeftLinux

/// The real `Forwarder` (each lane's thread, sending and receiving) over fake TUN
/// queues and fake UDP sockets, one of each per lane. Node 10.244.1.0/24 at 198.18.0.1 with 16 peers, 10.244.2.0/24 ...
/// 10.244.17.0/24 at 198.18.0.2 ... 198.18.0.17, all on port 8285.
///
/// Outbound, the fake TUN hands out 92-byte IPv4/UDP packets (64-byte payload, as the lab's pps
/// test) of 256 flows from local pods to every peer's pods; inbound, the fake socket hands out
/// datagrams from every peer carrying such packets to local pods. Each packet is copied into a
/// pool slot once, as the kernel would; validated, routed and TTL-decremented; then the fake
/// socket or TUN counts it. The benchmark thread offers a burst, waits until every packet came
/// out, and repeats.
///
/// With `offloads` (`weft run`'s default) the TUN has a virtio-net header and hands out TCP
/// super-packets of 16 flows instead, each 44 segments of 1432 bytes (63,048 bytes, MSS for the
/// 1472-byte path MTU), which the worker cuts into 44 flannel packets with full checksums and
/// sends as one UDP_SEGMENT entry.
final class DataPathFixture: @unchecked Sendable {
    static let flows = 256
    static let port: UInt16 = 8285
    static let superPacketSegments = 44
    static let segmentSize = 1472 - 40
    let completion: Completion
    /// Packets (or super-packets) offered at a time.
    let burst: Int
    let tunnels: [FakeTunnel]
    let transports: [FakeTransport]
    let forwarder: Forwarder
    /// Inner packets in one packet the fake TUN hands out.
    let packetsPerRead: Int

    init(lanes: Int, burst: Int, offloads: Bool = false) throws {
        self.burst = burst
        let completion = Completion(burst: burst)
        self.completion = completion
        let peers = (2..<18).map { UInt8($0) }
        let outbound: PacketSet
        if offloads {
            packetsPerRead = Self.superPacketSegments
            let length = VirtioNetHeader.size + 40 + Self.superPacketSegments * Self.segmentSize
            outbound = PacketSet(count: peers.count, maxLength: length) { index, cell in
                writeTCPSuperPacket(
                    at: cell,
                    source: IPv4Address(10, 244, 1, UInt8(2 + index)),
                    destination: IPv4Address(10, 244, peers[index], 2),
                    sourcePort: UInt16(40000 + index),
                    segments: Self.superPacketSegments, segmentSize: Self.segmentSize)
            }
        } else {
            packetsPerRead = 1
            outbound = PacketSet(count: Self.flows, maxLength: 92) { index, cell in
                writeUDPPacket(
                    at: cell,
                    source: IPv4Address(10, 244, 1, UInt8(2 + index % 16)),
                    destination: IPv4Address(10, 244, peers[index % peers.count], UInt8(2 + index / peers.count)),
                    sourcePort: UInt16(40000 + index),
                    payloadLength: 64)
            }
        }
        let inbound = PacketSet(count: Self.flows, maxLength: 92) { index, cell in
            writeUDPPacket(
                at: cell,
                source: IPv4Address(10, 244, peers[index % peers.count], UInt8(2 + index / peers.count)),
                destination: IPv4Address(10, 244, 1, UInt8(2 + index % 16)),
                sourcePort: UInt16(40000 + index),
                payloadLength: 64)
        }
        let senders = (0..<Self.flows).map { IPv4Address(198, 18, 0, peers[$0 % peers.count]) }
        tunnels = try (0..<lanes).map { _ in
            try FakeTunnel(repeating: outbound, vnetHeaderSize: offloads ? VirtioNetHeader.size : 0, completion: completion)
        }
        transports = try (0..<lanes).map { _ in
            try FakeTransport(repeating: inbound, senders: senders, port: Self.port, completion: completion)
        }
        let routes = RouteTableStore(RouteTable(peers.map {
            Route(subnet: IPv4Prefix(address: IPv4Address(10, 244, $0, 0), length: 24), nextHop: IPv4Address(198, 18, 0, $0))
        }))
        let policy = ForwardingPolicy(localSubnet: IPv4Prefix("10.244.1.0/24")!, pathMTU: 1472)
        let configuration = ForwarderConfiguration(
            policy: policy, port: Self.port, offload: offloads ? .superPacketsAndSegmentedSends : .off)
        forwarder = try Forwarder(
            lanes: zip(tunnels, transports).map { DataPathLane(tunnel: $0, transport: $1) },
            routes: routes, configuration: configuration,
            onFatalError: { message in fatalError("data path failed: \(message)") })
        forwarder.start()
    }

    /// Offers `bursts` bursts of `outbound` packets to the TUN side and `inbound` datagrams to
    /// the socket side, two bursts in flight at a time: the next is offered as soon as one has
    /// come out, so the threads never all fall idle between bursts (waking an idle vCPU costs
    /// tens of microseconds on the VM, which closed-loop bursts would measure instead of the
    /// data path). The fake socket counts send entries: one per plain packet, one per
    /// super-packet (its 44 segments fit one UDP_SEGMENT entry).
    func run(bursts: Int, outbound: Int, inbound: Int) {
        precondition(outbound + inbound == burst, "bursts must match the completion's")
        // Each lane gets its share, as the kernel spreads flows over TUN queues and sockets.
        let lanes = tunnels.count
        func offer() {
            for lane in 0..<lanes {
                let out = share(outbound, lane: lane, of: lanes)
                let into = share(inbound, lane: lane, of: lanes)
                if out > 0 { tunnels[lane].offer.add(out) }
                if into > 0 { transports[lane].offer.add(into) }
            }
        }
        for _ in 0..<min(2, bursts) { offer() }
        for index in 0..<bursts {
            if !completion.wait() {
                fatalError("packets went missing: \(completion.count) out; \(forwarder.counters.snapshot().summaryLine)")
            }
            if index + 2 < bursts { offer() }
        }
    }

    /// Runs one burst and checks every packet was forwarded with nothing dropped (in setup,
    /// where the counters' snapshot may allocate). A thread counts its packets just after the
    /// send or write that completed them, so the counters may lag the completion briefly.
    func verify(outbound: Int, inbound: Int) {
        let before = forwarder.counters.snapshot()
        run(bursts: 1, outbound: outbound, inbound: inbound)
        var after = forwarder.counters.snapshot()
        for _ in 0..<1000 {
            let forwardedOut = after.packets[.tunToUDP]! - before.packets[.tunToUDP]!
            let forwardedIn = after.packets[.udpToTun]! - before.packets[.udpToTun]!
            if forwardedOut == outbound * packetsPerRead && forwardedIn == inbound && after.drops.isEmpty { return }
            usleep(1000)
            after = forwarder.counters.snapshot()
        }
        preconditionFailure("expected \(outbound * packetsPerRead) packets out and \(inbound) in, nothing dropped: \(after.summaryLine)")
    }

    func stop() {
        forwarder.stop()
    }

    /// Lane `lane`'s part of `total` split over `lanes`, the first ones taking the remainder.
    private func share(_ total: Int, lane: Int, of lanes: Int) -> Int {
        total / lanes + (lane < total % lanes ? 1 : 0)
    }
}

func dataPathBenchmarks() {
    // A million packets per iteration, in bursts of 500 with two in flight. Iterations of ~0.1 s keep scheduler noise on the shared cores out of the p90
    // that thresholds check.
    let configuration = configuration(scalingFactor: .mega, warmupIterations: 2, maxDuration: .seconds(3), timeTolerance: threadedTimeTolerance)
    let burst = 500

    let cases: [(name: String, lanes: Int, outbound: Int, inbound: Int)] = [
        ("DataPath-TUN-to-UDP-1-worker", 1, burst, 0),
        ("DataPath-TUN-to-UDP-2-workers", 2, burst, 0),
        ("DataPath-UDP-to-TUN-1-worker", 1, 0, burst),
        ("DataPath-UDP-to-TUN-2-workers", 2, 0, burst),
        ("DataPath-both-directions-1-worker", 1, burst / 2, burst / 2),
    ]
    for (name, lanes, outbound, inbound) in cases {
        dataPathBenchmark(name, configuration: configuration, outbound: outbound, inbound: inbound) {
            try DataPathFixture(lanes: lanes, burst: burst)
        }
    }

    // weft run's default: a TUN with TSO. One iteration is 1000 super-packets of 44 packets
    // (63 MB of inner packets), in bursts of 50 with two in flight.
    var superPackets = configuration
    superPackets.scalingFactor = .kilo
    dataPathBenchmark("DataPath-TUN-to-UDP-TSO-super-packets-1-worker", configuration: superPackets, outbound: 50, inbound: 0) {
        try DataPathFixture(lanes: 1, burst: 50, offloads: true)
    }
}

/// One data-path benchmark: the forwarder is started and checked in setup, stopped in teardown;
/// each iteration pushes `scaledIterations` packets through it.
private func dataPathBenchmark(
    _ name: String, configuration: Benchmark.Configuration, outbound: Int, inbound: Int,
    makeFixture: @escaping () throws -> DataPathFixture
) {
    let fixture = Fixture<DataPathFixture>()
    Benchmark(name, configuration: configuration) { benchmark in
        let dataPath = fixture.value!
        AllocationProbe.open()
        dataPath.run(bursts: benchmark.scaledIterations.count / dataPath.burst, outbound: outbound, inbound: inbound)
        AllocationProbe.close()
    } setup: {
        AllocationProbe.install()
        let dataPath = try makeFixture()
        dataPath.verify(outbound: outbound, inbound: inbound)
        fixture.value = dataPath
    } teardown: {
        fixture.value?.stop()
        fixture.value = nil
        AllocationProbe.report(name)
    }
}
