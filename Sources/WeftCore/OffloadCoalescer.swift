/// Software GRO for TCP: joins consecutive inner TCP packets of one flow (received together through
/// UDP GRO) into one TUN write that the kernel segments again (TUN_F_TSO4), so the local stack
/// traverses once per batch instead of once per packet, as the kernel's own GRO would arrange.
/// Stateless: the caller keeps, for one batch, the first packet of each flow and its running total.
///
/// Use: `total = payloadLength(first)`; for each later packet, if `canAppend(first:appendedPayload:next:)`
/// then `total += payloadLength(next)` (and stop after one carrying PSH); at the end, if anything
/// was appended, write `finish(...)`'s virtio header, `first`'s headers and every payload in order.
public enum TCPCoalescer {
    /// TCP payload bytes of an IPv4 (IHL 5) TCP packet whose total length equals `packet.count`,
    /// else nil (such packets are written as they are).
    public static func payloadLength(_ packet: UnsafeRawBufferPointer) -> Int? {
        guard packet.count >= 40, let ip = packet.baseAddress else { return nil }
        let header = IPv4Header(ip)
        // IP options would have to match too; they are rare enough to leave alone, as Linux GRO does.
        guard header.version == 4, header.headerLength == 20, header.protocolNumber == 6,
              header.totalLength == packet.count,
              !header.moreFragments, header.fragmentOffset == 0
        else { return nil }
        let tcpLength = Int(ip.load(fromByteOffset: 32, as: UInt8.self) >> 4) * 4
        guard tcpLength >= 20, 20 + tcpLength <= packet.count else { return nil }
        return packet.count - 20 - tcpLength
    }

    /// Whether `next` directly continues `first` after `appendedPayload` bytes of payload, counted
    /// from first's own start (first's payload plus everything appended so far: the running total
    /// that `finish` later takes as `totalPayload`): both IPv4 (IHL 5) TCP; same addresses, ports, TCP header
    /// length and options; same TTL, TOS and DF; next.seq == first.seq + appendedPayload; same ACK
    /// number and window; first's flags exactly ACK, next's ACK or PSH|ACK (after a PSH the caller
    /// must stop); no FIN/SYN/RST/URG/CWR/ECE; `first`'s payload is the segment size, every packet
    /// appended so far was full (appendedPayload is a multiple of it) and next's payload is 1...that;
    /// the joined packet stays within 65535 bytes; and the TCP checksums verify.
    ///
    /// Checksums are verified here because the joined packet goes to the kernel as NEEDS_CSUM, which
    /// it trusts: a segment corrupted in transit would otherwise get a fresh, valid checksum.
    /// `first`'s is checked only on the first call (appendedPayload equal to its payload), so each
    /// packet is summed once.
    public static func canAppend(first: UnsafeRawBufferPointer, appendedPayload totalPayload: Int, next: UnsafeRawBufferPointer) -> Bool {
        typealias F = OffloadField
        guard let firstPayload = payloadLength(first), let nextPayload = payloadLength(next),
              firstPayload > 0, nextPayload > 0, nextPayload <= firstPayload,
              totalPayload >= firstPayload, totalPayload % firstPayload == 0,
              let a = first.baseAddress, let b = next.baseAddress
        else { return false }
        let headerLength = first.count - firstPayload
        guard headerLength == next.count - nextPayload,
              headerLength + totalPayload + nextPayload <= 65535
        else { return false }

        // IP: TOS (byte 1), DF (byte 6), TTL (8), protocol (9, both TCP already), addresses (12..<20).
        // The ID may differ: it is the field segmentation rewrites.
        guard a.load(fromByteOffset: 1, as: UInt8.self) == b.load(fromByteOffset: 1, as: UInt8.self),
              F.load16(a, F.ipFlags) & 0x4000 == F.load16(b, F.ipFlags) & 0x4000,
              a.load(fromByteOffset: 8, as: UInt8.self) == b.load(fromByteOffset: 8, as: UInt8.self),
              F.load32(a, 12) == F.load32(b, 12), F.load32(a, 16) == F.load32(b, 16)
        else { return false }

        let ta = a + 20, tb = b + 20
        let nextFlags = tb.load(fromByteOffset: F.tcpFlags, as: UInt8.self)
        // Ports (0..<4), ACK number (8..<12), data offset and reserved bits (12), window (14..<16).
        guard F.load32(ta, 0) == F.load32(tb, 0),
              F.load32(ta, 8) == F.load32(tb, 8),
              ta.load(fromByteOffset: 12, as: UInt8.self) == tb.load(fromByteOffset: 12, as: UInt8.self),
              F.load16(ta, 14) == F.load16(tb, 14),
              ta.load(fromByteOffset: F.tcpFlags, as: UInt8.self) == F.ack,
              nextFlags == F.ack || nextFlags == F.ack | F.psh,
              F.load32(tb, F.tcpSequence) == F.load32(ta, F.tcpSequence) &+ UInt32(truncatingIfNeeded: totalPayload)
        else { return false }
        // Options (timestamps above all) must be identical, or the kernel's resegmentation, which
        // copies first's header, would rewrite what the sender sent.
        let tcpLength = headerLength - 20
        if tcpLength > 20 {
            guard UnsafeRawBufferPointer(start: ta + 20, count: tcpLength - 20)
                .elementsEqual(UnsafeRawBufferPointer(start: tb + 20, count: tcpLength - 20))
            else { return false }
        }

        if totalPayload == firstPayload && !OffloadField.transportChecksumVerifies(first) { return false }
        return OffloadField.transportChecksumVerifies(next)
    }

