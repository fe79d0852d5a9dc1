/// What to do with one packet.
public enum Decision: Equatable, Sendable {
    /// Outbound: encapsulate to this peer's public IP.
    case sendToPeer(IPv4Address)
    /// Inbound: deliver locally.
    case writeToTun
    /// Drop and count; `reply` is the ICMP error to send to the packet's source, only when ICMPBuilder.mayAnswer allows it.
    case drop(DropReason, reply: ICMPMessage?)
}

/// The forwarding rules as a pure function of the packet and the route table (no I/O), so every branch is testable.
public struct ForwardingPolicy: Sendable {
    /// This node's lease, e.g. 10.244.1.0/24.
    public var localSubnet: IPv4Prefix
    /// Largest inner packet one datagram may carry: underlay MTU − 28, at most `largestPathMTU`.
    public var pathMTU: Int
    /// The most one IPv4 UDP datagram can carry (65,535 − 20 − 8). An underlay MTU of 64 KiB
    /// (lo) would allow more, but no send could carry it.
    public static let largestPathMTU = 65507
    /// Whether inbound datagrams must come from a known peer that owns the inner source; false only for NAT setups.
    public var checkPeerAddress: Bool

    /// Makes a policy.
    public init(localSubnet: IPv4Prefix, pathMTU: Int, checkPeerAddress: Bool = true) {
        self.localSubnet = localSubnet
        self.pathMTU = min(pathMTU, Self.largestPathMTU)
        self.checkPeerAddress = checkPeerAddress
    }

    /// TUN → UDP. `packet` is exactly the bytes read. On .sendToPeer the TTL has been decremented (TTLRule).
    ///
    /// `largestSegment` is for a TSO super-packet from a TUN with offloads: the size of the largest
    /// packet it will be cut into, which is what must fit the path (the super-packet never travels whole).
    public func outbound(_ packet: UnsafeMutableRawBufferPointer, routes: RouteTable, largestSegment: Int? = nil) -> Decision {
        let bytes = UnsafeRawBufferPointer(packet)
        if let reason = IPv4Header.validate(bytes) {
            return .drop(reason, reply: nil)
        }
        let base = packet.baseAddress!
        let header = IPv4Header(base)
        guard let route = routes.lookup(header.destination) else {
            return drop(.noRoute, answering: .netUnreachable, about: bytes)
        }
        guard header.ttl > 1 else {
            return drop(.ttlExpired, answering: .timeExceeded, about: bytes)
        }
        if (largestSegment ?? header.totalLength) > pathMTU {
            // Without DF the sender allowed fragmentation, but Weft does not fragment, so it is dropped silently.
            return header.dontFragment
                ? drop(.tooBig, answering: .fragmentationNeeded(nextHopMTU: pathMTU), about: bytes)
                : .drop(.tooBig, reply: nil)
        }
        _ = TTLRule.decrement(base)
        return .sendToPeer(route.nextHop)
    }

    /// UDP → TUN, from outer source `sender`.
    public func inbound(_ packet: UnsafeMutableRawBufferPointer, from sender: IPv4Address, routes: RouteTable) -> Decision {
        let bytes = UnsafeRawBufferPointer(packet)
        if let reason = IPv4Header.validate(bytes) {
            return .drop(reason, reply: nil)
        }
        if checkPeerAddress && !routes.isPeer(sender) {
            return .drop(.unknownPeer, reply: nil)
        }
        let base = packet.baseAddress!
        let header = IPv4Header(base)
        guard let sourceRoute = routes.lookup(header.source),
              !checkPeerAddress || sourceRoute.nextHop == sender
        else {
            return .drop(.spoofedSource, reply: nil)
        }
        guard localSubnet.contains(header.destination) else {
            return .drop(.notLocalDestination, reply: nil)
        }
        guard header.ttl > 1 else {
            return drop(.ttlExpired, answering: .timeExceeded, about: bytes)
        }
        _ = TTLRule.decrement(base)
        return .writeToTun
    }

    private func drop(_ reason: DropReason, answering message: ICMPMessage, about packet: UnsafeRawBufferPointer) -> Decision {
        .drop(reason, reply: ICMPBuilder.mayAnswer(packet) ? message : nil)
    }
}
