import Foundation
import Synchronization
import WeftCore

/// What a node's lease manager needs besides its registry.
public struct LeaseManagerConfiguration: Sendable {
    /// flanneld's `--etcd-prefix`; the file registry uses the same keys.
    public var prefix: String
    /// The address peers reach this node at, stored in the lease as `PublicIP`.
    public var publicIP: IPv4Address
    /// Lease lifetime: flanneld's 24 h (`subnetTTL`).
    public var ttl: Double
    /// Renew this long before expiry: flanneld's `--subnet-lease-renew-margin` (60 min).
    public var renewMargin: Double
    /// The subnet a previous run recorded in subnet.env, tried first after our own lease.
    public var previousSubnet: IPv4Prefix?

    public init(prefix: String = "/coreos.com/network", publicIP: IPv4Address, ttl: Double = 86_400, renewMargin: Double = 3_600, previousSubnet: IPv4Prefix? = nil) {
        self.prefix = prefix.hasSuffix("/") ? String(prefix.dropLast()) : prefix
        self.publicIP = publicIP
        self.ttl = ttl
        self.renewMargin = renewMargin
        self.previousSubnet = previousSubnet
    }

    var configKey: String { prefix + "/config" }
    var subnetsPrefix: String { prefix + "/subnets/" }
}

/// Why `LeaseManager` could not give a node its subnet.
public enum LeaseError: Error, CustomStringConvertible, Equatable {
    case noConfig(key: String)
    case badConfig(key: String, NetworkConfigError)
    case networkFull(IPv4Prefix)
    case lostEveryRace(attempts: Int)

    public var description: String {
        switch self {
        case .noConfig(let key): "no net config at \(key) (give --network to create one)"
        case .badConfig(let key, let error): "\(key): \(error)"
        case .networkFull(let network): "no free subnet left in \(network)"
        case .lostEveryRace(let attempts): "another node took each chosen subnet first, \(attempts) times in a row"
        }
    }
}

/// flanneld's subnet manager over any `SubnetRegistry`: reads the net config, acquires this
/// node's lease, renews it, and turns the other nodes' leases into routes.
///
/// Fixes flanneld's etcd v3 defects: a lost create race is retried with the
/// next choice (flanneld exits), and a failed renewal is retried every minute.
public final class LeaseManager: Sendable {
    public let registry: any SubnetRegistry
    public let configuration: LeaseManagerConfiguration
    private let log: @Sendable (String) -> Void
    private let state = Mutex(Health(leaseExpiresAt: nil, registryReachable: true, failedRequests: 0))

    /// What /readyz, /metrics and `weft status` show of the lease and the registry.
    public struct Health: Sendable, Equatable {
        /// Seconds since 1970 when this node's lease runs out unless renewed; nil before one is held.
        public var leaseExpiresAt: Double?
        /// False from a failed request until the next one succeeds.
        public var registryReachable: Bool
        /// Failed requests since start: waiting at start, renewals and the peer watch.
        public var failedRequests: Int
    }

    public var health: Health { state.withLock { $0 } }

    private func recordSuccess(leaseRenewed: Bool = false) {
        let expiresAt = expiry()
        state.withLock {
            $0.registryReachable = true
            if leaseRenewed { $0.leaseExpiresAt = expiresAt }
        }
    }

    private func recordFailure() {
        state.withLock {
            $0.registryReachable = false
            $0.failedRequests += 1
        }
    }

    /// flanneld's `raceRetries`.
    public static let acquireAttempts = 10

    /// Entries this manager skipped; give the same to a `FileRegistry`'s `onUnreadableEntry`, so
    /// its unreadable files are counted with them.
    public let skippedEntries: SkippedEntries

    public init(registry: any SubnetRegistry, configuration: LeaseManagerConfiguration,
                skippedEntries: SkippedEntries? = nil, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.registry = registry
        self.configuration = configuration
        self.skippedEntries = skippedEntries ?? SkippedEntries(log: log)
        self.log = log
    }

    /// The net config at `<prefix>/config`. When there is none and `initial` is given, it is
    /// written first (create-if-absent, so two nodes starting together agree on one).
    public func loadConfig(creatingIfMissing initial: [UInt8]? = nil) async throws -> NetworkConfig {
        let key = configuration.configKey
        var entry = try await registry.get(key)
        if entry == nil, let initial {
            do {
                _ = try await registry.create(key, value: initial, ttl: nil)
                log("wrote the net config at \(key): \(String(decoding: initial, as: UTF8.self))")
            } catch RegistryError.alreadyExists {
                // Another node wrote it first: use theirs.
            }
            entry = try await registry.get(key)
        }
        guard let entry else { throw LeaseError.noConfig(key: key) }
        do {
            return try NetworkConfig.parse(entry.value)
        } catch {
            throw LeaseError.badConfig(key: key, error)
        }
    }