    /// Turns `first`'s header (in place) into the header of the joined packet: IP total length =
    /// headers + totalPayload, IP checksum recomputed, TCP PSH set if `push`, TCP checksum = the
    /// pseudo-header partial sum for the joined TCP length (what NEEDS_CSUM expects, not
    /// complemented), and returns the virtio header to write before it: NEEDS_CSUM, csum_start = 20,
    /// csum_offset 16, GSO TCPv4 with gso_size = `gsoSize` and hdr_len = IP+TCP header length.
    /// `first` must be a packet `payloadLength(_:)` accepts (only its header bytes are touched).
    /// With nothing appended, write the packet as it is behind an all-zero virtio header instead.
    public static func finish(first: UnsafeMutableRawBufferPointer, totalPayload: Int, gsoSize: Int, push: Bool) -> VirtioNetHeader {
        typealias F = OffloadField
        let ip = first.baseAddress!
        let ipLength = IPv4Header(ip).headerLength
        let tcp = ip + ipLength
        let tcpLength = Int(tcp.load(fromByteOffset: 12, as: UInt8.self) >> 4) * 4
        let headerLength = ipLength + tcpLength
        precondition(headerLength <= first.count && headerLength + totalPayload <= 65535)

        F.store16(ip, F.ipTotalLength, UInt16(headerLength + totalPayload))
        F.refreshIPChecksum(ip)
        if push {
            let flags = tcp.load(fromByteOffset: F.tcpFlags, as: UInt8.self)
            tcp.storeBytes(of: flags | F.psh, toByteOffset: F.tcpFlags, as: UInt8.self)
        }
        F.store16(tcp, F.tcpChecksum, F.pseudoHeaderSum(ip, transportLength: tcpLength + totalPayload))
        return VirtioNetHeader(
            flags: VirtioNetHeader.needsChecksum, gsoType: VirtioNetHeader.gsoTCPv4,
            headerLength: UInt16(headerLength), gsoSize: UInt16(gsoSize),
            checksumStart: UInt16(ipLength), checksumOffset: UInt16(F.tcpChecksum)
        )
    }

}

/// Software GRO for UDP: joins consecutive inner UDP datagrams of one flow (a UDP flood received
/// as one UDP GRO run) into one UDP super-packet (VIRTIO_NET_HDR_GSO_UDP_L4) that the kernel cuts
/// into the same datagrams again, so the local stack routes and forwards once per run instead of
/// once per datagram. As with TCP, the IP ID is the one field the kernel's segmentation rewrites
/// (the first's, counting up).
///
/// Use as `TCPCoalescer`: `total = payloadLength(first)`; for each later packet, if
/// `canAppend(first:appendedPayload:next:)` then `total += payloadLength(next)` (and stop after a
/// shorter one); at the end, if anything was appended, write `finish(...)`'s virtio header,
/// `first`'s headers and every payload in order.
public enum UDPCoalescer {
    /// The IPv4 and UDP headers of a packet `payloadLength(_:)` accepts.
    public static let headerLength = 28

