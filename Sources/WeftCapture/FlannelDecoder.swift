import WeftCore

/// What a captured datagram is, measured against flannel's udp backend wire format: one UDP
/// datagram, source port = destination port, carries exactly one complete inner IPv4 packet.
public enum Verdict: String, CaseIterable, Sendable, Comparable {
    /// One well-formed inner IPv4 packet, ports equal.
    case valid
    /// On the port, but source port ≠ destination port.
    case portMismatch
    /// The payload is not an IPv4 packet (IPv6, another version, a bad header length, under 20 bytes).
    case notIPv4Payload
    /// The inner IPv4 header checksum is wrong.
    case badInnerChecksum
    /// Inner total length ≠ UDP payload length (also two packets in one datagram).
    case lengthMismatch
    /// Cut by the snap length, or shorter than its own headers say.
    case truncated
    /// Not UDP over IPv4 (not counted as a violation).
    case notUDP
    /// UDP on another port (not counted as a violation).
    case otherPort

    /// True for the verdicts that break the wire format; `notUDP` and `otherPort` are other traffic.
    public var isViolation: Bool {
        switch self {
        case .valid, .notUDP, .otherPort: false
        default: true
        }
    }

    public static func < (lhs: Verdict, rhs: Verdict) -> Bool { lhs.index < rhs.index }

    /// The position in `allCases`.
    var index: Int {
        switch self {
        case .valid: 0
        case .portMismatch: 1
        case .notIPv4Payload: 2
        case .badInnerChecksum: 3
        case .lengthMismatch: 4
        case .truncated: 5
        case .notUDP: 6
        case .otherPort: 7
        }
    }
}

/// The link types Weft decodes, as `pcap_datalink` reports them.
public enum LinkType {
    /// DLT_EN10MB: Ethernet.
    public static let ethernet: Int32 = 1
    /// DLT_RAW as libpcap defines it on Linux (written to files as LINKTYPE_RAW 101).
    public static let raw: Int32 = 12
    /// DLT_RAW on OpenBSD.
    public static let rawOpenBSD: Int32 = 14
    /// LINKTYPE_RAW, as some readers report it.
    public static let linktypeRaw: Int32 = 101
    /// DLT_LINUX_SLL ("any" device, cooked v1).
    public static let linuxSLL: Int32 = 113
    /// DLT_LINUX_SLL2 (cooked v2).
    public static let linuxSLL2: Int32 = 276

    /// True when `decode` understands `linkType`.
    public static func isSupported(_ linkType: Int32) -> Bool {
        [ethernet, raw, rawOpenBSD, linktypeRaw, linuxSLL, linuxSLL2].contains(linkType)
    }

    /// Names for messages.
    public static let supportedNames = "EN10MB, RAW, LINUX_SLL, LINUX_SLL2"
}

/// The fields of one decoded frame. Addresses and lengths are those the capture holds; inner
/// fields are nil when the payload has no readable IPv4 header.
public struct FlannelDatagram: Sendable, Equatable {
    public var verdict: Verdict
    /// The outer IPv4 header's protocol (17 for flannel-udp; a pod packet's own on the TUN).
    public var outerProtocol: UInt8?
    public var outerSource: IPv4Address?
    public var outerDestination: IPv4Address?
    public var sourcePort: UInt16?
    public var destinationPort: UInt16?
    /// UDP payload length from the UDP length field.
    public var payloadLength: Int?
    public var innerProtocol: UInt8?
    public var innerSource: IPv4Address?
    public var innerDestination: IPv4Address?
    public var innerTotalLength: Int?
    public var innerTTL: UInt8?
    /// Where the inner packet lies in the frame (set for `.valid` only); for a super-frame, all
    /// of its inner packets, `segmentSize` bytes each but the last.
    public var innerRange: Range<Int>?
    /// Datagrams this frame stands for: 1, or n for a GSO/GRO super-frame.
    public var segments = 1
    /// The datagram size the kernel cuts a super-frame at (nil for a plain datagram).
    public var segmentSize: Int?

    init(_ verdict: Verdict) { self.verdict = verdict }

    /// The inner packets' ranges in the frame: one, or each segment of a super-frame.
    public var innerPacketRanges: [Range<Int>] {
        guard let range = innerRange else { return [] }
        guard let size = segmentSize else { return [range] }
        return stride(from: range.lowerBound, to: range.upperBound, by: size).map { $0 ..< min($0 + size, range.upperBound) }
    }
}

/// Decodes a link-layer frame into a flannel-udp datagram and judges it. No allocation.
public enum FlannelDecoder {
    /// `frame` holds the captured bytes; `wireLength` is the length on the wire (pcap's `len`).
    /// `mtu` is the link's MTU: an outer packet longer than that can only be a GSO/GRO
    /// super-frame (a capture taps the stack before the kernel or NIC cuts it, and after GRO
    /// merges), which is judged as the datagrams it will be cut into.
    public static func decode(_ frame: UnsafeRawBufferPointer, wireLength: Int, linkType: Int32, port: UInt16,
                              mtu: Int = defaultMTU) -> FlannelDatagram {
        guard let ipOffset = networkOffset(frame, linkType: linkType) else { return FlannelDatagram(.notUDP) }
        if ipOffset < 0 { return FlannelDatagram(.truncated) }
        let packet = UnsafeRawBufferPointer(rebasing: frame[ipOffset...])
        let cut = frame.count < wireLength
        return decodeIPv4(packet, cut: cut, frameOffset: ipOffset, port: port, mtu: mtu)
    }