    /// Runs a start-up step (reading the net config, taking the lease) until the registry
    /// answers, as flanneld's `getConfig` loop does: a node whose unit starts before etcd, or
    /// before anyone wrote the net config, comes up once they are there instead of exiting.
    /// Only an unreachable registry and a missing net config are waited for; any other error
    /// (a corrupt config, a full network) is thrown at once. Each failure is logged with the
    /// delay before the next try, which doubles from `firstDelay` up to `maxDelay`; success
    /// after failures is logged once. Cancelling the task ends the wait with CancellationError.
    public func waitingForRegistry<T: Sendable>(
        _ step: String, firstDelay: Double = 1, maxDelay: Double = 10,
        _ operation: () async throws -> T
    ) async throws -> T {
        var delay = firstDelay
        var failures = 0
        let started = Date().timeIntervalSince1970
        while true {
            do {
                let value = try await operation()
                recordSuccess()
                if failures > 0 {
                    log("\(step): succeeded after \(failures) failed attempts in \(Int((Date().timeIntervalSince1970 - started).rounded())) s")
                }
                return value
            } catch let error where Self.isWorthWaitingFor(error) {
                failures += 1
                recordFailure()
                log("\(step): \(error); trying again in \(Self.format(delay)) s")
                try await Task.sleep(for: .seconds(delay))
                delay = min(maxDelay, delay * 2)
            }
        }
    }

    private static func isWorthWaitingFor(_ error: any Error) -> Bool {
        switch error {
        case RegistryError.unavailable, LeaseError.noConfig: true
        default: false
        }
    }

