/// An ICMP error Weft generates about a packet it cannot forward.
public enum ICMPMessage: Equatable, Sendable {
    /// Type 11 code 0: TTL expired in transit.
    case timeExceeded
    /// Type 3 code 0: no route to the destination network.
    case netUnreachable
    /// Type 3 code 4 with the next-hop MTU in bytes 6-7 (RFC 1191).
    case fragmentationNeeded(nextHopMTU: Int)

    /// ICMP type field.
    public var type: UInt8 {
        switch self {
        case .timeExceeded: 11
        case .netUnreachable, .fragmentationNeeded: 3
        }
    }

    /// ICMP code field.
    public var code: UInt8 {
        switch self {
        case .timeExceeded, .netUnreachable: 0
        case .fragmentationNeeded: 4
        }
    }
}

/// Writes ICMP error messages and decides whether one may be sent at all.
public enum ICMPBuilder {
    /// Bytes before the quote: IPv4 header without options plus the 8-byte ICMP header.
    public static let headerBytes = 28

    /// RFC 1122 §3.2.2 / RFC 792: never about an ICMP *error* (types 3,4,5,11,12; echo requests/replies DO get answers),
    /// never about a non-first fragment, never when the source is 0.0.0.0, broadcast 255.255.255.255, multicast (224/4)
    /// or loopback (127/8), and never about a packet sent to broadcast or multicast.
    public static func mayAnswer(_ offender: UnsafeRawBufferPointer) -> Bool {
        guard offender.count >= 20, let base = offender.baseAddress else { return false }
        let header = IPv4Header(base)
        guard header.version == 4, header.headerLength >= 20 else { return false }
        guard header.fragmentOffset == 0 else { return false }
        let source = header.source.rawValue
        let sourceFirstOctet = source >> 24
        if source == 0 || source == UInt32.max || sourceFirstOctet & 0xF0 == 0xE0 || sourceFirstOctet == 127 {
            return false
        }
        let destination = header.destination.rawValue
        if destination == UInt32.max || destination >> 28 == 0xE { return false }
        if header.protocolNumber == 1 {
            // Without the type byte we cannot rule out an error message, and answering one risks a loop.
            guard header.headerLength < offender.count else { return false }
            switch base.load(fromByteOffset: header.headerLength, as: UInt8.self) {
            case 3, 4, 5, 11, 12: return false
            default: break
            }
        }
        return true
    }

    /// How many bytes of `offender` an error quotes: its IP header plus up to 8 more, never past its end.
    public static func quoteLength(of offender: UnsafeRawBufferPointer) -> Int {
        guard let base = offender.baseAddress, offender.count > 0 else { return 0 }
        let headerLength = Int(base.load(as: UInt8.self) & 0x0F) * 4
        return min(offender.count, headerLength + 8)
    }

    /// Writes a complete IPv4+ICMP error into `buffer`, returns its length (20 + 8 + quoted).
    /// IPv4: version 4, IHL 5, TOS 0, ID 0, no DF, TTL 64, protocol 1, valid header checksum, source `source`,
    /// destination = offender's source. ICMP: type/code per message, valid checksum, bytes 4-7 zero except the
    /// next-hop MTU for fragmentationNeeded; then the offender's IP header plus up to 8 following bytes that exist.
    /// `buffer` may overlap `offender`. Precondition: buffer.count >= 28 + quote length.
    public static func build(
        _ message: ICMPMessage,
        about offender: UnsafeRawBufferPointer,
        from source: IPv4Address,
        into buffer: UnsafeMutableRawBufferPointer
    ) -> Int {
        let quoteLength = quoteLength(of: offender)
        precondition(buffer.count >= headerBytes + quoteLength, "ICMP buffer too small")
        guard let out = buffer.baseAddress else { preconditionFailure("ICMP buffer has no storage") }
        // Read before moving: when building in place the quote move may overwrite the source field.
        let destination = offender.count >= 16
            ? IPv4Address(networkOrderBytesAt: offender.baseAddress! + 12)
            : IPv4Address(rawValue: 0)
        if quoteLength > 0 {
            moveBytes(from: offender.baseAddress!, to: out + headerBytes, count: quoteLength)
        }
        let totalLength = headerBytes + quoteLength

        out.storeBytes(of: 0x45, toByteOffset: 0, as: UInt8.self)
        out.storeBytes(of: 0, toByteOffset: 1, as: UInt8.self)
        out.storeBytes(of: UInt16(totalLength).bigEndian, toByteOffset: 2, as: UInt16.self)
        out.storeBytes(of: 0, toByteOffset: 4, as: UInt32.self)  // ID 0, no flags, offset 0
        out.storeBytes(of: 64, toByteOffset: 8, as: UInt8.self)
        out.storeBytes(of: 1, toByteOffset: 9, as: UInt8.self)
        out.storeBytes(of: 0, toByteOffset: 10, as: UInt16.self)
        source.store(networkOrderTo: out + 12)
        destination.store(networkOrderTo: out + 16)
        let ipChecksum = InternetChecksum.checksum(UnsafeRawBufferPointer(start: out, count: 20))
        out.storeBytes(of: ipChecksum.bigEndian, toByteOffset: 10, as: UInt16.self)

        let icmp = out + 20
        icmp.storeBytes(of: message.type, toByteOffset: 0, as: UInt8.self)
        icmp.storeBytes(of: message.code, toByteOffset: 1, as: UInt8.self)
        icmp.storeBytes(of: 0, toByteOffset: 2, as: UInt16.self)
        var nextHopMTU: UInt16 = 0
        if case .fragmentationNeeded(let mtu) = message {
            nextHopMTU = UInt16(clamping: mtu)
        }
        icmp.storeBytes(of: 0, toByteOffset: 4, as: UInt16.self)
        icmp.storeBytes(of: nextHopMTU.bigEndian, toByteOffset: 6, as: UInt16.self)
        let icmpChecksum = InternetChecksum.checksum(UnsafeRawBufferPointer(start: icmp, count: 8 + quoteLength))
        icmp.storeBytes(of: icmpChecksum.bigEndian, toByteOffset: 2, as: UInt16.self)
        return totalLength
    }

    /// memmove semantics without Glibc: copy in the direction that never reads a byte already overwritten.
    @inline(__always)
    static func moveBytes(from source: UnsafeRawPointer, to destination: UnsafeMutableRawPointer, count: Int) {
        if UnsafeRawPointer(destination) == source { return }
        if UnsafeRawPointer(destination) > source {
            var index = count - 1
            while index >= 0 {
                destination.storeBytes(of: source.load(fromByteOffset: index, as: UInt8.self), toByteOffset: index, as: UInt8.self)
                index -= 1
            }
        } else {
            for index in 0..<count {
                destination.storeBytes(of: source.load(fromByteOffset: index, as: UInt8.self), toByteOffset: index, as: UInt8.self)
            }
        }
    }
}
