import Testing
import WeftCore
import WeftDataPathTesting

private let localLease = IPv4Prefix("10.244.1.0/24")!
private let peerA = IPv4Address(192, 168, 0, 2)
private let peerB = IPv4Address(192, 168, 0, 3)
private let routes = RouteTable([
    Route(subnet: IPv4Prefix("10.244.2.0/24")!, nextHop: peerA),
    Route(subnet: IPv4Prefix("10.244.3.0/24")!, nextHop: peerB),
])
private let policy = ForwardingPolicy(localSubnet: localLease, pathMTU: 1472)

private let localHost = IPv4Address(10, 244, 1, 5)
private let hostOnA = IPv4Address(10, 244, 2, 7)
private let hostOnB = IPv4Address(10, 244, 3, 9)

private func outbound(_ packet: inout [UInt8], policy: ForwardingPolicy = policy) -> OutboundDecision {
    packet.withUnsafeMutableBytes { policy.outbound($0, routes: routes) }
}

private func inbound(_ packet: inout [UInt8], from sender: IPv4Address, policy: ForwardingPolicy = policy) -> InboundDecision {
    packet.withUnsafeMutableBytes { policy.inbound($0, from: sender, routes: routes) }
}

@Suite struct OutboundTests {
    @Test func sendsToPeerWithTTLDecremented() {
        var packet = makePacket(source: localHost, destination: hostOnA, ttl: 64)
        let before = packet
        #expect(outbound(&packet) == .sendToPeer(peerA))
        #expect(packet[8] == 63)
        #expect(headerChecksumVerifies(packet))
        #expect(packet[10] == before[10] &+ 1 && packet[11] == before[11])
        var toB = makePacket(source: localHost, destination: hostOnB, ttl: 2)
        #expect(outbound(&toB) == .sendToPeer(peerB))
        #expect(toB[8] == 1)
    }

    @Test func dropsMalformedWithoutReply() {
        var short: [UInt8] = [0x45, 0, 0]
        #expect(outbound(&short) == .drop(.tooShort, reply: nil))
        var corrupt = makePacket(destination: IPv4Address(8, 8, 8, 8))
        corrupt[11] ^= 0xFF
        #expect(outbound(&corrupt) == .drop(.badChecksum, reply: nil))
    }

    @Test func noRouteAnswersNetUnreachable() {
        var packet = makePacket(source: localHost, destination: IPv4Address(8, 8, 8, 8))
        let before = packet
        #expect(outbound(&packet) == .drop(.noRoute, reply: .netUnreachable))
        #expect(packet == before)
    }

    @Test func noRouteForAnICMPErrorHasNoReply() {
        var packet = makePacket(source: localHost, destination: IPv4Address(8, 8, 8, 8), protocolNumber: 1,
                                payload: [3, 1, 0, 0, 0, 0, 0, 0])
        #expect(outbound(&packet) == .drop(.noRoute, reply: nil))
        var echo = makePacket(source: localHost, destination: IPv4Address(8, 8, 8, 8), protocolNumber: 1,
                              payload: [8, 0, 0, 0, 0, 1, 0, 1])
        #expect(outbound(&echo) == .drop(.noRoute, reply: .netUnreachable))
    }

    @Test(arguments: [UInt8(0), 1])
    func expiredTTLAnswersTimeExceeded(_ ttl: UInt8) {
        var packet = makePacket(source: localHost, destination: hostOnA, ttl: ttl)
        let before = packet
        #expect(outbound(&packet) == .drop(.ttlExpired, reply: .timeExceeded))
        #expect(packet == before)
        var timeExceeded = makePacket(source: localHost, destination: hostOnA, ttl: ttl, protocolNumber: 1,
                                      payload: [11, 0, 0, 0, 0, 0, 0, 0])
        #expect(outbound(&timeExceeded) == .drop(.ttlExpired, reply: nil))
    }

    @Test func tooBigWithDFAnswersFragmentationNeeded() {
        var packet = makePacket(source: localHost, destination: hostOnA, flagsAndOffset: 0x4000,
                                payload: [UInt8](repeating: 0, count: 1453))
        #expect(packet.count == 1473)
        let before = packet
        #expect(outbound(&packet) == .drop(.tooBig, reply: .fragmentationNeeded(nextHopMTU: 1472)))
        #expect(packet == before)
        var fits = makePacket(source: localHost, destination: hostOnA, payload: [UInt8](repeating: 0, count: 1452))
        #expect(outbound(&fits) == .sendToPeer(peerA))
    }

