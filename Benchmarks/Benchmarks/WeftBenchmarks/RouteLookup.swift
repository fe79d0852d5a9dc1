import Benchmark
import WeftDataPathTesting
import WeftCore

/// A table of `count` distinct random prefixes (random network, length 8...32) and 4096 random
/// addresses to look up: half inside a random route (a hit, possibly of a longer, more specific
/// route), half anywhere in the IPv4 space (mostly misses, which probe every prefix length).
struct RouteLookupFixture {
    let table: RouteTable
    let addresses: [IPv4Address]

    static let addressCount = 4096

    init(routes count: Int, seed: UInt64 = 6) {
        var random = SplitMix64(seed: seed &+ UInt64(count))
        var prefixes = Set<IPv4Prefix>()
        var routes: [Route] = []
        while routes.count < count {
            let length = Int.random(in: 8...32, using: &random)
            let prefix = IPv4Prefix(address: IPv4Address(rawValue: UInt32.random(in: 0...UInt32.max, using: &random)), length: length)
            guard prefixes.insert(prefix).inserted else { continue }
            let nextHop = IPv4Address(198, 18, UInt8(truncatingIfNeeded: routes.count >> 8), UInt8(truncatingIfNeeded: routes.count))
            routes.append(Route(subnet: prefix, nextHop: nextHop))
        }
        table = RouteTable(routes)
        precondition(table.count == count, "duplicate prefixes in the fixture")
        var addresses: [IPv4Address] = []
        addresses.reserveCapacity(Self.addressCount)
        for index in 0..<Self.addressCount {
            if index % 2 == 0 {
                let route = routes[Int.random(in: 0..<routes.count, using: &random)]
                let host = UInt32.random(in: 0...UInt32.max, using: &random) & ~route.subnet.mask
                addresses.append(IPv4Address(rawValue: route.subnet.network.rawValue | host))
            } else {
                addresses.append(IPv4Address(rawValue: UInt32.random(in: 0...UInt32.max, using: &random)))
            }
        }
        self.addresses = addresses
    }

    /// flannel's shape: every lease the same length, here `count` /24s from 10.0.0.0 up; half
    /// the addresses in a lease, half anywhere in 10.0.0.0/8 (mostly misses). One prefix length,
    /// so every lookup is a single hash probe.
    init(leases count: Int, seed: UInt64 = 24) {
        var random = SplitMix64(seed: seed)
        let routes = (0..<count).map { index in
            Route(subnet: IPv4Prefix(address: IPv4Address(rawValue: 0x0A00_0000 | UInt32(index) << 8), length: 24),
                  nextHop: IPv4Address(198, 18, UInt8(truncatingIfNeeded: index >> 8), UInt8(truncatingIfNeeded: index)))
        }
        table = RouteTable(routes)
        addresses = (0..<Self.addressCount).map { index in
            if index % 2 == 0 {
                let route = routes[Int.random(in: 0..<routes.count, using: &random)]
                return IPv4Address(rawValue: route.subnet.network.rawValue | UInt32.random(in: 0...255, using: &random))
            }
            return IPv4Address(rawValue: 0x0A00_0000 | UInt32.random(in: 0...0xFF_FFFF, using: &random))
        }
    }
}

func routeLookupBenchmarks() {
    // Fixtures are built once, in setup, and not measured.
    for routes in [10, 1_000, 10_000] {
        Benchmark(
            "RouteTable.lookup-\(routes)-routes",
            configuration: configuration(scalingFactor: .kilo),
            closure: lookUpAll
        ) {
            RouteLookupFixture(routes: routes)
        }
    }
    Benchmark(
        "RouteTable.lookup-10000-routes-all-24",
        configuration: configuration(scalingFactor: .kilo),
        closure: lookUpAll
    ) {
        RouteLookupFixture(leases: 10_000)
    }
}

/// One lookup per inner iteration, cycling through the fixture's addresses.
private func lookUpAll(_ benchmark: Benchmark, _ fixture: RouteLookupFixture) {
    let table = fixture.table
    var hits = 0
    fixture.addresses.withUnsafeBufferPointer { addresses in
        for index in benchmark.scaledIterations {
            if table.lookup(addresses[index & (RouteLookupFixture.addressCount - 1)]) != nil {
                hits &+= 1
            }
        }
    }
    blackHole(hits)
}
