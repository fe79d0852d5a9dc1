import Testing
import WeftDataPathTesting
import WeftCore

private func prefix(_ text: String) -> IPv4Prefix { IPv4Prefix(text)! }

private func randomRoutes(_ count: Int, using generator: inout SplitMix64) -> [Route] {
    (0..<count).map { _ in
        let length = Int.random(in: 0...32, using: &generator)
        let address = IPv4Address(rawValue: .random(in: 0...UInt32.max, using: &generator))
        return Route(
            subnet: IPv4Prefix(address: address, length: length),
            nextHop: IPv4Address(rawValue: .random(in: 0...UInt32.max, using: &generator)))
    }
}

/// Brute force over routes with distinct subnets: among matches the longest length wins.
private func referenceLookup(_ routes: [Route], _ destination: IPv4Address) -> Route? {
    var best: Route?
    for route in routes where route.subnet.contains(destination) {
        if best == nil || route.subnet.length > best!.subnet.length { best = route }
    }
    return best
}

@Suite struct RouteTableTests {
    @Test(arguments: [10, 1_000, 10_000])
    func longestPrefixMatchesBruteForce(_ routeCount: Int) {
        var generator = SplitMix64(seed: UInt64(routeCount))
        let routes = randomRoutes(routeCount, using: &generator)
        let table = RouteTable(routes)
        var latest: [IPv4Prefix: Route] = [:]
        for route in routes { latest[route.subnet] = route }
        let unique = Array(latest.values)
        var mismatches = 0
        for probe in 0..<10_000 {
            // Half the probes land inside a known subnet, so hits are exercised, not only misses.
            let destination: IPv4Address
            if probe % 2 == 0, let route = unique.randomElement(using: &generator) {
                let hostBits = ~route.subnet.mask & UInt32.random(in: 0...UInt32.max, using: &generator)
                destination = IPv4Address(rawValue: route.subnet.network.rawValue | hostBits)
            } else {
                destination = IPv4Address(rawValue: .random(in: 0...UInt32.max, using: &generator))
            }
            if table.lookup(destination) != referenceLookup(unique, destination) { mismatches += 1 }
        }
        #expect(mismatches == 0)
        #expect(table.count == unique.count)
    }

    @Test func sortsRoutesByLengthThenNetwork() {
        let table = RouteTable([
            Route(subnet: prefix("10.0.0.0/8"), nextHop: IPv4Address(1, 1, 1, 1)),
            Route(subnet: prefix("10.244.2.0/24"), nextHop: IPv4Address(1, 1, 1, 2)),
            Route(subnet: prefix("10.244.1.0/24"), nextHop: IPv4Address(1, 1, 1, 3)),
            Route(subnet: prefix("0.0.0.0/0"), nextHop: IPv4Address(1, 1, 1, 4)),
        ])
        #expect(table.routes.map(\.subnet.description) == ["10.244.1.0/24", "10.244.2.0/24", "10.0.0.0/8", "0.0.0.0/0"])
    }

    @Test func defaultRouteAndHostRoutes() {
        let table = RouteTable([
            Route(subnet: prefix("0.0.0.0/0"), nextHop: IPv4Address(192, 168, 0, 1)),
            Route(subnet: prefix("10.244.0.0/16"), nextHop: IPv4Address(192, 168, 0, 2)),
            Route(subnet: prefix("10.244.3.3/32"), nextHop: IPv4Address(192, 168, 0, 3)),
        ])
        #expect(table.lookup(IPv4Address(8, 8, 8, 8))?.nextHop == IPv4Address(192, 168, 0, 1))
        #expect(table.lookup(IPv4Address(255, 255, 255, 255))?.nextHop == IPv4Address(192, 168, 0, 1))
        #expect(table.lookup(IPv4Address(10, 244, 3, 2))?.nextHop == IPv4Address(192, 168, 0, 2))
        #expect(table.lookup(IPv4Address(10, 244, 3, 3))?.nextHop == IPv4Address(192, 168, 0, 3))
        #expect(RouteTable([]).lookup(IPv4Address(1, 2, 3, 4)) == nil)
    }

