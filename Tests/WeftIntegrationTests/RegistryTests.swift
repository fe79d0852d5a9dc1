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
