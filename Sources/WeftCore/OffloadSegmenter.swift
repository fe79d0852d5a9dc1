/// One inner packet cut from a super-packet: a header built in scratch space plus a payload slice
/// left in place, so the caller can hand both to one iovec pair without copying payload.
public struct TCPSegment: Equatable, Sendable {
    /// Offset of this segment's IPv4+TCP header in the `headers` scratch.
    public var headerOffset: Int
    /// Bytes of that header (IP header + TCP header, options included).
    public var headerLength: Int
    /// Offset of this segment's payload in the super-packet.
    public var payloadOffset: Int
    /// Bytes of payload.
    public var payloadLength: Int

    public init(headerOffset: Int, headerLength: Int, payloadOffset: Int, payloadLength: Int) {
        self.headerOffset = headerOffset
        self.headerLength = headerLength
        self.payloadOffset = payloadOffset
        self.payloadLength = payloadLength
    }
}

/// Software TSO: what the kernel's tcp_gso_segment does, done here because a flannel peer needs
/// each datagram to be one complete inner packet with finished checksums.
public enum TCPSegmenter {
    /// Where segment `index`'s header goes in the scratch: 64-byte strides keep each header on its
    /// own cache line(s) and let the caller size the scratch as `capacity * headerStride(60 + 60)`.
    @inlinable
    public static func headerStride(_ headerLength: Int) -> Int {
        (headerLength + 63) & ~63
    }

    /// Cuts an IPv4/TCP super-packet into packets of at most `gsoSize` payload bytes (all equal but
    /// the last, as UDP GSO requires).
    ///
    /// For each segment writes a complete IPv4+TCP header into `headers` at i × stride (stride =
    /// ``headerStride(_:)`` of the header length): IP total length, IP ID = first ID + i, DF and IP
    /// options kept, IPv4 header checksum recomputed; TCP sequence = first + offset, FIN/PSH only on
    /// the last segment, CWR only on the first, TCP checksum fully computed (pseudo-header + header +
    /// that payload slice, read in place). TTL unchanged: the caller applies its TTL rule per header.
    ///
    /// The incoming TCP checksum is ignored (with NEEDS_CSUM it is only a pseudo-header sum), and so
    /// is the incoming IP checksum (every header is rebuilt).
    ///
    /// Returns the number of segments written, or nil when the packet is not segmentable: not IPv4,
    /// not TCP, a fragment, total length != packet.count, header lengths inconsistent, gsoSize <= 0,
    /// or more segments than `segments` or `headers` can hold.
    public static func segment(
        _ packet: UnsafeRawBufferPointer, gsoSize: Int,
        headers: UnsafeMutableRawBufferPointer, segments: UnsafeMutableBufferPointer<TCPSegment>
    ) -> Int? {
        typealias F = OffloadField
        guard gsoSize > 0, packet.count >= 40, let ip = packet.baseAddress else { return nil }
        let header = IPv4Header(ip)
        let ipLength = header.headerLength
        guard header.version == 4, ipLength >= 20, header.protocolNumber == 6,
              header.totalLength == packet.count,
              !header.moreFragments, header.fragmentOffset == 0,
              ipLength + 20 <= packet.count
        else { return nil }
        let tcpLength = Int(ip.load(fromByteOffset: ipLength + 12, as: UInt8.self) >> 4) * 4
        let headerLength = ipLength + tcpLength
        guard tcpLength >= 20, headerLength <= packet.count else { return nil }

        let payloadLength = packet.count - headerLength
        // Even an empty payload yields one packet: a bare ACK/FIN still has to be sent.
        let count = max(1, (payloadLength + gsoSize - 1) / gsoSize)
        let stride = headerStride(headerLength)
        guard count <= segments.count, count * stride <= headers.count,
              let scratch = headers.baseAddress, let out = segments.baseAddress
        else { return nil }

        let firstID = F.load16(ip, F.ipID)
        let firstSequence = F.load32(ip, ipLength + F.tcpSequence)
        let originalFlags = ip.load(fromByteOffset: ipLength + F.tcpFlags, as: UInt8.self)

        for index in 0..<count {
            let payloadOffset = headerLength + index * gsoSize
            let length = min(gsoSize, payloadLength - index * gsoSize)
            let segmentIP = scratch + index * stride
            let tcp = segmentIP + ipLength
            // Only headers are copied; the payload slice stays where the TUN read put it.
            segmentIP.copyMemory(from: ip, byteCount: headerLength)

            F.store16(segmentIP, F.ipTotalLength, UInt16(headerLength + length))
            F.store16(segmentIP, F.ipID, firstID &+ UInt16(truncatingIfNeeded: index))
            F.refreshIPChecksum(segmentIP)

            F.store32(tcp, F.tcpSequence, firstSequence &+ UInt32(truncatingIfNeeded: index * gsoSize))
            var flags = originalFlags
            // As tcp_gso_segment: FIN and PSH belong to the end of the data, CWR to its start.
            if index != count - 1 { flags &= ~(F.fin | F.psh) }
            if index != 0 { flags &= ~F.cwr }
            tcp.storeBytes(of: flags, toByteOffset: F.tcpFlags, as: UInt8.self)

            F.store16(tcp, F.tcpChecksum, 0)
            var sum = F.pseudoHeaderSum(segmentIP, transportLength: tcpLength + length)
            sum = InternetChecksum.partialSum(UnsafeRawBufferPointer(start: tcp, count: tcpLength), initial: sum)
            // The slice starts at an even offset of the segment (the TCP header is a multiple of 4),
            // so summing it on its own is valid even when gsoSize is odd.
            sum = InternetChecksum.partialSum(UnsafeRawBufferPointer(start: ip + payloadOffset, count: length), initial: sum)
            F.store16(tcp, F.tcpChecksum, ~sum)

            out[index] = TCPSegment(
                headerOffset: index * stride, headerLength: headerLength,
                payloadOffset: payloadOffset, payloadLength: length
            )
        }
        return count
    }
}
