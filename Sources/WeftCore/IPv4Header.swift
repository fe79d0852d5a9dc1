/// Read-only accessors over an IPv4 header at `base` (caller validated length first).
public struct IPv4Header {
    /// Start of the header.
    public let base: UnsafeRawPointer

    /// Wraps the header at `base`; nothing is read until an accessor is used.
    @inlinable
    public init(_ base: UnsafeRawPointer) {
        self.base = base
    }

    @inlinable
    func byte(_ offset: Int) -> UInt8 {
        base.load(fromByteOffset: offset, as: UInt8.self)
    }

    @inlinable
    func bigEndian16(_ offset: Int) -> UInt16 {
        UInt16(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    /// IP version nibble.
    @inlinable public var version: Int { Int(byte(0) >> 4) }
    /// Header length in bytes (IHL × 4).
    @inlinable public var headerLength: Int { Int(byte(0) & 0x0F) * 4 }
    /// Total length field.
    @inlinable public var totalLength: Int { Int(bigEndian16(2)) }
    /// Time to live.
    @inlinable public var ttl: UInt8 { byte(8) }
    /// Payload protocol (1 is ICMP).
    @inlinable public var protocolNumber: UInt8 { byte(9) }
    /// The DF flag.
    @inlinable public var dontFragment: Bool { bigEndian16(6) & 0x4000 != 0 }
    /// The MF flag.
    @inlinable public var moreFragments: Bool { bigEndian16(6) & 0x2000 != 0 }
    /// Fragment offset in bytes.
    @inlinable public var fragmentOffset: Int { Int(bigEndian16(6) & 0x1FFF) * 8 }
    /// Source address.
    @inlinable public var source: IPv4Address { IPv4Address(networkOrderBytesAt: base + 12) }
    /// Destination address.
    @inlinable public var destination: IPv4Address { IPv4Address(networkOrderBytesAt: base + 16) }
    /// Header checksum as read big-endian.
    @inlinable public var checksum: UInt16 { bigEndian16(10) }

    /// nil when `packet` (exactly the received bytes) is one well-formed IPv4 packet:
    /// count < 20 → .tooShort; version 6 → .ipv6; version != 4 → .notIPv4; IHL < 5 or IHL*4 > count → .badHeaderLength;
    /// totalLength != count → .badTotalLength; header checksum wrong → .badChecksum.
    public static func validate(_ packet: UnsafeRawBufferPointer) -> DropReason? {
        guard packet.count >= 20, let base = packet.baseAddress else { return .tooShort }
        let header = IPv4Header(base)
        switch header.version {
        case 4: break
        case 6: return .ipv6
        default: return .notIPv4
        }
        let headerLength = header.headerLength
        guard headerLength >= 20, headerLength <= packet.count else { return .badHeaderLength }
        // Bytes beyond totalLength would be forwarded as garbage, and fewer mean a cut packet.
        guard header.totalLength == packet.count else { return .badTotalLength }
        let headerBytes = UnsafeRawBufferPointer(start: base, count: headerLength)
        guard InternetChecksum.checksum(headerBytes) == 0 else { return .badChecksum }
        return nil
    }
}

/// The RFC 1071 Internet checksum.
public enum InternetChecksum {
    /// RFC 1071 one's-complement sum, returned ready to store (network-order value as UInt16 as read big-endian).
    /// Over bytes that already contain a correct checksum it returns 0.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt16 {
        ~partialSum(bytes)
    }

    /// The folded one's-complement sum of `bytes` plus `initial`, not complemented. Offloads need it
    /// uncomplemented: a checksum over several pieces (pseudo-header, header, payload left in place)
    /// is the complement of the combined partial sums, and a NEEDS_CSUM field holds such a sum.
    /// Each piece must start at an even offset of the whole it belongs to.
    public static func partialSum(_ bytes: UnsafeRawBufferPointer, initial: UInt16 = 0) -> UInt16 {
        guard let base = bytes.baseAddress else { return initial }
        // The one's-complement sum does not depend on byte order (RFC 1071 §2(B)): sum the bytes as
        // native 32-bit words, which the CPU loads directly, and convert the folded result once
        // (`.bigEndian` swaps on little-endian hosts, and is the identity on big-endian ones). A 64-bit accumulator of 32-bit words cannot overflow below 16 GiB. This
        // loop touches every payload byte of a segmented or joined super-packet, so it matters.
        var sum = UInt64(initial.bigEndian)
        var offset = 0
        let count = bytes.count
        // 32 bytes a step in vector registers: each 32-bit word is split into its two 16-bit
        // halves, so a lane gains at most 2 × 0xFFFF a step and cannot overflow within
        // `stepsPerFlush` steps; then the lanes are added into the 64-bit sum. This runs over
        // every payload byte twice per forwarded TCP super-packet (segments' sums on send, the
        // check before joining on receive), so it is the widest loop here.
        let stepsPerFlush = 1 << 15
        while offset + 32 <= count {
            var lanes = SIMD8<UInt32>(repeating: 0)
            let end = offset + 32 * min(stepsPerFlush, (count - offset) / 32)
            while offset < end {
                let words = base.loadUnaligned(fromByteOffset: offset, as: SIMD8<UInt32>.self)
                lanes &+= (words & 0xFFFF) &+ (words &>> 16)
                offset += 32
            }
            for lane in 0..<8 { sum &+= UInt64(lanes[lane]) }
        }
        var second: UInt64 = 0
        while offset + 16 <= count {
            sum &+= UInt64(base.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            second &+= UInt64(base.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
            sum &+= UInt64(base.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self))
            second &+= UInt64(base.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
            offset += 16
        }
        sum &+= second
        while offset + 2 <= count {
            sum &+= UInt64(base.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
            offset += 2
        }
        if offset < count {
            // A lone last byte is the high byte of a big-endian word.
            sum &+= UInt64((UInt16(base.load(fromByteOffset: offset, as: UInt8.self)) << 8).bigEndian)
        }
        while sum > 0xFFFF {
            sum = (sum & 0xFFFF) &+ (sum >> 16)
        }
        return UInt16(truncatingIfNeeded: sum).bigEndian
    }

    /// One's-complement addition of two partial sums (end-around carry), as RFC 1071 combines pieces.
    @inlinable
    public static func combine(_ a: UInt16, _ b: UInt16) -> UInt16 {
        let sum = UInt32(a) + UInt32(b)
        return UInt16(truncatingIfNeeded: (sum & 0xFFFF) + (sum >> 16))
    }
}

/// flannel's TTL rule: decrement by one and patch the header checksum incrementally, byte-exact with flannel's proxy (its incremental update: network checksum value v becomes v one's-complement-plus 0x0100, except 0xFEFF becomes 0x0000).
public enum TTLRule {
    /// Returns false and leaves the packet untouched when TTL is 0 or 1 (expired; flannel wraps 0 to 255 — we don't).
    @inlinable
    public static func decrement(_ header: UnsafeMutableRawPointer) -> Bool {
        let ttl = header.load(fromByteOffset: 8, as: UInt8.self)
        guard ttl > 1 else { return false }
        header.storeBytes(of: ttl - 1, toByteOffset: 8, as: UInt8.self)
        let checksum = UInt16(bigEndian: header.loadUnaligned(fromByteOffset: 10, as: UInt16.self))
        header.storeBytes(of: patchedChecksum(checksum).bigEndian, toByteOffset: 10, as: UInt16.self)
        return true
    }

    /// The flannel-exact checksum after the decrement, given the checksum as a big-endian (network) value.
    @inlinable
    public static func patchedChecksum(_ checksum: UInt16) -> UInt16 {
        // flannel adds to the little-endian view and carries by adding 2 at 0xFFFE/0xFFFF; that is
        // the one's-complement +0x0100 below, except it yields 0x0000 (not 0xFFFF) for 0xFEFF.
        if checksum == 0xFEFF { return 0 }
        let sum = UInt32(checksum) + 0x0100
        return UInt16(truncatingIfNeeded: (sum & 0xFFFF) + (sum >> 16))
    }
}
