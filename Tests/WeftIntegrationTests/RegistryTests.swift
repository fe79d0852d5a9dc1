import Foundation
import Testing
import WeftRegistry

/// Nodes that lease their subnets from the embedded file registry, as flanneld nodes do from
/// etcd, in network namespaces the tests create and delete.
@Suite(.serialized, .enabled(if: Environment.canRunNamespaces, Comment(rawValue: Environment.missingForNamespaces ?? "")))
struct RegistryTests {
    @Test("three nodes on one underlay lease subnets and every pair of pods can ping")
    func threeNodesPing() throws {
        let lab = try Lab(nodes: 3)
        for (index, node) in lab.nodes.enumerated() {
            _ = try lab.startWeft(node, try lab.registryArguments(node: index + 1))
        }
        // A node learns a later node's lease through its watch: allow a moment.
        usleep(500_000)
        for from in 1...3 {
            for to in 1...3 where to != from {
                let ping = try lab.ping(from: "pod" + String(UnicodeScalar(UInt8(64 + from))), "10.244.\(to).2", count: 2)
                #expect(ping.status == 0, "pod \(from) → pod \(to): \(ping)")
            }
        }
        let subnetFile = try String(contentsOfFile: "\(lab.stateDirectory)/subnet-1.env", encoding: .utf8)
        #expect(subnetFile == "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n")
    }

    @Test("a node's lease removed: its route is gone from the others within 2 s, and it stops cleanly")
    func leaseRemoved() throws {
        let lab = try Lab()
        _ = try lab.startWeft("nodeA", try lab.registryArguments(node: 1))
        let weftB = try lab.startWeft("nodeB", try lab.registryArguments(node: 2))
        usleep(500_000)
        #expect(try lab.ping(from: "podA", "10.244.2.2", count: 1).status == 0)

        let registry = FileRegistry(directory: "\(lab.stateDirectory)/registry")
        let removed = Date()
        try blocking { try await registry.delete("/coreos.com/network/subnets/10.244.2.0-24") }
        var gone = false
        while Date().timeIntervalSince(removed) < 2 {
            let ping = try lab.ping(from: "podA", "10.244.2.2", count: 1)
            if ping.output.contains("Destination Net Unreachable") { gone = true; break }
        }
        #expect(gone, "node A still routes 10.244.2.0/24 two seconds after its lease went")
        let stopped = weftB.wait(seconds: 10)
        #expect(stopped.status == 0, "node B stops cleanly when its own lease is deleted: \(stopped)")
        #expect(try lab.exec("nodeB", ["ip", "link", "show", "flannel0"]).status != 0)
    }

    @Test("a restarted node gets the same subnet back from the registry, without subnet.env")
    func restartKeepsSubnet() throws {
        let lab = try Lab()
        let first = try lab.startWeft("nodeA", try lab.registryArguments(node: 1))
        #expect(first.stop().status == 0)
        try FileManager.default.removeItem(atPath: "\(lab.stateDirectory)/subnet-1.env")
        _ = try lab.startWeft("nodeA", try lab.registryArguments(node: 1, writeSubnetFile: false))
        let address = try lab.exec("nodeA", ["ip", "-4", "addr", "show", "flannel0"])
        #expect(address.output.contains("10.244.1.0/32"), "\(address)")
    }

    /// Runs registry work from a synchronous test.
    private func blocking(_ operation: @escaping @Sendable () async throws -> Void) throws {
        let done = DispatchSemaphore(value: 0)
        let failure = LockedError()
        Task.detached {
            do { try await operation() } catch { failure.set(error) }
            done.signal()
        }
        done.wait()
        if let error = failure.error { throw error }
    }
}

private final class LockedError: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Error?
    func set(_ error: Error) { lock.withLock { stored = error } }
    var error: Error? { lock.withLock { stored } }
}

