import Synchronization

/// A subnet reachable through a peer: packets to `subnet` are sent to `nextHop`, the peer's public IP.
public struct Route: Hashable, Sendable, CustomStringConvertible {
    /// The peer's lease.
    public var subnet: IPv4Prefix
    /// The peer's public (underlay) address.
    public var nextHop: IPv4Address

    /// Makes a route.
    public init(subnet: IPv4Prefix, nextHop: IPv4Address) {
        self.subnet = subnet
        self.nextHop = nextHop
    }

    /// "10.244.2.0/24 via 192.168.1.12".
    public var description: String { "\(subnet) via \(nextHop)" }
}

/// An immutable longest-prefix-match table; build a new one to change routes.
public final class RouteTable: Sendable {
    /// All routes of one prefix length, keyed by masked network.
    struct Level: Sendable {
        let mask: UInt32
        let routesByNetwork: [UInt32: Route]
    }

    /// Deduplicated, sorted by (length desc, network).
    public let routes: [Route]
    /// Only the lengths present, longest first, so a lookup probes at most that many hash tables.
    let levels: [Level]
    let peers: Set<IPv4Address>

    /// A later route with the same subnet replaces an earlier one.
    public init(_ routes: [Route]) {
        var bySubnet: [IPv4Prefix: Route] = [:]
        for route in routes {
            bySubnet[route.subnet] = route
        }
        let sorted = bySubnet.values.sorted {
            ($0.subnet.length, $1.subnet.network) > ($1.subnet.length, $0.subnet.network)
        }
        self.routes = sorted
        var levels: [Level] = []
        var index = 0
        while index < sorted.count {
            let length = sorted[index].subnet.length
            var routesByNetwork: [UInt32: Route] = [:]
            while index < sorted.count && sorted[index].subnet.length == length {
                routesByNetwork[sorted[index].subnet.network.rawValue] = sorted[index]
                index += 1
            }
            levels.append(Level(mask: sorted[index - 1].subnet.mask, routesByNetwork: routesByNetwork))
        }
        self.levels = levels
        peers = Set(sorted.map(\.nextHop))
    }

    /// Longest prefix wins; a /0 route is the default.
    public func lookup(_ destination: IPv4Address) -> Route? {
        for level in levels {
            if let route = level.routesByNetwork[destination.rawValue & level.mask] {
                return route
            }
        }
        return nil
    }

    /// True when some route has this next hop, i.e. the address is a known peer.
    public func isPeer(_ address: IPv4Address) -> Bool {
        peers.contains(address)
    }

    /// Number of distinct subnets.
    public var count: Int { routes.count }
}

/// Holds the current RouteTable. Writers build a table outside any lock and swap it in; readers check `generation`
/// (one atomic load) per batch and fetch `current` only when it changed, so they never wait while a table is built.
public final class RouteTableStore: Sendable {
    private let generationCounter = Atomic<Int>(0)
    private let table: Mutex<RouteTable>
    /// Serialises writers so an `update` never loses a concurrent `replace`; readers never take it.
    private let writerLock = Mutex<Void>(())

    /// Starts with `table`, generation 0.
    public init(_ table: RouteTable = RouteTable([])) {
        self.table = Mutex(table)
    }

    /// Bumped after every swap; a reader that sees a new value will get at least that table from `current`.
    public var generation: Int {
        generationCounter.load(ordering: .acquiring)
    }

    /// The table in force now.
    public var current: RouteTable {
        table.withLock { $0 }
    }

    /// Installs `table`.
    public func replace(with table: RouteTable) {
        writerLock.withLock { _ in
            swapIn(table)
        }
    }

    /// Builds a new table from the current routes, serialised with other writers.
    public func update(_ change: ([Route]) -> [Route]) {
        writerLock.withLock { _ in
            swapIn(RouteTable(change(current.routes)))
        }
    }

    private func swapIn(_ newTable: RouteTable) {
        // The table is stored before the generation moves, so a reader that sees the new generation finds the new table.
        table.withLock { $0 = newTable }
        generationCounter.add(1, ordering: .releasing)
    }
}
