import WeftCore

/// One node's claim on a subnet, as flanneld stores it: key `<prefix>/subnets/10.244.1.0-24`,
/// value `{"PublicIP":"198.18.0.1","PublicIPv6":null}`, and an expiry from the store's TTL.
public struct SubnetLease: Sendable, Equatable {
    /// The node's overlay subnet.
    public var subnet: IPv4Prefix
    /// Where the node receives udp-encapsulated packets.
    public var publicIP: IPv4Address
    /// Absolute expiry in seconds since 1970; nil for a lease that never expires (a reservation).
    public var expiration: Double?

    /// Makes a lease; `expiration` nil means it never expires.
    public init(subnet: IPv4Prefix, publicIP: IPv4Address, expiration: Double? = nil) {
        self.subnet = subnet
        self.publicIP = publicIP
        self.expiration = expiration
    }

    /// flanneld's key for a lease: `<prefix>/subnets/<a.b.c.d>-<len>`. Trailing slashes of the
    /// prefix are dropped, as Go's `path.Join` does, so "/coreos.com/network/" gives the same key.
    public static func key(for subnet: IPv4Prefix, prefix: String) -> String {
        var base = Substring(prefix)
        while base.hasSuffix("/") { base = base.dropLast() }
        return "\(base)/subnets/\(subnet.network)-\(subnet.length)"
    }

    /// The subnet named by a lease key, matched as flanneld's `subnetRegex` does: anchored at the
    /// end, `<a.b.c.d>-<len>` optionally followed by a dual-stack `&<v6>-<len>` that udp ignores.
    /// Returns nil for keys flanneld would not parse and for keys whose address has host bits,
    /// which would otherwise be renewed or deleted under a different key.
    public static func subnet(fromKey key: String) -> IPv4Prefix? {
        // Same pattern as flanneld: only the first dot is escaped; `\d` is ASCII only in Go.
        let pattern = #/(\d+\.\d+.\d+.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$/#
            .asciiOnlyDigits()
            .matchingSemantics(.unicodeScalar)
        guard let match = key.firstMatch(of: pattern) else { return nil }
        guard let address = IPv4Address(String(match.output.1)) else { return nil }
        guard let length = Int(match.output.2), length <= 32 else { return nil }
        let subnet = IPv4Prefix(address: address, length: length)
        return subnet.network == address ? subnet : nil
    }

    /// The lease value flanneld v0.14+ writes for a udp node, byte for byte:
    /// `{"PublicIP":"198.18.0.1","PublicIPv6":null}`, no spaces, no newline.
    public static func encodeValue(publicIP: IPv4Address) -> [UInt8] {
        Array(#"{"PublicIP":"\#(publicIP)","PublicIPv6":null}"#.utf8)
    }

    /// Reads a lease value written by any flanneld (v0.13's `{"PublicIP":"…"}`, v0.14+'s form
    /// with `PublicIPv6`, other backends' `BackendType`/`BackendData`) or by Weft.
    public static func decodeValue(_ bytes: [UInt8]) throws(LeaseValueError) -> LeaseAttributes {
        let fields: JSONFields
        switch JSONFields.decode(bytes, names: ["PublicIP", "BackendType"]) {
        case .success(let decoded): fields = decoded
        case .failure(.notJSON): throw .notJSON
        case .failure(.notAnObject): throw .notAnObject
        case .failure(.tooLarge(let size)): throw .tooLarge(bytes: size)
        case .failure(.tooDeep): throw .tooDeep
        }
        guard case .string(let publicIPText)? = fields["PublicIP"] else {
            throw .missingPublicIP
        }
        guard let publicIP = IPv4Address(publicIPText) else { throw .invalidPublicIP(publicIPText) }
        var backendType: String?
        switch fields["BackendType"] {
        case nil, .null?: break
        case .string(let type)?: backendType = type.isEmpty ? nil : type
        case _?: throw .wrongBackendType
        }
        return LeaseAttributes(publicIP: publicIP, backendType: backendType)
    }
}

/// What a lease value says about its node.
public struct LeaseAttributes: Sendable, Equatable {
    /// Where the node receives udp-encapsulated packets.
    public var publicIP: IPv4Address
    /// The peer's backend when it says so; flanneld's udp backend never sets it, so nil usually
    /// means udp and anything else (e.g. "vxlan") is a peer Weft cannot reach.
    public var backendType: String?

    /// Makes attributes; `backendType` nil means the value did not name one.
    public init(publicIP: IPv4Address, backendType: String? = nil) {
        self.publicIP = publicIP
        self.backendType = backendType
    }
}

/// Why a lease value could not be read.
public enum LeaseValueError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bytes are not JSON.
    case notJSON
    /// The JSON is not an object.
    case notAnObject
    /// No string `PublicIP` field.
    case missingPublicIP
    /// `PublicIP` is not a dotted quad.
    case invalidPublicIP(String)
    /// `BackendType` is present but not a string.
    case wrongBackendType
    /// The value is longer than any lease needs (`JSONFields.maxBytes`).
    case tooLarge(bytes: Int)
    /// The value nests arrays or objects deeper than `JSONFields.maxDepth`.
    case tooDeep

    public var description: String {
        switch self {
        case .notJSON: return "lease value: not valid JSON"
        case .notAnObject: return "lease value: must be a JSON object"
        case .missingPublicIP: return "lease value: PublicIP string is missing"
        case .invalidPublicIP(let text): return "lease value: PublicIP \"\(text)\" is not an IPv4 address"
        case .wrongBackendType: return "lease value: BackendType must be a string"
        case .tooLarge(let bytes): return "lease value: \(bytes) bytes is more than the \(JSONFields.maxBytes) a lease may have"
        case .tooDeep: return "lease value: nests arrays or objects deeper than \(JSONFields.maxDepth) levels"
        }
    }
}
