import Foundation
import WeftCore

/// What a running node reports, at one moment: `weft status` prints it, /readyz judges it and
/// /metrics renders it. Built by the node on request from its live counters, routes and lease.
public struct NodeStatus: Codable, Equatable, Sendable {
    /// This node's lease, when it comes from a registry.
    public struct Lease: Codable, Equatable, Sendable {
        public var subnet: String
        /// Seconds since 1970 at which the registry drops the lease unless it is renewed.
        public var expiresAt: Double
        public init(subnet: String, expiresAt: Double) {
            self.subnet = subnet
            self.expiresAt = expiresAt
        }
    }

    /// The registry the lease and the peers come from.
    public struct Registry: Codable, Equatable, Sendable {
        /// "etcd" or "file".
        public var kind: String
        /// False from the first failed request of an outage until the registry answers again.
        public var reachable: Bool
        /// Requests that failed since the node started.
        public var failedRequests: Int
        /// Entries skipped because they are not valid leases, each time a listing or an event
        /// carried one (the log names each).
        public var skippedEntries: Int
        public init(kind: String, reachable: Bool, failedRequests: Int, skippedEntries: Int) {
            self.kind = kind
            self.reachable = reachable
            self.failedRequests = failedRequests
            self.skippedEntries = skippedEntries
        }
    }

    public struct Peer: Codable, Equatable, Sendable {
        public var subnet: String
        public var publicIP: String
        public init(subnet: String, publicIP: String) {
            self.subnet = subnet
            self.publicIP = publicIP
        }
    }

    /// Counter totals since start, keyed by `Direction.metricName` and `DropReason.description`.
    public struct Traffic: Codable, Equatable, Sendable {
        public var packets: [String: Int]
        public var bytes: [String: Int]
        public var drops: [String: [String: Int]]
        public var icmpSent: Int

        public init(_ snapshot: CounterSnapshot) {
            packets = [:]
            bytes = [:]
            drops = [:]
            for direction in Direction.allCases {
                packets[direction.metricName] = snapshot.packets[direction] ?? 0
                bytes[direction.metricName] = snapshot.bytes[direction] ?? 0
                var reasons: [String: Int] = [:]
                for (reason, count) in snapshot.drops[direction] ?? [:] where count != 0 {
                    reasons[reason.description] = count
                }
                drops[direction.metricName] = reasons
            }
            icmpSent = snapshot.icmpSent
        }
    }

    public var network: String
    public var subnet: String
    public var tunName: String
    public var workers: Int
    /// Seconds since 1970 at which forwarding started.
    public var startedAt: Double
    /// The data path's threads are running (false once one failed, or while stopping).
    public var forwarding: Bool
    public var lease: Lease?
    public var registry: Registry?
    public var peers: [Peer]
    public var traffic: Traffic

    public init(network: String, subnet: String, tunName: String, workers: Int, startedAt: Double, forwarding: Bool,
                lease: Lease?, registry: Registry?, peers: [Peer], traffic: Traffic) {
        self.network = network
        self.subnet = subnet
        self.tunName = tunName
        self.workers = workers
        self.startedAt = startedAt
        self.forwarding = forwarding
        self.lease = lease
        self.registry = registry
        self.peers = peers
        self.traffic = traffic
    }

    /// Why the node is not ready, or nil when it is: forwarding, and holding an unexpired lease
    /// (static mode has none to hold). A registry outage alone keeps a node ready, since it
    /// forwards with its last routes while the lease lasts, as flanneld does.
    public func notReadyReason(now: Double) -> String? {
        if !forwarding { return "the data path is not running" }
        if let lease, lease.expiresAt <= now { return "lease \(lease.subnet) expired \(Int(now - lease.expiresAt)) s ago" }
        return nil
    }

    public func jsonBytes() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Array(try encoder.encode(self)) + [0x0A]
    }

    public static func decode(_ bytes: [UInt8]) throws -> NodeStatus {
        try JSONDecoder().decode(NodeStatus.self, from: Data(bytes))
    }
}
