// Any bytes as an inner packet, both ways through ForwardingPolicy, and the ICMP errors it asks
// for. Invariants: a forwarded packet has a valid header checksum and a TTL one lower and is
// otherwise untouched; a dropped one is untouched; an ICMP error is a valid IPv4/ICMP packet
// quoting the offender's header.

private let policy = ForwardingPolicy(localSubnet: IPv4Prefix("10.244.1.0/24")!, pathMTU: 1472)
private let peer = IPv4Address(198, 18, 0, 2)
private let routes = RouteTable([Route(subnet: IPv4Prefix("10.244.2.0/24")!, nextHop: peer)])

private func checkForwarded(_ before: [UInt8], _ after: UnsafeMutableRawBufferPointer) {
    guard headerChecksumVerifies(UnsafeRawBufferPointer(after)) else { violated("forwarded with a bad header checksum") }
    guard after[8] == before[8] &- 1 else { violated("TTL not one lower") }
    for index in 0..<after.count where index != 8 && index != 10 && index != 11 {
        if after[index] != before[index] { violated("byte \(index) changed") }
    }
}

private func checkReply(_ message: ICMPMessage, about offender: [UInt8]) {
    var buffer = [UInt8](repeating: 0, count: 28 + 60 + 8)
    let length = offender.withUnsafeBytes { quoted in
        buffer.withUnsafeMutableBytes { ICMPBuilder.build(message, about: quoted, from: IPv4Address(10, 244, 1, 0), into: $0) }
    }
    buffer.withUnsafeBytes { raw in
        let reply = UnsafeRawBufferPointer(rebasing: raw[0..<length])
        guard length >= 28, headerChecksumVerifies(reply) else { violated("ICMP with a bad IPv4 header") }
        guard referenceChecksum(UnsafeRawBufferPointer(rebasing: reply[20...])) == 0 else { violated("ICMP checksum") }
        let quote = min(offender.count, Int(offender[0] & 0x0F) * 4 + 8)
        guard Array(reply[28..<(28 + min(quote, length - 28))]) == Array(offender.prefix(min(quote, length - 28))) else {
            violated("ICMP does not quote the offender")
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    for direction in 0..<2 {
        var packet = input
        packet.withUnsafeMutableBytes { bytes in
            if direction == 0 {
                switch policy.outbound(bytes, routes: routes) {
                case .sendToPeer(let next):
                    if next != peer { violated("sent to \(next)") }
                    checkForwarded(input, bytes)
                case .drop(_, let reply):
                    if Array(bytes) != input { violated("a dropped packet was changed") }
                    if let reply { checkReply(reply, about: input) }
                }
            } else {
                switch policy.inbound(bytes, from: peer, routes: routes) {
                case .writeToTun:
                    checkForwarded(input, bytes)
                case .drop(_, let reply):
                    if Array(bytes) != input { violated("a dropped packet was changed") }
                    if let reply { checkReply(reply, about: input) }
                }
            }
        }
    }
    return 0
}