    /// Ethernet's MTU, for files (a pcap does not record it).
    public static let defaultMTU = 1500

    /// Offset of the network header; -1 when the link header itself is cut; nil when the frame
    /// does not carry IPv4 (or the link type is not supported).
    static func networkOffset(_ frame: UnsafeRawBufferPointer, linkType: Int32) -> Int? {
        func be16(_ offset: Int) -> UInt16 { UInt16(frame[offset]) << 8 | UInt16(frame[offset + 1]) }
        switch linkType {
        case LinkType.ethernet:
            guard frame.count >= 14 else { return -1 }
            var offset = 12
            var type = be16(offset)
            // At most two VLAN tags (802.1Q, 802.1ad).
            while type == 0x8100 || type == 0x88A8, offset < 20 {
                guard frame.count >= offset + 6 else { return -1 }
                offset += 4
                type = be16(offset)
            }
            return type == 0x0800 ? offset + 2 : nil
        case LinkType.raw, LinkType.rawOpenBSD, LinkType.linktypeRaw:
            guard frame.count >= 1 else { return -1 }
            return frame[0] >> 4 == 4 ? 0 : nil
        case LinkType.linuxSLL:
            guard frame.count >= 16 else { return -1 }
            return be16(14) == 0x0800 ? 16 : nil
        case LinkType.linuxSLL2:
            guard frame.count >= 20 else { return -1 }
            return be16(0) == 0x0800 ? 20 : nil
        default:
            return nil
        }
    }

    /// Judges an outer IPv4 packet. `cut` says the capture holds less than the wire had.
    public static func decodeIPv4(_ packet: UnsafeRawBufferPointer, cut: Bool, frameOffset: Int = 0, port: UInt16,
                                  mtu: Int = defaultMTU) -> FlannelDatagram {
        guard packet.count >= 20, let base = packet.baseAddress else { return FlannelDatagram(.truncated) }
        let outer = IPv4Header(base)
        guard outer.version == 4 else { return FlannelDatagram(.notUDP) }
        var result = FlannelDatagram(.valid)
        result.outerProtocol = outer.protocolNumber
        result.outerSource = outer.source
        result.outerDestination = outer.destination
        // Not UDP, or a later fragment without a UDP header: other traffic (e.g. on the TUN).
        guard outer.protocolNumber == 17, outer.fragmentOffset == 0 else {
            result.verdict = .notUDP
            return result
        }
        let ihl = outer.headerLength
        guard ihl >= 20, packet.count >= ihl + 8 else {
            result.verdict = .truncated
            return result
        }
        func be16(_ offset: Int) -> UInt16 { UInt16(packet[offset]) << 8 | UInt16(packet[offset + 1]) }
        let sourcePort = be16(ihl)
        let destinationPort = be16(ihl + 2)
        let udpLength = Int(be16(ihl + 4))
        result.sourcePort = sourcePort
        result.destinationPort = destinationPort
        guard sourcePort == port || destinationPort == port else {
            result.verdict = .otherPort
            return result
        }
        result.payloadLength = max(udpLength - 8, 0)
        // The inner header, for display, as far as the capture holds it.
        let payloadStart = ihl + 8
        let available = packet.count - payloadStart
        if available >= 20, packet[payloadStart] >> 4 == 4 {
            let inner = IPv4Header(base + payloadStart)
            result.innerProtocol = inner.protocolNumber
            result.innerSource = inner.source
            result.innerDestination = inner.destination
            result.innerTotalLength = inner.totalLength
            result.innerTTL = inner.ttl
        }
        guard sourcePort == destinationPort else {
            result.verdict = .portMismatch
            return result
        }
        // The UDP length must fit the outer packet; a capture that holds less than that is cut.
        guard udpLength >= 8, ihl + udpLength <= outer.totalLength else {
            result.verdict = .lengthMismatch
            return result
        }
        guard !cut, packet.count >= ihl + udpLength else {
            result.verdict = .truncated
            return result
        }
        let payload = UnsafeRawBufferPointer(start: base + payloadStart, count: udpLength - 8)
        if outer.totalLength > mtu, let size = superFrameSegmentSize(payload) {
            result.segmentSize = size
            result.segments = (payload.count + size - 1) / size
            result.innerRange = frameOffset + payloadStart ..< frameOffset + payloadStart + payload.count
            return result
        }
        switch IPv4Header.validate(payload) {
        case nil:
            result.innerRange = frameOffset + payloadStart ..< frameOffset + payloadStart + payload.count
        case .badTotalLength?:
            result.verdict = .lengthMismatch
        case .badChecksum?:
            result.verdict = .badInnerChecksum
        default:
            result.verdict = .notIPv4Payload
        }
        return result
    }

    /// The segment size when `payload` is what UDP GSO/GRO makes of several flannel datagrams:
    /// valid IPv4 packets of one size back to back, the last possibly shorter; else nil.
    static func superFrameSegmentSize(_ payload: UnsafeRawBufferPointer) -> Int? {
        guard payload.count >= 20, let base = payload.baseAddress else { return nil }
        let size = IPv4Header(base).totalLength
        guard size >= 20, size < payload.count else { return nil }
        var offset = 0
        while offset < payload.count {
            let length = min(size, payload.count - offset)
            let segment = UnsafeRawBufferPointer(start: base + offset, count: length)
            guard IPv4Header.validate(segment) == nil else { return nil }
            offset += length
        }
        return size
    }
}