    /// UDP payload bytes of an unfragmented IPv4 (IHL 5) UDP packet whose IP total length and
    /// UDP length both match `packet.count` and that carries a UDP checksum, else nil. A
    /// datagram without a checksum (0) is left alone: segmentation would give it one.
    public static func payloadLength(_ packet: UnsafeRawBufferPointer) -> Int? {
        guard packet.count >= headerLength, let ip = packet.baseAddress else { return nil }
        let header = IPv4Header(ip)
        guard header.version == 4, header.headerLength == 20, header.protocolNumber == 17,
              header.totalLength == packet.count,
              !header.moreFragments, header.fragmentOffset == 0,
              Int(OffloadField.load16(ip, 24)) == packet.count - 20,
              OffloadField.load16(ip, 26) != 0
        else { return nil }
        return packet.count - headerLength
    }

    /// Whether `next` continues `first`'s run after `appendedPayload` bytes of payload (first's
    /// plus everything appended so far, as `TCPCoalescer.canAppend` counts): both accepted by
    /// `payloadLength(_:)`; same addresses and ports, TOS, DF and TTL; `first`'s payload is the
    /// segment size, every datagram appended so far was full and next's payload is 1...that;
    /// the joined packet stays within 65535 bytes; and the UDP checksums verify (the joined
    /// packet goes to the kernel as NEEDS_CSUM, which it trusts). `first`'s checksum is checked
    /// only on the first call.
    public static func canAppend(first: UnsafeRawBufferPointer, appendedPayload totalPayload: Int, next: UnsafeRawBufferPointer) -> Bool {
        typealias F = OffloadField
        guard let firstPayload = payloadLength(first), let nextPayload = payloadLength(next),
              firstPayload > 0, nextPayload > 0, nextPayload <= firstPayload,
              totalPayload >= firstPayload, totalPayload % firstPayload == 0,
              headerLength + totalPayload + nextPayload <= 65535,
              let a = first.baseAddress, let b = next.baseAddress
        else { return false }
        // IP: TOS (byte 1), DF (byte 6), TTL (8), addresses (12..<20); UDP ports (20..<24).
        guard a.load(fromByteOffset: 1, as: UInt8.self) == b.load(fromByteOffset: 1, as: UInt8.self),
              F.load16(a, F.ipFlags) & 0x4000 == F.load16(b, F.ipFlags) & 0x4000,
              a.load(fromByteOffset: 8, as: UInt8.self) == b.load(fromByteOffset: 8, as: UInt8.self),
              F.load32(a, 12) == F.load32(b, 12), F.load32(a, 16) == F.load32(b, 16),
              F.load32(a, 20) == F.load32(b, 20)
        else { return false }
        if totalPayload == firstPayload && !OffloadField.transportChecksumVerifies(first) { return false }
        return OffloadField.transportChecksumVerifies(next)
    }

    /// Turns `first`'s header (in place) into the joined packet's: IP total length and UDP length
    /// for `totalPayload`, IP checksum recomputed, UDP checksum = the pseudo-header partial sum
    /// (what NEEDS_CSUM expects), and returns the virtio header to write before it: NEEDS_CSUM,
    /// csum_start 20, csum_offset 6, GSO UDP_L4 with gso_size = `gsoSize` (payload bytes per
    /// datagram) and hdr_len 28. With nothing appended, write the packet as it is instead.
    public static func finish(first: UnsafeMutableRawBufferPointer, totalPayload: Int, gsoSize: Int) -> VirtioNetHeader {
        typealias F = OffloadField
        let ip = first.baseAddress!
        precondition(first.count >= headerLength && headerLength + totalPayload <= 65535)
        F.store16(ip, F.ipTotalLength, UInt16(headerLength + totalPayload))
        F.refreshIPChecksum(ip)
        F.store16(ip, 24, UInt16(8 + totalPayload))
        F.store16(ip, 26, F.pseudoHeaderSum(ip, transportLength: 8 + totalPayload))
        return VirtioNetHeader(
            flags: VirtioNetHeader.needsChecksum, gsoType: VirtioNetHeader.gsoUDPL4,
            headerLength: UInt16(headerLength), gsoSize: UInt16(gsoSize),
            checksumStart: 20, checksumOffset: 6
        )
    }
}
