// Any bytes split into two inner packets (the first byte says where), as a UDP GRO run on
// receive. Invariants: UDPCoalescer.canAppend never accepts a packet payloadLength refuses;
// when it joins, finish gives a header whose lengths and IP checksum are right and whose UDP
// checksum field is the pseudo-header sum of the joined length.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 1 else { return 0 }
    let split = min(size - 1, Int(data[0]) * 8)
    var first = Array(UnsafeBufferPointer(start: data + 1, count: split))
    let next = Array(UnsafeBufferPointer(start: data + 1 + split, count: size - 1 - split))
    guard let firstPayload = first.withUnsafeBytes({ UDPCoalescer.payloadLength($0) }) else { return 0 }
    let joins = first.withUnsafeBytes { a in next.withUnsafeBytes { b in UDPCoalescer.canAppend(first: a, appendedPayload: firstPayload, next: b) } }
    guard joins else { return 0 }
    guard let nextPayload = next.withUnsafeBytes({ UDPCoalescer.payloadLength($0) }) else { violated("joined a packet payloadLength refuses") }
    guard nextPayload <= firstPayload else { violated("joined a longer datagram") }
    guard next.withUnsafeBytes({ transportChecksumVerifies($0) }) else { violated("joined a bad UDP checksum") }
    let total = firstPayload + nextPayload
    let virtio = first.withUnsafeMutableBytes { UDPCoalescer.finish(first: $0, totalPayload: total, gsoSize: firstPayload) }
    first.withUnsafeBytes { raw in
        guard headerChecksumVerifies(raw) else { violated("joined IPv4 checksum") }
        guard Int(raw[2]) << 8 | Int(raw[3]) == 28 + total, Int(raw[24]) << 8 | Int(raw[25]) == 8 + total else { violated("joined lengths") }
        let pseudo = Array(raw[12..<20]) + [0, 17, raw[24], raw[25]]
        let sum = pseudo.withUnsafeBytes { referenceChecksum($0) }
        // NEEDS_CSUM wants the uncomplemented pseudo-header sum in the field.
        guard Int(raw[26]) << 8 | Int(raw[27]) == Int(~sum) else { violated("joined UDP checksum field") }
    }
    guard virtio.gsoType == VirtioNetHeader.gsoUDPL4, Int(virtio.gsoSize) == firstPayload else { violated("virtio header") }
    return 0
}
