/// An IPv4 address held in host byte order, so comparisons and masks are plain integer operations.
public struct IPv4Address: Hashable, Comparable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    /// The address as a host-order integer: 10.0.0.1 is 0x0A000001.
    public var rawValue: UInt32

    /// Wraps a host-order integer.
    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// Builds `a.b.c.d`.
    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        rawValue = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Parses a strict dotted quad: four decimal octets 0...255, no leading zeros (which some
    /// parsers read as octal), no spaces, nothing else.
    public init?(_ description: String) {
        var value: UInt32 = 0
        var octet: UInt32 = 0
        var digits = 0
        var dots = 0
        for byte in description.utf8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                if digits == 1 && octet == 0 { return nil }
                octet = octet * 10 + UInt32(byte &- UInt8(ascii: "0"))
                digits += 1
                if octet > 255 { return nil }
            case UInt8(ascii: "."):
                guard digits > 0, dots < 3 else { return nil }
                value = value << 8 | octet
                octet = 0
                digits = 0
                dots += 1
            default:
                return nil
            }
        }
        guard dots == 3, digits > 0 else { return nil }
        self.init(rawValue: value << 8 | octet)
    }

    /// Reads four bytes in network order; the pointer need not be aligned.
    @inlinable
    public init(networkOrderBytesAt pointer: UnsafeRawPointer) {
        rawValue = UInt32(bigEndian: pointer.loadUnaligned(as: UInt32.self))
    }

    /// Writes the address as four network-order bytes; the pointer need not be aligned.
    @inlinable
    public func store(networkOrderTo pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: rawValue.bigEndian, as: UInt32.self)
    }

    /// Dotted quad, e.g. "10.244.1.5".
    public var description: String {
        "\(rawValue >> 24).\(rawValue >> 16 & 0xFF).\(rawValue >> 8 & 0xFF).\(rawValue & 0xFF)"
    }

    /// Orders addresses numerically.
    public static func < (lhs: IPv4Address, rhs: IPv4Address) -> Bool {
        lhs.rawValue < rhs.rawValue
    }
}

/// An IPv4 network in CIDR form; the network address never has host bits set.
public struct IPv4Prefix: Hashable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    /// The network address, already masked.
    public let network: IPv4Address
    /// Prefix length, 0...32.
    public let length: Int

    /// Makes a prefix from any address in it; host bits are cleared.
    public init(address: IPv4Address, length: Int) {
        precondition((0...32).contains(length), "IPv4 prefix length \(length) is outside 0...32")
        self.length = length
        network = IPv4Address(rawValue: address.rawValue & IPv4Prefix.mask(length: length))
    }

    /// Parses "10.244.1.0/24". Returns nil when malformed or when host bits are set, because a
    /// lease written with host bits usually means a typo, not a wish to mask.
    public init?(_ description: String) {
        guard let slash = description.utf8.firstIndex(of: UInt8(ascii: "/")) else { return nil }
        guard let address = IPv4Address(String(description[..<slash])) else { return nil }
        let lengthText = description.utf8[description.utf8.index(after: slash)...]
        guard (1...2).contains(lengthText.count) else { return nil }
        var length = 0
        for byte in lengthText {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
            length = length * 10 + Int(byte &- UInt8(ascii: "0"))
        }
        if lengthText.count == 2 && lengthText.first == UInt8(ascii: "0") { return nil }
        guard length <= 32 else { return nil }
        guard address.rawValue & IPv4Prefix.mask(length: length) == address.rawValue else { return nil }
        self.init(address: address, length: length)
    }

    /// Host-order netmask; /0 gives 0.
    @inlinable
    public var mask: UInt32 { IPv4Prefix.mask(length: length) }

    /// Host-order netmask for a length 0...32, with /0 handled explicitly rather than by a shift of 32.
    @inlinable
    static func mask(length: Int) -> UInt32 {
        length == 0 ? 0 : UInt32.max << UInt32(32 - length)
    }

    /// True when the address lies in this network.
    @inlinable
    public func contains(_ address: IPv4Address) -> Bool {
        address.rawValue & mask == network.rawValue
    }

    /// True when every address of `other` lies in this network.
    public func contains(_ other: IPv4Prefix) -> Bool {
        other.length >= length && contains(other.network)
    }

    /// CIDR text, e.g. "10.244.1.0/24".
    public var description: String { "\(network)/\(length)" }
}