/// Nodes leasing from a real etcd (Debian's etcd-server) that runs inside node A's namespace,
/// next to a node that knows nothing of Weft: a lease written in flanneld's format, and an
/// independent flannel-udp peer.
@Suite(.serialized, .enabled(if: Environment.canRunNamespaces && Environment.findInPath("etcd") != nil,
                             Comment(rawValue: Environment.missingForNamespaces ?? "etcd not found on PATH: apt-get install etcd-server (tools/prereqs does)")))
struct EtcdNodeTests {
    static let endpoint = "http://198.18.0.1:2379"

    private func startEtcd(_ lab: Lab) throws -> BackgroundProcess {
        let etcd = try lab.spawn("nodeA", [
            "etcd", "--name", "weft-test", "--data-dir", "\(lab.stateDirectory)/etcd",
            "--listen-client-urls", Self.endpoint, "--advertise-client-urls", Self.endpoint,
            "--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
            "--initial-cluster", "weft-test=http://127.0.0.1:2380",
        ])
        let health = try etcdkv(lab, ["health", "--wait", "15"])
        guard health.status == 0 else { throw LabError("etcd did not become healthy: \(health)\n\(etcd.errorOutput)") }
        return etcd
    }

    @discardableResult
    private func etcdkv(_ lab: Lab, _ arguments: [String]) throws -> CommandResult {
        try lab.exec("nodeA", ["python3", Environment.testPeer("etcdkv.py"), "--endpoint", Self.endpoint] + arguments, timeout: 30)
    }

    @Test("flanneld's keys both ways, forwarding through an etcd outage, and the watch resyncing after it")
    func etcdLeases() throws {
        let lab = try Lab()
        var etcd = try startEtcd(lab)
        try etcdkv(lab, ["put", "/coreos.com/network/config", #"{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}"#])
        var arguments = try lab.registryArguments(node: 1)
        arguments.removeAll { $0 == "--subnet-dir" || $0.hasSuffix("/registry") }
        let weft = try lab.startWeft("nodeA", arguments + ["--etcd-endpoints", Self.endpoint])

        // Weft's own lease, byte for byte what flanneld v0.14+ writes.
        let own = try etcdkv(lab, ["get", "/coreos.com/network/subnets/10.244.1.0-24"])
        #expect(own.output == #"{"PublicIP":"198.18.0.1","PublicIPv6":null}"#, "\(own)")

        // Node B is "flanneld": a lease in its exact format, and an independent udp peer.
        try etcdkv(lab, ["put", "/coreos.com/network/subnets/10.244.2.0-24", #"{"PublicIP":"198.18.0.2","PublicIPv6":null}"#])
        let peer = try lab.spawn("nodeB", ["python3", Environment.testPeer("flannel_peer.py"), "--iface-ip", "198.18.0.2", "--subnet", "10.244.2.0/24", "--network", "10.244.0.0/16", "--peer", "10.244.1.0/24=198.18.0.1", "--duration", "90"])
        try lab.waitForLink("flannel0", in: "nodeB", process: peer)
        usleep(500_000)
        let before = try lab.ping(from: "podA", "10.244.2.2", count: 2)
        #expect(before.status == 0, "the flanneld-format lease became a route: \(before)")

        // etcd gone: forwarding goes on with the last known routes.
        etcd.process.terminate()
        etcd.wait(seconds: 10)
        // 20 s without etcd, as the issue asks; every ping must still be answered.
        let during = try lab.ping(from: "podA", "10.244.2.2", count: 100)
        #expect(during.output.contains("100 received"), "pings through the etcd outage: \(during)")

        // etcd back: the watch resyncs and a change made now reaches the node.
        etcd = try startEtcd(lab)
        try etcdkv(lab, ["delete", "/coreos.com/network/subnets/10.244.2.0-24"])
        var removed = false
        for _ in 0..<40 where !removed {
            removed = try lab.ping(from: "podA", "10.244.2.2", count: 1).output.contains("Destination Net Unreachable")
            if !removed { usleep(250_000) }
        }
        #expect(removed, "the deletion after etcd's return reached node A")
        #expect(weft.process.isRunning)
        _ = etcd
    }
}
