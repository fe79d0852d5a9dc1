/// What to do with one packet read from the TUN.
public enum OutboundDecision: Equatable, Sendable {
    /// Encapsulate to this peer's public IP.
    case sendToPeer(IPv4Address)
    /// Drop and count; `reply` is the ICMP error to send to the packet's source, only when ICMPBuilder.mayAnswer allows it.
    case drop(DropReason, reply: ICMPMessage?)
}

/// What to do with one packet received from a peer. Weft is not a transit router: a packet
/// is either delivered to the local subnet or dropped.
public enum InboundDecision: Equatable, Sendable {
    /// Deliver into the TUN.
    case writeToTun
    /// Drop and count; `reply` is the ICMP error to send back to the sending node, only when ICMPBuilder.mayAnswer allows it.
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
    public func outbound(_ packet: UnsafeMutableRawBufferPointer, routes: RouteTable, largestSegment: Int? = nil) -> OutboundDecision {
        let bytes = UnsafeRawBufferPointer(packet)
        if let reason = IPv4Header.validate(bytes) {
            return .drop(reason, reply: nil)
        }
        let base = packet.baseAddress!
        let header = IPv4Header(base)
        guard let route = routes.lookup(header.destination) else {
            return .drop(.noRoute, reply: reply(.netUnreachable, about: bytes))
        }
        guard header.ttl > 1 else {
            return .drop(.ttlExpired, reply: reply(.timeExceeded, about: bytes))
        }
        if (largestSegment ?? header.totalLength) > pathMTU {
            // Without DF the sender allowed fragmentation, but Weft does not fragment, so it is dropped silently.
            return header.dontFragment
                ? .drop(.tooBig, reply: reply(.fragmentationNeeded(nextHopMTU: pathMTU), about: bytes))
                : .drop(.tooBig, reply: nil)
        }
        _ = TTLRule.decrement(base)
        return .sendToPeer(route.nextHop)
    }

    /// UDP → TUN, from outer source `sender`.
    public func inbound(_ packet: UnsafeMutableRawBufferPointer, from sender: IPv4Address, routes: RouteTable) -> InboundDecision {
        let bytes = UnsafeRawBufferPointer(packet)
        if let reason = IPv4Header.validate(bytes) {
            return .drop(reason, reply: nil)
        }
        // One rule whatever the slot size: a datagram a peer could not have sent over our path
        // is refused, with offloads (64 KiB slots) as without (slots cut it, MSG_TRUNC).
        if bytes.count > pathMTU {
            return .drop(.tooBig, reply: nil)
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
            return .drop(.ttlExpired, reply: reply(.timeExceeded, about: bytes))
        }
        _ = TTLRule.decrement(base)
        return .writeToTun
    }

    /// The reply a drop may carry: none where RFC 1122 forbids one (ICMPBuilder.mayAnswer).
    private func reply(_ message: ICMPMessage, about packet: UnsafeRawBufferPointer) -> ICMPMessage? {
        ICMPBuilder.mayAnswer(packet) ? message : nil
    }
}
