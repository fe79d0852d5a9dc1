import Foundation
import Testing
import WeftRegistry
import WeftTestSupport

extension NamespaceTests {
/// --ip-masq and the FORWARD rules with the real iptables and nft, inside the lab's namespaces:
/// what a host outside the cluster network and a pod on another node see as the source.
@Suite(.serialized, .enabled(if: Environment.canRunNamespaces && findInPath("iptables") != nil && findInPath("nft") != nil,
                             Comment(rawValue: Environment.missingForNamespaces ?? "needs iptables and nft: apt-get install iptables nftables (tools/prereqs does)")))
struct MasqueradeTests {
    enum Tool: String, CustomStringConvertible, CaseIterable {
        case iptables, nftables
        var description: String { rawValue }
    }

    /// Waits for one UDP datagram on `address`:9999 in `node` and prints the sender's address.
    func listen(_ lab: Lab, _ node: String, on address: String) throws -> BackgroundProcess {
        let script = """
            import socket, sys
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 9999)); s.settimeout(15)
            print("ready", flush=True)
            data, sender = s.recvfrom(100); print(sender[0], flush=True)
            """
        let listener = try lab.spawn(node, ["python3", "-c", script, address])
        #expect(lab.waitForOutput(listener, containing: "ready", seconds: 10), "\(listener.errorOutput)")
        return listener
    }

    /// Sends a few datagrams from `node` to `address`:9999 (the first may go before ARP settles).
    func send(_ lab: Lab, from node: String, to address: String) throws {
        let script = "import socket, sys, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor _ in range(5): s.sendto(b'x', (sys.argv[1], 9999)); time.sleep(0.1)"
        let sent = try lab.exec(node, ["python3", "-c", script, address])
        #expect(sent.status == 0, "\(sent)")
    }

    /// The source address a listener in `node` saw for a datagram from pod A.
    func sourceSeen(_ lab: Lab, listenerNode node: String, address: String) throws -> String {
        let listener = try listen(lab, node, on: address)
        try send(lab, from: "podA", to: address)
        let result = listener.wait(seconds: 20)
        return result.output.split(separator: "\n").last.map(String.init) ?? "nothing: \(result)"
    }

    @Test("pods reaching a host outside the cluster network arrive masqueraded; pod-to-pod keeps the pod's address; a clean stop removes the rules",
          arguments: Tool.allCases)
    func masquerading(tool: Tool) throws {
        let lab = try Lab(nodes: 2)
        let registry = "\(lab.stateDirectory)/registry"
        let files = FileRegistry(directory: registry)
        let config = #"{"Network":"10.244.0.0/16","EnableNFTables":\#(tool == .nftables),"Backend":{"Type":"udp"}}"#
        try blocking {
            try files.prepare()
            _ = try await files.create("/coreos.com/network/config", value: Array(config.utf8), ttl: nil)
        }
        let weftA = try lab.startWeft("nodeA", try lab.registryArguments(node: 1) + ["--ip-masq", "--iptables-resync", "1"])
        _ = try lab.startWeft("nodeB", try lab.registryArguments(node: 2))
        #expect(lab.waitForLog(weftA, containing: "masquerading traffic leaving 10.244.0.0/16 and accepting 10.244.0.0/16 in FORWARD with \(tool)", seconds: 5),
                "\(weftA.errorOutput)")
        #expect(lab.waitForLog(weftA, containing: "peers changed: 1 route(s)", seconds: 5), "\(weftA.errorOutput)")
        let subnetFile = try String(contentsOfFile: "\(lab.stateDirectory)/subnet-1.env", encoding: .utf8)
        #expect(subnetFile.contains("FLANNEL_IPMASQ=true\n"), "\(subnetFile)")

        // Node B's underlay address is outside the cluster network: a host beyond node A.
        #expect(try sourceSeen(lab, listenerNode: "nodeB", address: "198.18.0.2") == "198.18.0.1", "masqueraded to node A's address")
        #expect(try sourceSeen(lab, listenerNode: "podB", address: "10.244.2.2") == "10.244.1.2", "pod to pod keeps the pod's source")

