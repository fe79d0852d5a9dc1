import WeftCore

/// flanneld's rules for the underlay interface (the one whose address the UDP socket binds),
/// over a list of interfaces, without I/O:
/// 1. with neither `--iface` nor `--iface-regex`: the interface holding `--public-ip` if one is
///    given (an error if none does), else the interface of the default route;
/// 2. else each `--iface` entry in order, a name or an IPv4 address, the first that exists with
///    an IPv4 address; then each `--iface-regex` pattern (see `NetworkInterface.firstMatching`).
/// The address to bind is the one an entry named, else the interface's first.
public struct UnderlayRequest: Sendable, Equatable {
    /// `--iface`, in order.
    public var interfaces: [String]
    /// `--iface-regex`, in order.
    public var patterns: [String]
    public var publicIP: IPv4Address?

    public init(interfaces: [String] = [], patterns: [String] = [], publicIP: IPv4Address? = nil) {
        self.interfaces = interfaces
        self.patterns = patterns
        self.publicIP = publicIP
    }

    /// Applies the rules to `available`. `defaultRouteInterface` is asked only when rule 1 needs
    /// it; `matches(pattern, text)` is an unanchored regular-expression search.
    public func choose(from available: [NetworkInterface], defaultRouteInterface: () -> String?,
                       matches: (String, String) -> Bool) throws(UnderlayChoiceError) -> UnderlayChoice {
        let have = "interfaces here: " + (available.isEmpty ? "none" : available.map { interface in
            ([interface.name] + interface.ipv4.map(\.description)).joined(separator: " ")
        }.joined(separator: "; "))
        if interfaces.isEmpty && patterns.isEmpty {
            if let publicIP {
                if let interface = Self.interface(holding: publicIP, in: available) {
                    return UnderlayChoice(interface: interface, bindAddress: publicIP, passedOver: [])
                }
                throw UnderlayChoiceError("no interface has the --public-ip address \(publicIP); without --iface or --iface-regex the underlay is the interface holding it, as in flanneld (give --iface for a public IP behind NAT; \(have))")
            }
            guard let name = defaultRouteInterface() else {
                throw UnderlayChoiceError("no --iface given and no IPv4 default route to take it from (\(have))")
            }
            switch Self.lookup(name, in: available) {
            case .success(let found): return UnderlayChoice(interface: found.0, bindAddress: found.1, passedOver: [])
            case .failure(let reason): throw UnderlayChoiceError("the default route's interface: \(reason) (\(have))")
            }
        }
        var passedOver: [String] = []
        for entry in interfaces {
            switch Self.lookup(entry, in: available) {
            case .success(let found):
                return UnderlayChoice(interface: found.0, bindAddress: found.1, passedOver: passedOver)
            case .failure(let reason):
                passedOver.append("--iface \(entry): \(reason)")
            }
        }
        if let found = NetworkInterface.firstMatching(patterns, in: available, matches: matches) {
            return UnderlayChoice(interface: found.0, bindAddress: found.1, passedOver: passedOver)
        }
        if !patterns.isEmpty {
            passedOver.append("--iface-regex \(patterns.joined(separator: ", ")): no interface with an IPv4 address matches")
        }
        throw UnderlayChoiceError("no usable underlay interface: \(passedOver.joined(separator: "; ")) (\(have))")
    }

    private static func interface(holding address: IPv4Address, in available: [NetworkInterface]) -> NetworkInterface? {
        available.first { $0.ipv4.contains { $0.address == address } }
    }

    /// One `--iface` entry: an IPv4 address names the interface holding it, anything else is a name.
    private static func lookup(_ entry: String, in available: [NetworkInterface]) -> Result<(NetworkInterface, IPv4Address), UnderlayChoiceError> {
        if let address = IPv4Address(entry) {
            guard let interface = interface(holding: address, in: available) else {
                return .failure(UnderlayChoiceError("no interface has the address \(address)"))
            }
            return .success((interface, address))
        }
        guard let interface = available.first(where: { $0.name == entry }) else {
            return .failure(UnderlayChoiceError("no interface named \(entry)"))
        }
        guard let address = interface.firstIPv4Address else {
            return .failure(UnderlayChoiceError("\(entry) has no IPv4 address"))
        }
        return .success((interface, address))
    }
}

/// The chosen underlay.
public struct UnderlayChoice: Sendable, Equatable {
    public var interface: NetworkInterface
    public var bindAddress: IPv4Address
    /// The `--iface` entries tried before the chosen one, each with why it was passed over (for
    /// the log, as flanneld logs them).
    public var passedOver: [String]
}

public struct UnderlayChoiceError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
