import Foundation
import WeftCore

/// flannel's network config, the JSON stored at `<prefix>/config` (or kube's `net-conf.json`),
/// with flanneld's defaults applied and `CheckNetworkConfig`'s rules enforced, so a Weft node and
/// a flanneld node reading the same config carve the same subnets.
/// Example: `{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}`.
public struct NetworkConfig: Sendable, Equatable {
    /// flannel's udp backend port when `Backend.Port` is absent.
    public static let defaultUDPPort: UInt16 = 8285

    /// The whole overlay network (`Network`).
    public let network: IPv4Prefix
    /// Prefix length of each node's subnet (`SubnetLen`).
    public let subnetLength: Int
    /// Network address of the lowest subnet a node may take (`SubnetMin`).
    public let subnetMin: IPv4Address
    /// Network address of the highest subnet a node may take (`SubnetMax`).
    public let subnetMax: IPv4Address
    /// `Backend.Type`, lower-cased; always "udp", the only backend Weft implements.
    public let backendType: String
    /// `Backend.Port`: the UDP port every node listens on and sends to.
    public let port: UInt16
    /// `EnableNFTables`: masquerade and forward rules go into nftables instead of iptables.
    public let enableNFTables: Bool

    /// Builds a config from already-typed values, applying flanneld's defaults to whatever is nil
    /// and the same checks as `parse`.
    public init(
        network: IPv4Prefix, subnetLength: Int? = nil, subnetMin: IPv4Address? = nil,
        subnetMax: IPv4Address? = nil, port: UInt16 = NetworkConfig.defaultUDPPort, enableNFTables: Bool = false
    ) throws(NetworkConfigError) {
        // A /29 or longer cannot hold four /30s, the smallest useful split once the first subnet
        // is skipped; flanneld refuses it for the default SubnetLen and no explicit one fits.
        guard network.length <= 28 else { throw .networkTooSmall(network) }
        let length = subnetLength ?? (network.length <= 22 ? 24 : network.length + 2)
        // Each subnet needs room for the tunnel address plus at least one host.
        guard length <= 30 else { throw .subnetLengthTooLong(length) }
        // At least four subnets, because the first one is never handed out.
        guard length >= network.length + 2 else { throw .subnetLengthTooShort(length, network: network) }

        let subnetSize = UInt64(1) << UInt64(32 - length)
        let networkStart = UInt64(network.network.rawValue)
        let networkEnd = networkStart + (UInt64(1) << UInt64(32 - network.length))  // one past the last address
        // The first subnet is skipped: its network address equals Network's, which confuses
        // tools that treat it as the whole network's address.
        let min = subnetMin ?? IPv4Address(rawValue: UInt32(networkStart + subnetSize))
        let max = subnetMax ?? IPv4Address(rawValue: UInt32(networkEnd - subnetSize))
        let mask = UInt32(truncatingIfNeeded: UInt64(UInt32.max) << UInt64(32 - length))
        for (field, bound) in [("SubnetMin", min), ("SubnetMax", max)] {
            guard network.contains(bound) else { throw .subnetBoundOutsideNetwork(field: field, bound, network: network) }
            guard bound.rawValue & mask == bound.rawValue else {
                throw .subnetBoundNotAligned(field: field, bound, subnetLength: length)
            }
        }
        guard min <= max else { throw .subnetMinAboveMax(min, max) }
        guard port != 0 else { throw .invalidPort(0) }

        self.network = network
        self.subnetLength = length
        self.subnetMin = min
        self.subnetMax = max
        self.backendType = "udp"
        self.port = port
        self.enableNFTables = enableNFTables
    }