        let listing = tool == .iptables ? ["iptables", "-t", "nat", "-S"] : ["nft", "list", "ruleset"]
        let installed = try lab.exec("nodeA", listing)
        #expect(installed.output.contains(tool == .iptables ? "FLANNEL-POSTRTG" : "table ip flannel-ipv4"), "\(installed)")

        // A firewall reload that drops the rules: the next check (every second here) puts them back.
        let wipe = tool == .iptables ? ["iptables", "-t", "nat", "-F", "FLANNEL-POSTRTG"] : ["nft", "delete", "table", "ip", "flannel-ipv4"]
        #expect(try lab.exec("nodeA", wipe).status == 0)
        #expect(lab.waitForLog(weftA, containing: "\(tool) rules for 10.244.0.0/16 were missing or changed; put back", seconds: 10), "\(weftA.errorOutput)")
        #expect(try lab.exec("nodeA", listing).output == installed.output, "the same rules as before")
        #expect(try sourceSeen(lab, listenerNode: "nodeB", address: "198.18.0.2") == "198.18.0.1", "masquerading again")
        let stoppedA = weftA.stop()
        #expect(stoppedA.status == 0, "\(stoppedA)")
        let removed = try lab.exec("nodeA", listing)
        #expect(!removed.output.contains("FLANNEL") && !removed.output.contains("flannel"), "a clean stop removes the rules: \(removed)")
        if tool == .iptables {
            let forward = try lab.exec("nodeA", ["iptables", "-S"])
            #expect(!forward.output.contains("FLANNEL-FWD"), "\(forward)")
        }
    }

    @Test("without --ip-masq the host outside sees the pod's own address, and FLANNEL_IPMASQ is false")
    func noMasquerading() throws {
        let lab = try Lab(nodes: 2)
        _ = try lab.startWeft("nodeA", try lab.registryArguments(node: 1))
        let weftB = try lab.startWeft("nodeB", try lab.registryArguments(node: 2))
        #expect(lab.waitForLog(weftB, containing: "peers changed: 1 route(s)", seconds: 5), "\(weftB.errorOutput)")
        #expect(try sourceSeen(lab, listenerNode: "nodeB", address: "198.18.0.2") == "10.244.1.2")
        let subnetFile = try String(contentsOfFile: "\(lab.stateDirectory)/subnet-1.env", encoding: .utf8)
        #expect(subnetFile.contains("FLANNEL_IPMASQ=false\n"), "\(subnetFile)")
    }

    @Test("with FORWARD's policy DROP, the forward rules carry pod traffic; --no-iptables-forward-rules leaves it dropped")
    func forwardRules() throws {
        let lab = try Lab(nodes: 2)
        for node in ["nodeA", "nodeB"] {
            #expect(try lab.exec(node, ["iptables", "-P", "FORWARD", "DROP"]).status == 0)
        }
        let weftA = try lab.startWeft("nodeA", try lab.registryArguments(node: 1))
        _ = try lab.startWeft("nodeB", try lab.registryArguments(node: 2))
        #expect(lab.waitForLog(weftA, containing: "peers changed: 1 route(s)", seconds: 5), "\(weftA.errorOutput)")
        #expect(try lab.ping(from: "podA", "10.244.2.2", count: 2).status == 0, "FLANNEL-FWD accepts the pod network")
        let stoppedA = weftA.stop()
        #expect(stoppedA.status == 0, "\(stoppedA)")
        let without = try lab.startWeft("nodeA", try lab.registryArguments(node: 1) + ["--no-iptables-forward-rules"])
        #expect(!without.errorOutput.contains("FORWARD with"), "\(without.errorOutput)")
        #expect(try lab.ping(from: "podA", "10.244.2.2", count: 2, extra: ["-W", "1"]).status != 0, "the host's DROP policy applies")
    }
}
}
