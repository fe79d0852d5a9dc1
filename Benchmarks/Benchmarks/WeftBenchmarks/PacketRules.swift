import Benchmark
import WeftCore
import WeftDataPathTesting

/// 64 valid 92-byte IPv4/UDP packets (a 64-byte payload, as the lab's pps test sends) from pods
/// of 10.244.1.0/24 to 16 peers' subnets 10.244.2.0/24 ... 10.244.17.0/24, with TTL 255 so the
/// TTL rule can run many times before a packet expires.
final class PacketRuleFixture: @unchecked Sendable {
    static let count = 64
    let packets: PacketSet
    /// Untouched copies, to restore a packet whose TTL ran out.
    let pristine: PacketSet
    let routes: RouteTable
    let policy = ForwardingPolicy(localSubnet: IPv4Prefix("10.244.1.0/24")!, pathMTU: 1472)
    let payload: PacketSet

    init() {
        let build = { (index: Int, cell: UnsafeMutableRawPointer) -> Int in
            writeUDPPacket(
                at: cell,
                source: IPv4Address(10, 244, 1, UInt8(2 + index % 8)),
                destination: IPv4Address(10, 244, UInt8(2 + index % 16), UInt8(2 + index / 16)),
                ttl: 255,
                payloadLength: 64)
        }
        packets = PacketSet(count: Self.count, maxLength: 92, build: build)
        pristine = PacketSet(count: Self.count, maxLength: 92, build: build)
        routes = RouteTable((2..<18).map {
            Route(subnet: IPv4Prefix(address: IPv4Address(10, 244, UInt8($0), 0), length: 24),
                  nextHop: IPv4Address(198, 18, 0, UInt8($0)))
        })
        // One MTU-sized (1472-byte) packet for the full checksum over a payload.
        payload = PacketSet(count: 1, maxLength: 1472) { _, cell in
            writeUDPPacket(at: cell, source: IPv4Address(10, 244, 1, 2), destination: IPv4Address(10, 244, 2, 2), payloadLength: 1444)
        }
    }

    /// Puts packet `index` back as built (TTL 255).
    func restore(_ index: Int) {
        packets.mutablePacket(index).copyMemory(from: pristine.packet(index))
    }
}

func packetRuleBenchmarks() {
    let perPacket = configuration(scalingFactor: .kilo)

    Benchmark("IPv4Header.validate", configuration: perPacket) { benchmark, fixture in
        var invalid = 0
        for index in benchmark.scaledIterations {
            if IPv4Header.validate(fixture.packets.packet(index & (PacketRuleFixture.count - 1))) != nil {
                invalid &+= 1
            }
        }
        precondition(invalid == 0)
        blackHole(invalid)
    } setup: {
        PacketRuleFixture()
    }

    Benchmark("TTLRule.decrement", configuration: perPacket) { benchmark, fixture in
        for index in benchmark.scaledIterations {
            let slot = index & (PacketRuleFixture.count - 1)
            if !TTLRule.decrement(fixture.packets.mutablePacket(slot).baseAddress!) {
                fixture.restore(slot)  // once per 254 decrements of a packet
            }
        }
    } setup: {
        PacketRuleFixture()
    }

    Benchmark("InternetChecksum-20-byte-header", configuration: perPacket) { benchmark, fixture in
        var sum: UInt16 = 0
        for index in benchmark.scaledIterations {
            let packet = fixture.packets.packet(index & (PacketRuleFixture.count - 1))
            sum ^= InternetChecksum.checksum(UnsafeRawBufferPointer(rebasing: packet[0..<20]))
        }
        blackHole(sum)
    } setup: {
        PacketRuleFixture()
    }

    Benchmark("InternetChecksum-1472-bytes", configuration: perPacket) { benchmark, fixture in
        var sum: UInt16 = 0
        let packet = fixture.payload.packet(0)
        for _ in benchmark.scaledIterations {
            sum ^= InternetChecksum.checksum(identity(packet))
        }
        blackHole(sum)
    } setup: {
        PacketRuleFixture()
    }

    // What a worker does per packet: validate, look up the peer, check TTL and size, decrement.
    Benchmark("ForwardingPolicy.outbound", configuration: perPacket) { benchmark, fixture in
        var sent = 0
        for index in benchmark.scaledIterations {
            let slot = index & (PacketRuleFixture.count - 1)
            switch fixture.policy.outbound(fixture.packets.mutablePacket(slot), routes: fixture.routes) {
            case .sendToPeer:
                sent &+= 1
            case .drop(.ttlExpired, _):
                fixture.restore(slot)  // once per 254 passes of a packet
            default:
                preconditionFailure("unexpected decision")
            }
        }
        blackHole(sent)
    } setup: {
        PacketRuleFixture()
    }
}