    /// The net config `weft run --network` writes into an empty registry, in flanneld's format
    /// (`{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}`); a `port` goes into `Backend`, so
    /// every node that joins later uses it.
    public static func initialValue(network: IPv4Prefix, port: UInt16?) -> [UInt8] {
        let backend = port.map { #"{"Type":"udp","Port":\#($0)}"# } ?? #"{"Type":"udp"}"#
        return Array(#"{"Network":"\#(network)","Backend":\#(backend)}"#.utf8)
    }

    /// Parses flannel's net config JSON. Unknown keys are ignored and key names match
    /// case-insensitively, both as Go's encoding/json does for flanneld. `SubnetLen` 0 and
    /// `SubnetMin`/`SubnetMax` "0.0.0.0" mean "use the default", as in flanneld.
    public static func parse(_ json: some Collection<UInt8>) throws(NetworkConfigError) -> NetworkConfig {
        let fields: JSONFields
        switch JSONFields.decode(json, names: ["EnableIPv4", "EnableIPv6", "EnableNFTables", "Network", "SubnetLen", "SubnetMin", "SubnetMax", "Backend"],
                                 nested: ["Backend": ["Type", "Port"]]) {
        case .success(let decoded): fields = decoded
        case .failure(.notJSON): throw .notJSON
        case .failure(.notAnObject): throw .notAnObject
        case .failure(.tooLarge(let size)): throw .tooLarge(bytes: size)
        case .failure(.tooDeep): throw .tooDeep
        }

        // Weft's data path is the udp backend, which carries IPv4 only.
        if try boolField("EnableIPv4", in: fields) == false { throw .ipv4Disabled }
        if try boolField("EnableIPv6", in: fields) == true { throw .ipv6Unsupported }

        guard let networkText = try stringField("Network", in: fields) else { throw .missingNetwork }
        guard let network = parseCIDR(networkText) else { throw .invalidNetwork(networkText) }

        var subnetLength: Int?
        if let length = try integerField("SubnetLen", in: fields), length != 0 { subnetLength = length }
        let subnetMin = try addressField("SubnetMin", in: fields)
        let subnetMax = try addressField("SubnetMax", in: fields)

        var port = defaultUDPPort
        switch fields["Backend"] {
        case nil, .null?:
            break  // flanneld's default backend is udp
        case .object(let backend)?:
            let type = try stringField("Backend.Type", key: "Type", in: backend) ?? ""
            // flanneld lower-cases the type and treats an empty one as udp.
            guard type.isEmpty || type.lowercased() == "udp" else { throw .unsupportedBackend(type) }
            if let requested = try integerField("Backend.Port", key: "Port", in: backend) {
                guard (1...65535).contains(requested) else { throw .invalidPort(requested) }
                port = UInt16(requested)
            }
        case _?:
            throw .wrongType(field: "Backend", expected: "an object")
        }

        return try NetworkConfig(
            network: network, subnetLength: subnetLength, subnetMin: subnetMin, subnetMax: subnetMax, port: port,
            enableNFTables: try boolField("EnableNFTables", in: fields) ?? false)
    }

    /// Number of subnets between `subnetMin` and `subnetMax` inclusive.
    public var candidateCount: Int {
        Int((UInt64(subnetMax.rawValue) - UInt64(subnetMin.rawValue)) >> UInt64(32 - subnetLength)) + 1
    }

    /// Every subnet a node may take, from `subnetMin` to `subnetMax` in `subnetLength` steps,
    /// generated lazily because a /8 split into /24s has 65,535 of them.
    public func candidateSubnets() -> CandidateSubnets {
        CandidateSubnets(first: subnetMin, last: subnetMax, length: subnetLength)
    }

    /// True when `subnet` is one flanneld would accept for this config: the right length, and its
    /// network address in [subnetMin, subnetMax] (flanneld's `isSubnetConfigCompat`).
    public func fits(_ subnet: IPv4Prefix) -> Bool {
        subnet.length == subnetLength && subnet.network >= subnetMin && subnet.network <= subnetMax
    }

    /// Parses CIDR text as Go's `net.ParseCIDR` does for IPv4: host bits are allowed and cleared,
    /// so a config flanneld accepts is never refused here.
    static func parseCIDR(_ text: String) -> IPv4Prefix? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPv4Address(String(parts[0])) else { return nil }
        let lengthText = parts[1]
        guard (1...2).contains(lengthText.count), lengthText.allSatisfy({ $0.isASCII && $0.isNumber }),
            let length = Int(lengthText), length <= 32
        else { return nil }
        return IPv4Prefix(address: address, length: length)
    }

    private static func boolField(_ name: String, in fields: JSONFields) throws(NetworkConfigError) -> Bool? {
        switch fields[name] {
        case nil, .null?: return nil
        case .bool(let value)?: return value
        case _?: throw .wrongType(field: name, expected: "true or false")
        }
    }

    private static func stringField(
        _ name: String, key: String? = nil, in fields: JSONFields
    ) throws(NetworkConfigError) -> String? {
        switch fields[key ?? name] {
        case nil, .null?: return nil
        case .string(let value)?: return value
        case _?: throw .wrongType(field: name, expected: "a string")
        }
    }

    private static func integerField(
        _ name: String, key: String? = nil, in fields: JSONFields
    ) throws(NetworkConfigError) -> Int? {
        switch fields[key ?? name] {
        case nil, .null?: return nil
        case .number(let value)? where value.rounded() == value && abs(value) < 1e9: return Int(value)
        case _?: throw .wrongType(field: name, expected: "an integer")
        }
    }

    private static func addressField(
        _ name: String, in fields: JSONFields
    ) throws(NetworkConfigError) -> IPv4Address? {
        guard let text = try stringField(name, in: fields) else { return nil }
        guard let address = IPv4Address(text) else { throw .invalidAddress(field: name, text) }
        return address.rawValue == 0 ? nil : address
    }
}

/// The subnets from a first to a last network address in steps of one subnet, made on demand.
public struct CandidateSubnets: Sequence, Sendable {
    let first: IPv4Address
    let last: IPv4Address
    let length: Int

