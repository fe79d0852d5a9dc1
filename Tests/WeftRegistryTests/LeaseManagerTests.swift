import Foundation
import Synchronization
import Testing
import WeftCore
@testable import WeftRegistry

/// The lease manager over the real file registry: what a node does at start-up and while
/// other nodes come and go.
@Suite struct LeaseManagerTests {
    static let config = Array(#"{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}"#.utf8)

    /// A node's manager over the file registry in `directory`, wired as `weft run` wires it: the
    /// registry's unreadable entry files are counted with the manager's own skipped entries.
    private func manager(_ directory: String, publicIP: String, previous: String? = nil) -> LeaseManager {
        let skipped = SkippedEntries()
        return LeaseManager(
            registry: FileRegistry(directory: directory, pollInterval: 0.02, sweepInterval: 0.1, onUnreadableEntry: skipped.record),
            configuration: LeaseManagerConfiguration(publicIP: IPv4Address(publicIP)!, previousSubnet: previous.flatMap(IPv4Prefix.init)),
            skippedEntries: skipped)
    }

    @Test("the first node writes the net config; later nodes read it")
    func configCreatedOnce() async throws {
        try await withTemporaryDirectory { directory in
            let first = try await manager(directory, publicIP: "198.18.0.1").loadConfig(creatingIfMissing: Self.config)
            let other = Array(#"{"Network":"10.99.0.0/16"}"#.utf8)
            let second = try await manager(directory, publicIP: "198.18.0.2").loadConfig(creatingIfMissing: other)
            #expect(first.network == IPv4Prefix("10.244.0.0/16"))
            #expect(second == first)
            await #expect(throws: LeaseError.self) {
                try await withTemporaryDirectory { empty in
                    _ = try await manager(empty, publicIP: "198.18.0.1").loadConfig()
                }
            }
        }
    }

    @Test("a corrupt lease file or value is skipped and counted and does not stop a node from starting; a corrupt net config does")
    func corruptLeaseSkipped() async throws {
        try await withTemporaryDirectory { directory in
            let node = manager(directory, publicIP: "198.18.0.1")
            let config = try await node.loadConfig(creatingIfMissing: Self.config)
            let files = FileRegistry(directory: directory)
            _ = try await files.create("/coreos.com/network/subnets/10.244.9.0-24", value: Array("{}".utf8), ttl: nil)
            try Data("garbage".utf8).write(to: URL(fileURLWithPath: try files.entryPath(forKey: "/coreos.com/network/subnets/10.244.9.0-24")))
            let lease = try await manager(directory, publicIP: "198.18.0.2", previous: "10.244.5.0/24").acquire(config: config).lease
            #expect(lease.subnet == IPv4Prefix("10.244.5.0/24"))
            #expect(node.skippedEntries.count == 0)
            #expect(try await node.listLeases().0.map(\.subnet) == [IPv4Prefix("10.244.5.0/24")!])
            #expect(node.skippedEntries.count == 1, "the unreadable entry file is counted")
            _ = try await files.put("/coreos.com/network/subnets/10.244.8.0-24", value: Array("{not json".utf8), ttl: nil)
            _ = try await node.listLeases()
            #expect(node.skippedEntries.count == 3, "and so is a lease value that is not flanneld's, at each listing")
            let avoiding = try await manager(directory, publicIP: "198.18.0.3", previous: "10.244.9.0/24").acquire(config: config).lease
            #expect(avoiding.subnet != IPv4Prefix("10.244.9.0/24"), "the unreadable entry's subnet is not taken over")

            try Data("garbage".utf8).write(to: URL(fileURLWithPath: try files.entryPath(forKey: "/coreos.com/network/config")))
            await #expect(throws: RegistryError.self) { _ = try await node.loadConfig() }
        }
    }

    @Test("a restarted node gets its own lease back; a fresh one gets its previous subnet")
    func leaseReuse() async throws {
        try await withTemporaryDirectory { directory in
            let node = manager(directory, publicIP: "198.18.0.1")
            let config = try await node.loadConfig(creatingIfMissing: Self.config)
            let first = try await node.acquire(config: config).lease
            let again = try await manager(directory, publicIP: "198.18.0.1").acquire(config: config).lease
            #expect(again.subnet == first.subnet)
            // Any free subnet but the first node's random one (1 in 100 it is 10.244.77.0/24).
            let wanted = first.subnet == IPv4Prefix("10.244.77.0/24")! ? "10.244.78.0/24" : "10.244.77.0/24"
            let previous = try await manager(directory, publicIP: "198.18.0.2", previous: wanted).acquire(config: config).lease
            #expect(previous.subnet == IPv4Prefix(wanted))
            let entry = try await FileRegistry(directory: directory).get(SubnetLease.key(for: IPv4Prefix(wanted)!, prefix: "/coreos.com/network"))
            #expect(entry.map { String(decoding: $0.value, as: UTF8.self) } == #"{"PublicIP":"198.18.0.2","PublicIPv6":null}"#)
        }
    }

    @Test("8 nodes acquiring at once get 8 distinct subnets")
    func concurrentAcquirers() async throws {
        try await withTemporaryDirectory { directory in
            let config = try await manager(directory, publicIP: "198.18.0.100").loadConfig(creatingIfMissing: Self.config)
            // A tiny network makes collisions likely: 8 nodes, 14 subnets.
            let small = try NetworkConfig.parse(Array(#"{"Network":"10.244.0.0/24","SubnetLen":28}"#.utf8))
            _ = config
            let subnets = try await withThrowingTaskGroup(of: IPv4Prefix.self) { group in
                for node in 1...8 {
                    group.addTask { try await manager(directory, publicIP: "198.18.0.\(node)").acquire(config: small).lease.subnet }
                }
                var all: [IPv4Prefix] = []
                for try await subnet in group { all.append(subnet) }
                return all
            }
            #expect(Set(subnets).count == 8, "\(subnets)")
        }
    }

    @Test("peers appear and disappear as their leases do; our own lease deleted ends maintenance")
    func maintainFollowsPeers() async throws {
        try await withTemporaryDirectory { directory in
            let node = manager(directory, publicIP: "198.18.0.1")
            let config = try await node.loadConfig(creatingIfMissing: Self.config)
            let lease = try await node.acquire(config: config).lease
            let seen = Mutex<[[Route]]>([])
            let ending = Task { await node.maintain(lease) { routes in seen.withLock { $0.append(routes) } } }

            let peer = try await manager(directory, publicIP: "198.18.0.2").acquire(config: config).lease
            let peerRoute = Route(subnet: peer.subnet, nextHop: IPv4Address("198.18.0.2")!)
            try await waitUntil { seen.withLock { $0.last == [peerRoute] } }

            let registry = FileRegistry(directory: directory)
            try await registry.delete(SubnetLease.key(for: peer.subnet, prefix: "/coreos.com/network"))
            try await waitUntil { seen.withLock { $0.last == [] } }

            try await registry.delete(SubnetLease.key(for: lease.subnet, prefix: "/coreos.com/network"))
            #expect(await ending.value == .leaseLost)
        }
    }

    @Test("a watch that falls behind a compaction re-lists and still ends with every peer")
    func compactionRelists() async throws {
        try await withTemporaryDirectory { directory in
            // An event log of 4 lines, and a watcher that reads it once and then not before
            // pollNow(): 12 leases are written in between, so it falls behind by more than the log
            // holds, wherever its first read falls among them (before the 5th lease, the 8 after
            // it overflow the log; later, the first read finds it trimmed). No timing is involved:
            // with a poll every 3 s, a loaded CI machine once made the leases so slow that the
            // watcher kept up and nothing was compacted.
            let registry = FileRegistry(directory: directory, eventLogCapacity: 4, pollInterval: 3600, sweepInterval: 0.1)
            let messages = Mutex<[String]>([])
            let node = LeaseManager(registry: registry, configuration: LeaseManagerConfiguration(publicIP: IPv4Address("198.18.0.1")!)) { message in
                messages.withLock { $0.append(message) }
            }
            let config = try await node.loadConfig(creatingIfMissing: Self.config)
            let lease = try await node.acquire(config: config).lease
            let seen = Mutex<[Route]?>(nil)
            let ending = Task { await node.maintain(lease) { routes in seen.withLock { $0 = routes } } }
            try await waitUntil { seen.withLock { $0 == [] } }
            var expected: Set<Route> = []
            for peer in 2...13 {
                let other = LeaseManager(registry: FileRegistry(directory: directory, eventLogCapacity: 4), configuration: LeaseManagerConfiguration(publicIP: IPv4Address("198.18.0.\(peer)")!))
                let peerLease = try await other.acquire(config: config).lease
                expected.insert(Route(subnet: peerLease.subnet, nextHop: peerLease.publicIP))
            }
            let all = expected
            registry.pollNow()
            try await waitUntil { seen.withLock { $0.map(Set.init) == all } }
            #expect(messages.withLock { $0.contains { $0.contains("compaction") } }, "the watch was compacted and re-listed")
            ending.cancel()
            #expect(await ending.value == .cancelled)
        }
    }

    @Test("an outage is logged once when it starts and once when it ends, with its failed attempts")
    func outageLoggedOnce() async throws {
        try await withTemporaryDirectory { directory in
            let registry = OutageRegistry(FileRegistry(directory: directory, pollInterval: 0.02, sweepInterval: 0.1))
            let messages = Mutex<[String]>([])
            let node = LeaseManager(registry: registry, configuration: LeaseManagerConfiguration(publicIP: IPv4Address("198.18.0.1")!)) { message in
                messages.withLock { $0.append(message) }
            }
            let config = try await node.loadConfig(creatingIfMissing: Self.config)
            let lease = try await node.acquire(config: config).lease
            let seen = Mutex<Int>(0)
            let ending = Task { await node.maintain(lease) { _ in seen.withLock { $0 += 1 } } }
            try await waitUntil { seen.withLock { $0 == 1 } }

            registry.down.withLock { $0 = true }
            // The watch fails, then every re-list (0.1, 0.2, 0.4 s of back-off): wait for three
            // refused calls, however slow the machine is, before the registry comes back.
            try await waitUntil(seconds: 30) { registry.refusedCalls.withLock { $0 >= 3 } }
            registry.down.withLock { $0 = false }
            try await waitUntil(seconds: 30) { messages.withLock { $0.contains { $0.hasPrefix("registry reachable again") } } }
            let lines = messages.withLock { $0 }
            #expect(lines.filter { $0.hasPrefix("registry unreachable") }.count == 1, "\(lines)")
            let end = try #require(lines.first { $0.hasPrefix("registry reachable again") })
            let attempts = try #require(end.firstMatch(of: /and (\d+) failed attempts/).flatMap { Int($0.1) })
            #expect(attempts >= 3, "\(end)")
            ending.cancel()
            #expect(await ending.value == .cancelled)
        }
    }

    @Test("at start an unreachable registry is waited for, with a line per try, until it answers")
    func startWaitsForTheRegistry() async throws {
        try await withTemporaryDirectory { directory in
            let registry = OutageRegistry(FileRegistry(directory: directory, pollInterval: 0.02, sweepInterval: 0.1))
            registry.down.withLock { $0 = true }
            let messages = Mutex<[String]>([])
            let node = LeaseManager(registry: registry, configuration: LeaseManagerConfiguration(publicIP: IPv4Address("198.18.0.1")!)) { message in
                messages.withLock { $0.append(message) }
            }
            let start = Task {
                try await node.waitingForRegistry("reading the net config", firstDelay: 0.01, maxDelay: 0.04) {
                    try await node.loadConfig(creatingIfMissing: Self.config)
                }
            }
            try await waitUntil(seconds: 30) { registry.refusedCalls.withLock { $0 >= 3 } }
            #expect(node.health.registryReachable == false, "an outage shows in /metrics and weft status")
            registry.down.withLock { $0 = false }
            let config = try await start.value
            #expect(config.network == IPv4Prefix("10.244.0.0/16")!)
            let lines = messages.withLock { $0 }
            let retries = lines.filter { $0.hasPrefix("reading the net config: registry unavailable: registry down for the test; trying again in") }
            #expect(retries.count >= 3, "\(lines)")
            #expect(node.health == LeaseManager.Health(leaseExpiresAt: nil, registryReachable: true, failedRequests: retries.count),
                    "every failed try is counted, and the registry is reachable again")
            #expect(lines.contains { $0.hasPrefix("reading the net config: succeeded after \(retries.count) failed attempts") }, "\(lines)")
        }
    }

    @Test("at start a missing net config is waited for until another node writes it; a corrupt one is refused at once")
    func startWaitsForTheNetConfig() async throws {
        try await withTemporaryDirectory { directory in
            let files = FileRegistry(directory: directory, pollInterval: 0.02, sweepInterval: 0.1)
            let node = LeaseManager(registry: files, configuration: LeaseManagerConfiguration(publicIP: IPv4Address("198.18.0.1")!))
            let tries = Mutex(0)
            let start = Task {
                try await node.waitingForRegistry("reading the net config", firstDelay: 0.01, maxDelay: 0.02) {
                    tries.withLock { $0 += 1 }
                    return try await node.loadConfig()
                }
            }
            try await waitUntil(seconds: 30) { tries.withLock { $0 >= 2 } }
            _ = try await files.create(node.configuration.configKey, value: Self.config, ttl: nil)
            #expect(try await start.value.network == IPv4Prefix("10.244.0.0/16")!)

            _ = try await files.put(node.configuration.configKey, value: Array("{\"Network\": 7}".utf8), ttl: nil)
            let corrupt = Mutex(0)
            await #expect(throws: LeaseError.self) {
                try await node.waitingForRegistry("reading the net config", firstDelay: 0.01) {
                    corrupt.withLock { $0 += 1 }
                    return try await node.loadConfig()
                }
            }
            #expect(corrupt.withLock { $0 } == 1, "no retry for a config that is there but wrong")
        }
    }

    @Test("a stop while waiting for the registry ends the wait")
    func startWaitIsCancellable() async throws {
        try await withTemporaryDirectory { directory in
            let registry = OutageRegistry(FileRegistry(directory: directory))
            registry.down.withLock { $0 = true }
            let node = LeaseManager(registry: registry, configuration: LeaseManagerConfiguration(publicIP: IPv4Address("198.18.0.1")!))
            let start = Task { try await node.waitingForRegistry("reading the net config", firstDelay: 60) { try await node.loadConfig() } }
            try await waitUntil { registry.refusedCalls.withLock { $0 >= 1 } }
            start.cancel()
            await #expect(throws: CancellationError.self) { _ = try await start.value }
        }
    }

    /// Polls `condition` for up to `seconds`.
    private func waitUntil(seconds: Int = 5, _ condition: @Sendable () -> Bool) async throws {
        for _ in 0..<(seconds * 50) {
            if condition() { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("condition not met within \(seconds) s")
    }
}

/// The file registry behind a switch: while `down`, every call fails as an unreachable etcd does.
private final class OutageRegistry: SubnetRegistry {
    let files: FileRegistry
    let down = Mutex(false)
    init(_ files: FileRegistry) { self.files = files }

    /// Calls refused while down.
    let refusedCalls = Mutex(0)

    private func check() throws {
        if down.withLock({ $0 }) {
            refusedCalls.withLock { $0 += 1 }
            throw RegistryError.unavailable("registry down for the test")
        }
    }

    func get(_ key: String) async throws -> RegistryEntry? { try check(); return try await files.get(key) }
    func list(prefix: String) async throws -> (entries: [RegistryEntry], revision: Int64) { try check(); return try await files.list(prefix: prefix) }
    func create(_ key: String, value: [UInt8], ttl: Double?) async throws -> Int64 { try check(); return try await files.create(key, value: value, ttl: ttl) }
    func put(_ key: String, value: [UInt8], ttl: Double?) async throws -> Int64 { try check(); return try await files.put(key, value: value, ttl: ttl) }
    func delete(_ key: String) async throws { try check(); try await files.delete(key) }

    /// The file registry's events, failing at the first poll after the switch is thrown.
    func watch(prefix: String, after revision: Int64) -> AsyncThrowingStream<RegistryEvent, Error> {
        let events = files.watch(prefix: prefix, after: revision)
        return AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    try self.check()
                    let stop = Task {
                        while !Task.isCancelled {
                            if self.down.withLock({ $0 }) {
                                continuation.finish(throwing: RegistryError.unavailable("registry down for the test"))
                                return
                            }
                            try? await Task.sleep(for: .milliseconds(20))
                        }
                    }
                    defer { stop.cancel() }
                    for try await event in events { continuation.yield(event) }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}