    private static func format(_ seconds: Double) -> String {
        seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)
    }

    /// What `acquire` got: the lease, and whether this call created it (false: our own lease
    /// was still there and has been renewed).
    public struct Acquisition: Sendable, Equatable {
        public var lease: SubnetLease
        public var wasCreated: Bool
    }

    /// This node's lease: its own again if it still fits, else the previous subnet, else a
    /// random free one, created only if absent and retried when another node wins the race.
    public func acquire(config: NetworkConfig) async throws -> Acquisition {
        var generator = SystemRandomNumberGenerator()
        var lost: Set<IPv4Prefix> = []
        let value = SubnetLease.encodeValue(publicIP: configuration.publicIP)
        for _ in 0..<Self.acquireAttempts {
            let (leases, _) = try await listLeases()
            let plan = SubnetAllocator.choose(
                config: config, leases: leases, publicIP: configuration.publicIP,
                previous: configuration.previousSubnet, excluding: lost, using: &generator)
            for stale in plan.leasesToDelete {
                log("deleting our lease \(stale.subnet), which no longer fits the net config")
                try? await registry.delete(SubnetLease.key(for: stale.subnet, prefix: configuration.prefix))
            }
            switch plan.choice {
            case nil:
                throw LeaseError.networkFull(config.network)
            case .renew(let lease)?:
                _ = try await registry.put(key(lease.subnet), value: value, ttl: configuration.ttl)
                log("renewed our lease \(lease.subnet)")
                recordSuccess(leaseRenewed: true)
                return Acquisition(lease: SubnetLease(subnet: lease.subnet, publicIP: configuration.publicIP, expiration: expiry()), wasCreated: false)
            case .previous(let subnet)?, .random(let subnet)?:
                do {
                    _ = try await registry.create(key(subnet), value: value, ttl: configuration.ttl)
                    log("acquired lease \(subnet)")
                    recordSuccess(leaseRenewed: true)
                    return Acquisition(lease: SubnetLease(subnet: subnet, publicIP: configuration.publicIP, expiration: expiry()), wasCreated: true)
                } catch RegistryError.alreadyExists {
                    log("lease \(subnet) was taken by another node first; choosing again")
                    lost.insert(subnet)
                } catch RegistryError.corrupt(let reason) {
                    // An unreadable entry holds the subnet: leave it for an operator to look at.
                    log("lease \(subnet) is unreadable (\(reason)); choosing again")
                    lost.insert(subnet)
                }
            }
        }
        throw LeaseError.lostEveryRace(attempts: Self.acquireAttempts)
    }

    /// Deletes a lease this node created, for a start that fails after `acquire`: left in place it
    /// would show up on every other node as a peer that never answers, for its whole TTL.
    public func release(_ lease: SubnetLease) async throws {
        try await registry.delete(key(lease.subnet))
        log("released lease \(lease.subnet): the node did not start")
    }

    /// Every lease under `<prefix>/subnets/`, skipping keys and values that are not flannel's
    /// (logged, never fatal), and the revision the list reflects.
    public func listLeases() async throws -> ([SubnetLease], Int64) {
        let (entries, revision) = try await registry.list(prefix: configuration.subnetsPrefix)
        return (entries.compactMap(lease(from:)), revision)
    }

    /// How `maintain` ended.
    public enum Ending: Sendable, Equatable {
        /// The task was cancelled (shutdown).
        case cancelled
        /// Our own lease was deleted or expired: flanneld shuts down then, and so do we.
        case leaseLost
    }

    /// Keeps the lease alive and reports the peers until cancelled or the lease is lost.
    /// `onPeers` gets the full set of routes (every other node's subnet via its public IP) at
    /// start and after every change. While the registry is unreachable the last routes stay.
    public func maintain(_ lease: SubnetLease, onPeers: @escaping @Sendable ([Route]) -> Void) async -> Ending {
        await withTaskGroup(of: Ending.self) { group in
            group.addTask { await self.renewLoop(lease) }
            group.addTask { await self.watchLoop(lease, onPeers: onPeers) }
            let first = await group.next() ?? .cancelled
            group.cancelAll()
            return first
        }
    }

    private func renewLoop(_ lease: SubnetLease) async -> Ending {
        let value = SubnetLease.encodeValue(publicIP: configuration.publicIP)
        var wait = max(1, configuration.ttl - configuration.renewMargin)
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: .seconds(wait))
            } catch {
                return .cancelled
            }
            do {
                _ = try await registry.put(key(lease.subnet), value: value, ttl: configuration.ttl)
                log("renewed lease \(lease.subnet)")
                recordSuccess(leaseRenewed: true)
                wait = max(1, configuration.ttl - configuration.renewMargin)
            } catch {
                recordFailure()
                log("renewing lease \(lease.subnet) failed, retrying in 1 min: \(error)")
                wait = min(60, max(1, configuration.renewMargin / 2))
            }
        }
        return .cancelled
    }

    private func watchLoop(_ lease: SubnetLease, onPeers: @escaping @Sendable ([Route]) -> Void) async -> Ending {
        let ownKey = key(lease.subnet)
        var peers: [String: Route] = [:]
        var revision: Int64?
        var backoff = 0.1
        // An outage is logged when it starts and when it ends, with its retries, not per retry.
        var outage: (since: Double, retries: Int)?
        func endOutage() {
            guard let ended = outage else { return }
            log("registry reachable again after \(Int((Date().timeIntervalSince1970 - ended.since).rounded())) s and \(ended.retries) failed attempts; peers re-listed")
            outage = nil
        }
        while !Task.isCancelled {
            do {
                if revision == nil {
                    // (Re-)list: at start, after a compaction, after the registry came back.
                    let (entries, listed) = try await registry.list(prefix: configuration.subnetsPrefix)
                    recordSuccess()
                    endOutage()
                    if !entries.contains(where: { $0.key == ownKey }) { return .leaseLost }
                    peers = [:]
                    for entry in entries where entry.key != ownKey {
                        if let route = route(from: entry) { peers[entry.key] = route }
                    }
                    onPeers(Self.sorted(peers))
                    revision = listed
                }
                for try await event in registry.watch(prefix: configuration.subnetsPrefix, after: revision!) {
                    backoff = 0.1
                    revision = event.revision
                    switch event {
                    case .put(let entry):
                        guard entry.key != ownKey, let route = route(from: entry) else { continue }
                        if peers[entry.key] != route {
                            peers[entry.key] = route
                            onPeers(Self.sorted(peers))
                        }
                    case .delete(let key, _):
                        if key == ownKey { return .leaseLost }
                        if peers.removeValue(forKey: key) != nil { onPeers(Self.sorted(peers)) }
                    }
                }
                if Task.isCancelled { return .cancelled }
            } catch RegistryError.compacted {
                log("peer watch fell behind a compaction; listing again")
                revision = nil
            } catch {
                if Task.isCancelled { return .cancelled }
                if outage == nil {
                    log("registry unreachable, forwarding with the last known routes and retrying: \(error)")
                    outage = (Date().timeIntervalSince1970, 0)
                }
                outage?.retries += 1
                recordFailure()
                revision = nil
                do { try await Task.sleep(for: .seconds(backoff)) } catch { return .cancelled }
                backoff = min(5, backoff * 2)
            }
        }
        return .cancelled
    }

    private func key(_ subnet: IPv4Prefix) -> String { SubnetLease.key(for: subnet, prefix: configuration.prefix) }

    private func expiry() -> Double { Date().timeIntervalSince1970 + configuration.ttl }

    private func lease(from entry: RegistryEntry) -> SubnetLease? {
        decode(entry)?.lease
    }

    private func route(from entry: RegistryEntry) -> Route? {
        guard let (lease, backend) = decode(entry) else { return nil }
        if let backend, !backend.isEmpty, backend.lowercased() != "udp" {
            log("peer \(lease.subnet) at \(lease.publicIP) announces backend \(backend); Weft speaks udp to it anyway, as flanneld does")
        }
        return Route(subnet: lease.subnet, nextHop: lease.publicIP)
    }

    /// A lease key and value as flanneld writes them; anything else is logged and skipped.
    private func decode(_ entry: RegistryEntry) -> (lease: SubnetLease, backendType: String?)? {
        guard let subnet = SubnetLease.subnet(fromKey: entry.key) else {
            skippedEntries.record("ignoring \(entry.key): not a subnet lease key")
            return nil
        }
        do {
            let attributes = try SubnetLease.decodeValue(entry.value)
            return (SubnetLease(subnet: subnet, publicIP: attributes.publicIP, expiration: entry.expiresAt), attributes.backendType)
        } catch {
            skippedEntries.record("ignoring \(entry.key): \(error)")
            return nil
        }
    }

    private static func sorted(_ peers: [String: Route]) -> [Route] {
        peers.values.sorted { ($0.subnet.network, $0.subnet.length) < ($1.subnet.network, $1.subnet.length) }
    }
}