    @Test func laterRouteReplacesEarlierWithSameSubnet() {
        let table = RouteTable([
            Route(subnet: prefix("10.244.2.0/24"), nextHop: IPv4Address(192, 168, 0, 2)),
            Route(subnet: prefix("10.244.2.0/24"), nextHop: IPv4Address(192, 168, 0, 9)),
        ])
        #expect(table.count == 1)
        #expect(table.lookup(IPv4Address(10, 244, 2, 1))?.nextHop == IPv4Address(192, 168, 0, 9))
        #expect(!table.isPeer(IPv4Address(192, 168, 0, 2)))
        #expect(table.isPeer(IPv4Address(192, 168, 0, 9)))
    }

    @Test func knowsPeers() {
        let table = RouteTable([Route(subnet: prefix("10.244.2.0/24"), nextHop: IPv4Address(192, 168, 0, 2))])
        #expect(table.isPeer(IPv4Address(192, 168, 0, 2)))
        #expect(!table.isPeer(IPv4Address(10, 244, 2, 0)))
        #expect(!RouteTable([]).isPeer(IPv4Address(0, 0, 0, 0)))
    }

    @Test func describesRoutes() {
        #expect(Route(subnet: prefix("10.244.2.0/24"), nextHop: IPv4Address(192, 168, 0, 2)).description
            == "10.244.2.0/24 via 192.168.0.2")
    }
}

@Suite struct RouteTableStoreTests {
    @Test func generationCountsChanges() {
        let store = RouteTableStore()
        #expect(store.generation == 0)
        #expect(store.current.count == 0)
        store.replace(with: RouteTable([Route(subnet: prefix("10.244.2.0/24"), nextHop: IPv4Address(1, 1, 1, 1))]))
        #expect(store.generation == 1)
        store.update { $0 + [Route(subnet: prefix("10.244.3.0/24"), nextHop: IPv4Address(1, 1, 1, 2))] }
        #expect(store.generation == 2)
        #expect(store.current.count == 2)
        store.update { $0.filter { $0.nextHop != IPv4Address(1, 1, 1, 1) } }
        #expect(store.current.routes.map(\.nextHop) == [IPv4Address(1, 1, 1, 2)])
    }

    /// Every table the writer installs routes all 64 subnets to one next hop numbered after the table, so a
    /// reader that ever saw two next hops in one table would have seen a mixed table.
    @Test func readersNeverSeeAMixedTable() {
        let store = RouteTableStore(uniformTable(0))
        let writerDone = SharedInt()
        let torn = SharedInt()
        runOnThreads(4) { index in
            if index == 0 {
                for number in 1...1_000 { store.replace(with: uniformTable(number)) }
                writerDone.store(1)
                return
            }
            var seenGeneration = store.generation
            var current = store.current
            while writerDone.value == 0 {
                let generation = store.generation
                if generation != seenGeneration {
                    seenGeneration = generation
                    current = store.current
                }
                let first = current.lookup(IPv4Address(10, 244, 0, 1))?.nextHop
                for octet in stride(from: 1, to: 64, by: 7) {
                    if current.lookup(IPv4Address(10, 244, UInt8(octet), 1))?.nextHop != first { torn.add(1) }
                }
                if current.count != 64 { torn.add(1) }
            }
        }
        #expect(torn.value == 0)
        #expect(store.generation == 1_000)
        #expect(store.current.lookup(IPv4Address(10, 244, 5, 5))?.nextHop == IPv4Address(192, 168, 3, 232))
    }
}

private func uniformTable(_ number: Int) -> RouteTable {
    RouteTable((0..<64).map {
        Route(subnet: IPv4Prefix(address: IPv4Address(10, 244, UInt8($0), 0), length: 24),
              nextHop: IPv4Address(192, 168, UInt8(number >> 8), UInt8(number & 0xFF)))
    })
}