    /// Walks the subnets in ascending order.
    public struct Iterator: IteratorProtocol {
        // 64-bit so stepping past 255.255.255.0 ends the walk instead of wrapping to 0.0.0.0.
        var nextAddress: UInt64
        let last: UInt64
        let step: UInt64
        let length: Int

        public mutating func next() -> IPv4Prefix? {
            guard nextAddress <= last else { return nil }
            defer { nextAddress += step }
            return IPv4Prefix(address: IPv4Address(rawValue: UInt32(nextAddress)), length: length)
        }
    }

    public func makeIterator() -> Iterator {
        Iterator(
            nextAddress: UInt64(first.rawValue), last: UInt64(last.rawValue), step: UInt64(1) << UInt64(32 - length),
            length: length)
    }

    public var underestimatedCount: Int {
        Int((UInt64(last.rawValue) - UInt64(first.rawValue)) >> UInt64(32 - length)) + 1
    }
}

/// Why a net config was refused; the description names the field and the rule it broke.
public enum NetworkConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bytes are not JSON.
    case notJSON
    /// The JSON is not an object.
    case notAnObject
    /// A field has the wrong JSON type.
    case wrongType(field: String, expected: String)
    /// `Network` is absent.
    case missingNetwork
    /// `Network` is not IPv4 CIDR text.
    case invalidNetwork(String)
    /// `EnableIPv4` is false.
    case ipv4Disabled
    /// `EnableIPv6` is true.
    case ipv6Unsupported
    /// `Network` is longer than /28.
    case networkTooSmall(IPv4Prefix)
    /// `SubnetLen` is above 30.
    case subnetLengthTooLong(Int)
    /// `SubnetLen` is below the Network prefix + 2.
    case subnetLengthTooShort(Int, network: IPv4Prefix)
    /// `SubnetMin` or `SubnetMax` is not a dotted quad.
    case invalidAddress(field: String, String)
    /// `SubnetMin` or `SubnetMax` lies outside `Network`.
    case subnetBoundOutsideNetwork(field: String, IPv4Address, network: IPv4Prefix)
    /// `SubnetMin` or `SubnetMax` has bits set below `SubnetLen`.
    case subnetBoundNotAligned(field: String, IPv4Address, subnetLength: Int)
    /// `SubnetMin` is above `SubnetMax`.
    case subnetMinAboveMax(IPv4Address, IPv4Address)
    /// `Backend.Type` is not udp.
    case unsupportedBackend(String)
    /// `Backend.Port` is outside 1...65535.
    case invalidPort(Int)
    /// The config is longer than `JSONFields.maxBytes`.
    case tooLarge(bytes: Int)
    /// The config nests arrays or objects deeper than `JSONFields.maxDepth`.
    case tooDeep

    public var description: String {
        "net config: " + detail
    }

    private var detail: String {
        switch self {
        case .notJSON: return "not valid JSON"
        case .notAnObject: return "must be a JSON object"
        case .wrongType(let field, let expected): return "\(field) must be \(expected)"
        case .missingNetwork: return "Network is required, e.g. \"10.244.0.0/16\""
        case .invalidNetwork(let text): return "Network \"\(text)\" is not an IPv4 CIDR such as 10.244.0.0/16"
        case .ipv4Disabled: return "EnableIPv4 false is not supported: the udp backend carries IPv4 only"
        case .ipv6Unsupported: return "EnableIPv6 true is not supported: the udp backend carries IPv4 only"
        case .networkTooSmall(let network):
            return "Network \(network) is too small: the prefix must be at most /28"
        case .subnetLengthTooLong(let length): return "SubnetLen \(length) must be at most 30"
        case .subnetLengthTooShort(let length, let network):
            return "SubnetLen \(length) must be at least \(network.length + 2) (Network prefix /\(network.length) + 2)"
        case .invalidAddress(let field, let text): return "\(field) \"\(text)\" is not an IPv4 address"
        case .subnetBoundOutsideNetwork(let field, let address, let network):
            return "\(field) \(address) must lie inside Network \(network)"
        case .subnetBoundNotAligned(let field, let address, let length):
            return "\(field) \(address) must be aligned to SubnetLen /\(length)"
        case .subnetMinAboveMax(let min, let max): return "SubnetMin \(min) must not be above SubnetMax \(max)"
        case .unsupportedBackend(let type):
            return "Backend.Type \"\(type)\" is not supported: Weft implements only the udp backend"
        case .invalidPort(let port): return "Backend.Port \(port) must be in 1...65535"
        case .tooLarge(let bytes): return "\(bytes) bytes is more than the \(JSONFields.maxBytes) a config may have"
        case .tooDeep: return "nests arrays or objects deeper than \(JSONFields.maxDepth) levels"
        }
    }
}
