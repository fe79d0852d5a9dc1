// Any bytes as a TSO super-packet from the TUN (the first two bytes are the gso_size), cut by
// TCPSegmenter. Invariants: every segment is a valid IPv4/TCP packet no longer than the
// headers plus gso_size, with valid IP and TCP checksums, and the segments' payloads joined
// are the super-packet's payload; joining them again with TCPCoalescer never fails a check
// it should pass (a joined run keeps the payload and valid header lengths).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 2 else { return 0 }
    let gsoSize = Int(data[0]) << 8 | Int(data[1])
    let packet = Array(UnsafeBufferPointer(start: data + 2, count: size - 2))
    let headers = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024 * 128, alignment: 64)
    let segments = UnsafeMutableBufferPointer<TCPSegment>.allocate(capacity: 1024)
    defer { headers.deallocate(); segments.deallocate() }
    packet.withUnsafeBytes { bytes in
        guard let count = TCPSegmenter.segment(bytes, gsoSize: gsoSize, headers: headers, segments: segments) else { return }
        guard let headerLength = TCPHeaders.length(bytes) else { violated("segmented a packet TCPHeaders refuses") }
        var joined: [UInt8] = []
        var cut: [[UInt8]] = []
        for segment in segments.prefix(count) {
            guard segment.payloadOffset >= headerLength, segment.payloadOffset + segment.payloadLength <= bytes.count,
                  segment.payloadLength <= gsoSize, segment.headerLength == headerLength
            else { violated("segment out of bounds: \(segment)") }
            let one = Array(headers[segment.headerOffset..<(segment.headerOffset + segment.headerLength)])
                + Array(bytes[segment.payloadOffset..<(segment.payloadOffset + segment.payloadLength)])
            one.withUnsafeBytes { raw in
                guard headerChecksumVerifies(raw) else { violated("segment IPv4 checksum") }
                guard Int(raw[2]) << 8 | Int(raw[3]) == raw.count else { violated("segment total length") }
                guard transportChecksumVerifies(raw) else { violated("segment TCP checksum") }
            }
            joined += bytes[segment.payloadOffset..<(segment.payloadOffset + segment.payloadLength)]
            cut.append(one)
        }
        guard joined == Array(bytes[headerLength...]) else { violated("segments do not re-join to the payload") }
        // The receiving side's coalescer over what the sender cut: whatever it joins stays in bounds.
        guard let first = cut.first, var total = first.withUnsafeBytes({ TCPCoalescer.payloadLength($0) }) else { return }
        for next in cut.dropFirst() {
            let ok = first.withUnsafeBytes { a in next.withUnsafeBytes { b in TCPCoalescer.canAppend(first: a, appendedPayload: total, next: b) } }
            if !ok { break }
            total += next.withUnsafeBytes { TCPCoalescer.payloadLength($0)! }
        }
        if headerLength + total > 65535 { violated("joined beyond 65535 bytes") }
    }
    return 0
}
