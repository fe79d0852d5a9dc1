// fuzz-sources: Sources/WeftCapture/FlannelDecoder.swift
// Any captured frame, as `weft capture --verify` meets it in a pcap file or on a live link
// (the first byte picks the link type, the next two the link MTU). Invariants: the verdict's
// inner ranges lie inside the frame and tile the datagram's payload; a `valid` datagram's
// inner packets (each segment of a super-frame too) are IPv4 with a header checksum that
// verifies and a total length that fills their range.

private let linkTypes: [Int32] = [LinkType.ethernet, LinkType.raw, LinkType.linktypeRaw, LinkType.linuxSLL, LinkType.linuxSLL2]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 3 else { return 0 }
    let linkType = linkTypes[Int(data[0]) % linkTypes.count]
    let mtu = 68 + (Int(data[1]) << 8 | Int(data[2])) % 9000
    let frame = UnsafeRawBufferPointer(start: data + 3, count: size - 3)
    // Sometimes the capture was cut by the snap length: the wire held more than the file.
    let wireLength = data[0] & 0x80 != 0 ? frame.count + 100 : frame.count
    let datagram = FlannelDecoder.decode(frame, wireLength: wireLength, linkType: linkType, port: 8285, mtu: mtu)
    guard datagram.segments >= 1 else { violated("\(datagram.segments) segments") }
    let ranges = datagram.innerPacketRanges
    if let range = datagram.innerRange {
        guard range.lowerBound >= 0, range.upperBound <= frame.count else { violated("inner range \(range) outside \(frame.count) bytes") }
        guard ranges.first?.lowerBound == range.lowerBound, ranges.last?.upperBound == range.upperBound else { violated("segments do not cover \(range)") }
        for (a, b) in zip(ranges, ranges.dropFirst()) where a.upperBound != b.lowerBound { violated("segments \(a) and \(b) do not tile") }
    }
    if datagram.verdict == .valid {
        guard !ranges.isEmpty else { violated("valid without an inner packet") }
        for range in ranges {
            let packet = UnsafeRawBufferPointer(rebasing: frame[range])
            guard packet.count >= 20, packet[0] >> 4 == 4 else { violated("valid inner packet is not IPv4") }
            guard headerChecksumVerifies(packet) else { violated("valid inner packet with a bad header checksum") }
            guard Int(packet[2]) << 8 | Int(packet[3]) == packet.count else { violated("valid inner packet's total length is not its range") }
        }
    }
    return 0
}