    @Test func tooBigWithoutDFHasNoReply() {
        var packet = makePacket(source: localHost, destination: hostOnA, flagsAndOffset: 0,
                                payload: [UInt8](repeating: 0, count: 2000))
        #expect(outbound(&packet) == .drop(.tooBig, reply: nil))
    }

    @Test func repliesSuppressedForUnanswerableSources() {
        var packet = makePacket(source: IPv4Address(0, 0, 0, 0), destination: IPv4Address(8, 8, 8, 8))
        #expect(outbound(&packet) == .drop(.noRoute, reply: nil))
    }
}

@Suite struct InboundTests {
    @Test func aDatagramLongerThanThePathIsRefusedInbound() {
        var oversize = makePacket(source: hostOnA, destination: localHost, payload: [UInt8](repeating: 0, count: 1453))
        let before = oversize
        #expect(inbound(&oversize, from: peerA) == .drop(.tooBig, reply: nil))
        #expect(oversize == before, "not touched")
        var fits = makePacket(source: hostOnA, destination: localHost, payload: [UInt8](repeating: 0, count: 1452))
        #expect(inbound(&fits, from: peerA) == .writeToTun)
    }

    @Test func deliversLocallyWithTTLDecremented() {
        var packet = makePacket(source: hostOnA, destination: localHost, ttl: 63)
        #expect(inbound(&packet, from: peerA) == .writeToTun)
        #expect(packet[8] == 62)
        #expect(headerChecksumVerifies(packet))
    }

    @Test func dropsMalformedWithoutReply() {
        var ipv6 = [UInt8](repeating: 0, count: 40)
        ipv6[0] = 0x60
        #expect(inbound(&ipv6, from: peerA) == .drop(.ipv6, reply: nil))
    }

    @Test func unknownPeer() {
        var packet = makePacket(source: hostOnA, destination: localHost)
        let before = packet
        #expect(inbound(&packet, from: IPv4Address(203, 0, 113, 1)) == .drop(.unknownPeer, reply: nil))
        #expect(packet == before)
    }

    @Test func spoofedSource() {
        // A known peer sending with a source that belongs to another peer's subnet.
        var otherPeersSource = makePacket(source: hostOnB, destination: localHost)
        #expect(inbound(&otherPeersSource, from: peerA) == .drop(.spoofedSource, reply: nil))
        var unroutedSource = makePacket(source: IPv4Address(8, 8, 8, 8), destination: localHost)
        #expect(inbound(&unroutedSource, from: peerA) == .drop(.spoofedSource, reply: nil))
    }

    @Test func withoutPeerChecksOnlyTheSourceMustBeRouted() {
        let natPolicy = ForwardingPolicy(localSubnet: localLease, pathMTU: 1472, checkPeerAddress: false)
        var viaNAT = makePacket(source: hostOnB, destination: localHost)
        #expect(inbound(&viaNAT, from: IPv4Address(203, 0, 113, 1), policy: natPolicy) == .writeToTun)
        var unroutedSource = makePacket(source: IPv4Address(8, 8, 8, 8), destination: localHost)
        #expect(inbound(&unroutedSource, from: IPv4Address(203, 0, 113, 1), policy: natPolicy)
            == .drop(.spoofedSource, reply: nil))
    }

    @Test func notLocalDestination() {
        var packet = makePacket(source: hostOnA, destination: hostOnB)
        #expect(inbound(&packet, from: peerA) == .drop(.notLocalDestination, reply: nil))
    }

    @Test(arguments: [UInt8(0), 1])
    func expiredTTLAnswersTimeExceeded(_ ttl: UInt8) {
        var packet = makePacket(source: hostOnA, destination: localHost, ttl: ttl)
        let before = packet
        #expect(inbound(&packet, from: peerA) == .drop(.ttlExpired, reply: .timeExceeded))
        #expect(packet == before)
        var icmpError = makePacket(source: hostOnA, destination: localHost, ttl: ttl, protocolNumber: 1,
                                   payload: [3, 3, 0, 0, 0, 0, 0, 0])
        #expect(inbound(&icmpError, from: peerA) == .drop(.ttlExpired, reply: nil))
    }
}
