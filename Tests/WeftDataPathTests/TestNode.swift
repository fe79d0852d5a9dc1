import Synchronization
import Testing
import WeftCore
import WeftDataPath
import WeftDataPathTesting
import WeftLinux

/// One node's real `Forwarder` threads over the in-memory TUN and socket: node 10.244.1.0/24,
/// peer B (198.18.0.2) owns 10.244.2.0/24 and peer C (198.18.0.3) 10.244.3.0/24, port 8285.
final class TestNode: Sendable {
    static let localSubnet = IPv4Prefix("10.244.1.0/24")!
    static let localPod = IPv4Address(10, 244, 1, 5)
    static let peerB = IPv4Address(198, 18, 0, 2)
    static let podB = IPv4Address(10, 244, 2, 7)
    static let peerC = IPv4Address(198, 18, 0, 3)
    static let podC = IPv4Address(10, 244, 3, 9)
    static let port: UInt16 = 8285

    /// Lane i reads and writes `tunnels[i]` and sends and receives on `transports[i]`.
    let tunnels: [FakeTunnel]
    let transports: [FakeTransport]
    /// Lane 0's devices, all there is with one lane.
    var tunnel: FakeTunnel { tunnels[0] }
    var transport: FakeTransport { transports[0] }
    let forwarder: Forwarder
    private let fatalErrors = MessageLog()

    /// With super-packets the TUN has a virtio-net header and slots hold 64 KiB, as `weft run`
    /// does by default; `.superPacketsAndSegmentedSends` also lets the workers send UDP_SEGMENT runs.
    /// `udpSuperPackets`: the TUN takes UDP super-packets (a kernel with USO, 6.2+).
    init(lanes: Int = 1, offload: Offload = .off, pathMTU: Int = 1472, batchSize: Int = 64, udpSuperPackets: Bool = false) throws {
        tunnels = try (0..<lanes).map { _ in
            try FakeTunnel(vnetHeaderSize: offload.usesSuperPackets ? VirtioNetHeader.size : 0, acceptsUDPSuperPackets: udpSuperPackets)
        }
        transports = try (0..<lanes).map { _ in try FakeTransport() }
        let routes = RouteTableStore(RouteTable([
            Route(subnet: IPv4Prefix("10.244.2.0/24")!, nextHop: Self.peerB),
            Route(subnet: IPv4Prefix("10.244.3.0/24")!, nextHop: Self.peerC),
        ]))
        let configuration = ForwarderConfiguration(
            policy: ForwardingPolicy(localSubnet: Self.localSubnet, pathMTU: pathMTU), port: Self.port,
            offload: offload, batchSize: batchSize)
        let errors = fatalErrors
        forwarder = try Forwarder(lanes: zip(tunnels, transports).map { DataPathLane(tunnel: $0, transport: $1) },
                                  routes: routes, configuration: configuration,
                                  onFatalError: { message in errors.append(message) })
        forwarder.start()
    }

    func stop() {
        forwarder.stop()
    }

    var counters: CounterSnapshot { forwarder.counters.snapshot() }

    /// Waits until the counters satisfy `condition` (threads count just after the send or write
    /// that completed a packet); returns the last snapshot either way.
    func waitForCounters(_ condition: (CounterSnapshot) -> Bool) -> CounterSnapshot {
        var snapshot = counters
        _ = waitUntil {
            snapshot = counters
            return condition(snapshot)
        }
        return snapshot
    }

    /// Waits for at least one fatal error report; returns all of them.
    func waitForFatalErrors() -> [String] {
        _ = waitUntil { !fatalErrors.messages.isEmpty }
        return fatalErrors.messages
    }

    var fatalErrorsReported: [String] { fatalErrors.messages }
}

/// Messages from any thread, in order.
final class MessageLog: Sendable {
    private let log = Mutex<[String]>([])
    func append(_ message: String) { log.withLock { $0.append(message) } }
    var messages: [String] { log.withLock { $0 } }
}

extension CounterSnapshot {
    func forwarded(_ direction: Direction) -> Int { packets[direction] ?? 0 }
    func dropped(_ direction: Direction, _ reason: DropReason) -> Int { drops[direction]?[reason] ?? 0 }
    /// Every drop of `direction`, whatever the reason.
    func dropped(_ direction: Direction) -> Int { drops[direction]?.values.reduce(0, +) ?? 0 }
}

/// `packet` as a TUN with offloads hands it over: behind an empty virtio-net header.
func withVirtioHeader(_ packet: [UInt8]) -> [UInt8] {
    [UInt8](repeating: 0, count: VirtioNetHeader.size) + packet
}

/// `packet` as it leaves Weft: TTL one lower, header checksum recomputed.
func decrementedTTL(_ packet: [UInt8]) -> [UInt8] {
    var expected = packet
    expected[8] -= 1
    expected[10] = 0
    expected[11] = 0
    let checksum = referenceChecksum(expected[0..<(Int(expected[0] & 0x0F) * 4)])
    expected[10] = UInt8(checksum >> 8)
    expected[11] = UInt8(checksum & 0xFF)
    return expected
}

/// A UDP packet (8-byte header, checksum 0) with `payloadLength` bytes counting up from `seed`.
func makeUDPPacket(source: IPv4Address, destination: IPv4Address, ttl: UInt8 = 64, payloadLength: Int = 64, seed: Int = 0) -> [UInt8] {
    let length = 8 + payloadLength
    let udp: [UInt8] = [0x9C, 0x40, 0x00, 0x09, UInt8(length >> 8), UInt8(length & 0xFF), 0, 0]
    return makePacket(source: source, destination: destination, ttl: ttl, protocolNumber: 17,
                      payload: udp + (0..<payloadLength).map { UInt8(truncatingIfNeeded: seed + $0) })
}

/// A UDP packet with its UDP checksum, as a pod's kernel sends one.
func makeChecksummedUDPPacket(source: IPv4Address, destination: IPv4Address, sourcePort: UInt16 = 40000,
                              identification: UInt16 = 0x1234, payload: [UInt8]) -> [UInt8] {
    let length = 8 + payload.count
    var packet = makePacket(source: source, destination: destination, protocolNumber: 17, identification: identification,
                            payload: [UInt8(sourcePort >> 8), UInt8(sourcePort & 0xFF), 0x00, 0x09,
                                      UInt8(length >> 8), UInt8(length & 0xFF), 0, 0] + payload)
    let pseudo: [UInt8] = Array(packet[12..<20]) + [0, 17, UInt8(length >> 8), UInt8(length & 0xFF)]
    var checksum = referenceChecksum(ArraySlice(pseudo + packet[20...]))
    if checksum == 0 { checksum = 0xFFFF }
    packet[26] = UInt8(checksum >> 8)
    packet[27] = UInt8(checksum & 0xFF)
    return packet
}

/// Expects two lists of packets to be equal byte for byte; a difference is reported by where it
/// starts, not by printing kilobytes of bytes.
func expectSamePackets(_ actual: [[UInt8]], _ expected: [[UInt8]], _ what: String = "packets",
                       sourceLocation: SourceLocation = #_sourceLocation) {
    guard actual != expected else { return }
    let description: String
    if actual.count != expected.count {
        description = "\(what): \(actual.count) instead of \(expected.count)"
    } else {
        let index = actual.indices.first { actual[$0] != expected[$0] }!
        let (a, b) = (actual[index], expected[index])
        let byte = (0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? min(a.count, b.count)
        description = "\(what): #\(index) differs at byte \(byte) (lengths \(a.count) and \(b.count))"
    }
    Issue.record(Comment(rawValue: description), sourceLocation: sourceLocation)
}
