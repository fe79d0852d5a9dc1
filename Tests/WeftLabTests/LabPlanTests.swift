import Foundation
import Testing
@testable import WeftLab

/// The lab as data: names, addresses and commands, checked without root.
struct LabPlanTests {
    @Test("two nodes: four namespaces in a line, the names and addresses the tests and tools rely on")
    func twoNodes() throws {
        let plan = try LabPlan(prefix: "wl", mode: .route)
        #expect(plan.names == ["podA", "nodeA", "podB", "nodeB"])
        #expect(!plan.bridged)
        #expect(plan.podMTU == 1500)
        let a = plan.nodes[0], b = plan.nodes[1]
        #expect([a.nodeName, a.podName, a.underlayAddress, a.gateway, a.podAddress, a.subnet]
                == ["nodeA", "podA", "198.18.0.1", "10.244.1.1", "10.244.1.2", "10.244.1.0/24"])
        #expect([b.underlayAddress, b.podAddress, b.subnet] == ["198.18.0.2", "10.244.2.2", "10.244.2.0/24"])
        #expect(plan.lastNode == b)
        let steps = plan.steps.map(\.description)
        #expect(steps.contains("ip -n wl-nodeA link add ul0 mtu 1500 type veth peer name ul0 mtu 1500 netns wl-nodeB"))
        #expect(steps.contains("ip -n wl-nodeA link add pod0 mtu 1500 type veth peer name eth0 mtu 1500 netns wl-podA"))
        #expect(steps.contains("ip -n wl-nodeA addr add 198.18.0.1/24 dev ul0"))
        #expect(steps.contains("ip -n wl-podB addr add 10.244.2.2/24 dev eth0"))
        #expect(steps.contains("ip -n wl-podB route add default via 10.244.2.1 dev eth0"))
        #expect(steps.contains("ip -n wl-nodeA route add 10.244.2.0/24 via 198.18.0.2 dev ul0"))
        #expect(steps.contains("ip -n wl-nodeB route add 10.244.1.0/24 via 198.18.0.1 dev ul0"))
        #expect(steps.contains("ip netns exec wl-nodeA sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0"))
        #expect(!steps.contains { $0.contains("wl-ul") })
    }

    @Test("three nodes or --bridge: bridge br0 in P-ul, one port per node, 198.18.0.i and 10.244.i.2")
    func bridged() throws {
        let plan = try LabPlan(prefix: "x1", mode: .route, nodeCount: 3)
        #expect(plan.bridged)
        #expect(plan.names == ["ul", "podA", "nodeA", "podB", "nodeB", "podC", "nodeC"])
        #expect(plan.nodes.map(\.underlayAddress) == ["198.18.0.1", "198.18.0.2", "198.18.0.3"])
        #expect(plan.nodes.map(\.podAddress) == ["10.244.1.2", "10.244.2.2", "10.244.3.2"])
        let steps = plan.steps.map(\.description)
        #expect(steps.contains("ip -n x1-ul link add br0 mtu 1500 type bridge stp_state 0 forward_delay 0"))
        #expect(steps.contains("ip -n x1-nodeC link add ul0 mtu 1500 type veth peer name nodeC mtu 1500 netns x1-ul"))
        #expect(steps.contains("ip -n x1-ul link set nodeC master br0"))
        // Every node routes every other node's pods.
        #expect(steps.filter { $0.contains("route add 10.244.") && $0.contains("via 198.18.0.") }.count == 6)
        #expect(try LabPlan(prefix: "x1", mode: .route, bridge: true).bridged)
    }

    @Test("pod MTU per mode: the tunnel MTU flannel gives pods (udp −28, vxlan −50), or --pod-mtu")
    func podMTU() throws {
        #expect(try LabPlan(prefix: "wl", mode: .weft).podMTU == 1472)
        #expect(try LabPlan(prefix: "wl", mode: .vxlan).podMTU == 1450)
        #expect(try LabPlan(prefix: "wl", mode: .route).podMTU == 1500)
        #expect(try LabPlan(prefix: "wl", mode: .weft, podMTU: 1500).podMTU == 1500)
        #expect(try LabPlan(prefix: "wl", mode: .vxlan).steps.map(\.description)
            .contains("ip -n wl-nodeB link add pod0 mtu 1450 type veth peer name eth0 mtu 1450 netns wl-podB"))
    }

    @Test("vxlan as flannel's backend: flannel.1, VNI 1, port 8472, nolearning, MTU 1450, /32, per-peer neighbour, fdb and onlink route")
    func vxlan() throws {
        let plan = try LabPlan(prefix: "wl", mode: .vxlan, nodeCount: 3)
        let steps = plan.steps.map(\.description)
        #expect(steps.contains("ip -n wl-nodeA link add flannel.1 address 02:00:c6:12:00:01 mtu 1450 type vxlan id 1 local 198.18.0.1 dev ul0 dstport 8472 nolearning"))
        #expect(steps.contains("ip -n wl-nodeA addr add 10.244.1.0/32 dev flannel.1"))
        #expect(steps.contains("ip -n wl-nodeA link set flannel.1 up"))
        #expect(steps.contains("ip -n wl-nodeA neigh replace 10.244.3.0 lladdr 02:00:c6:12:00:03 dev flannel.1 nud permanent"))
        #expect(steps.contains("bridge -n wl-nodeA fdb append 02:00:c6:12:00:03 dev flannel.1 dst 198.18.0.3 self permanent"))
        #expect(steps.contains("ip -n wl-nodeA route replace 10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink"))
        // flannel adds the route after the neighbour and fdb entry it depends on.
        let neighbour = try #require(steps.firstIndex(of: "ip -n wl-nodeC neigh replace 10.244.1.0 lladdr 02:00:c6:12:00:01 dev flannel.1 nud permanent"))
        let route = try #require(steps.firstIndex(of: "ip -n wl-nodeC route replace 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink"))
        #expect(neighbour < route)
        // No underlay routes for pods: only the tunnel carries them.
        #expect(!steps.contains { $0.contains("via 198.18.0.") })
        #expect(LabNode(index: 8).vtepMAC == "02:00:c6:12:00:08")
    }

    @Test("weft mode: no remote routes; weft run per node with the shared file registry, no --peer")
    func weft() throws {
        let plan = try LabPlan(prefix: "wl", mode: .weft)
        #expect(!plan.steps.contains { $0.arguments.contains("route") && $0.arguments.contains("via") && !$0.arguments.contains("default") })
        let arguments = plan.weftRunArguments(weft: "/usr/bin/weft", node: plan.nodes[1], stateDirectory: "/run/weft-lab/wl")
        #expect(arguments == ["ip", "netns", "exec", "wl-nodeB", "/usr/bin/weft", "run", "--iface", "ul0", "--network", "10.244.0.0/16",
                              "--subnet-dir", "/run/weft-lab/wl/registry", "--subnet-file", "/run/weft-lab/wl/subnet-nodeB.env"])
        #expect(plan.startsForwarders)
    }

    @Test("subnet.env per node: flanneld's four lines for 10.244.i.0/24 with the udp tunnel MTU, whatever the pod MTU")
    func subnetEnvironment() throws {
        let directory = "/tmp/weft-lab-plan-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let plan = try LabPlan(prefix: "wl", mode: .weft, nodeCount: 3, podMTU: 1500, forwarders: false)
        for node in plan.nodes {
            let path = LabPlan.subnetFile(for: node, stateDirectory: directory)
            #expect(path == "\(directory)/subnet-\(node.nodeName).env")
            try LabPlan.writeSubnetEnvironment(for: node, to: path)
            #expect(try String(contentsOfFile: path, encoding: .utf8)
                    == "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.\(node.index).1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n")
        }
        #expect(throws: LabError.self) { try LabPlan.writeSubnetEnvironment(for: plan.nodes[0], to: "/proc/weft-no-such/subnet.env") }
    }

    @Test("weft mode without forwarders: the same steps, and a summary naming each node's subnet.env")
    func noForwarders() throws {
        let plan = try LabPlan(prefix: "wl", mode: .weft, forwarders: false)
        #expect(!plan.startsForwarders)
        #expect(plan.steps == (try LabPlan(prefix: "wl", mode: .weft)).steps)
        #expect(plan.steps.map(\.description).contains("ip -n wl-nodeA link add pod0 mtu 1472 type veth peer name eth0 mtu 1472 netns wl-podA"))
        let summary = plan.summary(stateDirectory: "/run/weft-lab/wl")
        #expect(summary.hasPrefix("lab: up prefix=wl mode=weft nodes=2 pod-mtu=1472 forwarders=none\n"), "\(summary)")
        #expect(summary.contains("/run/weft-lab/wl/subnet-nodeA.env /run/weft-lab/wl/subnet-nodeB.env"), "\(summary)")
        #expect(!summary.contains("weft run (flannel0)"))
        #expect(try LabPlan(prefix: "wl", mode: .weft).summary(stateDirectory: "/run/weft-lab/wl").contains("weft run (flannel0)"))
    }

    @Test("network safety: every command names one of the lab's own namespaces", arguments: LabMode.allCases, [2, 3, 8])
    func everyStepInsideTheLab(mode: LabMode, nodes: Int) throws {
        let plan = try LabPlan(prefix: "wl", mode: mode, nodeCount: nodes)
        let own = Set(plan.names.map(plan.namespace))
        for step in plan.steps {
            let words = step.arguments
            let target: String?
            switch (words.first, words.dropFirst().first, words.dropFirst(2).first) {
            case ("ip", "netns", "add"), ("ip", "netns", "exec"): target = words[3]
            case ("ip", "-n", _), ("bridge", "-n", _): target = words[2]
            default: target = nil
            }
            #expect(target.map(own.contains) == true, "\(step)")
            // Links made in one namespace only ever move into another of the lab's.
            if let index = words.firstIndex(of: "netns"), index > 1 {
                #expect(own.contains(words[index + 1]), "\(step)")
            }
        }
    }

    @Test("wireguard-go: one key pair per node, every peer with its key, endpoint and pod subnet, the overlay routed to wg")
    func wireGuardPlan() throws {
        let plan = try LabPlan(prefix: "wl", mode: .wireguardGo, nodeCount: 3)
        #expect(plan.podMTU == 1420)
        let interface = plan.tunnelInterface(plan.nodes[0])
        #expect(interface.hasPrefix("wgA") && interface.utf8.count <= 15, "\(interface)")
        #expect(try LabPlan(prefix: "wl2", mode: .wireguardGo).tunnelInterface(plan.nodes[0]) != interface,
                "labs side by side never share wireguard-go's control socket")
        let credentials = plan.credentialSteps(stateDirectory: "/run/weft-lab/wl").map(\.description)
        #expect(credentials.count == 3)
        #expect(credentials[1] == "sh -c umask 077 && wg genkey > '/run/weft-lab/wl/wg-nodeB.key' && wg pubkey < '/run/weft-lab/wl/wg-nodeB.key' > '/run/weft-lab/wl/wg-nodeB.pub'")
        #expect(plan.forwarderArguments(weft: "weft", node: plan.nodes[1], stateDirectory: "/s")
                == ["ip", "netns", "exec", "wl-nodeB", "env", "WG_PROCESS_FOREGROUND=1", "wireguard-go", plan.tunnelInterface(plan.nodes[1])])
        let steps = plan.tunnelSteps(stateDirectory: "/s", publicKeys: ["KA", "KB", "KC"]).map(\.description)
        let wgA = plan.tunnelInterface(plan.nodes[0])
        #expect(steps.contains("ip netns exec wl-nodeA wg set \(wgA) listen-port 51820 private-key /s/wg-nodeA.key peer KB endpoint 198.18.0.2:51820 allowed-ips 10.244.2.0/24 peer KC endpoint 198.18.0.3:51820 allowed-ips 10.244.3.0/24"), "\(steps)")
        #expect(steps.contains("ip -n wl-nodeA addr add 10.244.1.0/32 dev \(wgA)"))
        #expect(steps.contains("ip -n wl-nodeA link set \(wgA) mtu 1420 up"))
        #expect(steps.contains("ip -n wl-nodeC route add 10.244.0.0/16 dev \(plan.tunnelInterface(plan.nodes[2]))"))
        for step in plan.tunnelSteps(stateDirectory: "/s", publicKeys: ["KA", "KB", "KC"]) {
            let target = step.arguments[1] == "-n" ? step.arguments[2] : step.arguments[3]
            #expect(plan.names.map(plan.namespace).contains(target), "\(step)")
        }
    }

    @Test("--weft-args reach every node's weft run, in weft mode with forwarders only")
    func weftRunOptions() throws {
        let plan = try LabPlan(prefix: "wl", mode: .weft, weftRunOptions: ["--workers", "1"])
        #expect(Array(plan.weftRunArguments(weft: "weft", node: plan.nodes[1], stateDirectory: "/s").suffix(2)) == ["--workers", "1"])
        #expect(plan.summary(stateDirectory: "/s").hasPrefix(#"lab: up prefix=wl mode=weft nodes=2 pod-mtu=1472 weft-args="--workers 1""#))
        #expect(throws: LabError("--weft-args applies to weft mode with forwarders only")) {
            try LabPlan(prefix: "wl", mode: .vxlan, weftRunOptions: ["--workers", "1"])
        }
    }

    @Test("nebula: a CA, a certificate per node with its pod subnet, peers in the static host map, pod subnets as unsafe routes")
    func nebulaPlan() throws {
        let plan = try LabPlan(prefix: "wl", mode: .nebula)
        #expect(plan.podMTU == 1300)
        let credentials = plan.credentialSteps(stateDirectory: "/s").map(\.description)
        #expect(credentials == [
            "nebula-cert ca -name weft lab wl -out-crt /s/nebula-ca.crt -out-key /s/nebula-ca.key",
            "nebula-cert sign -ca-crt /s/nebula-ca.crt -ca-key /s/nebula-ca.key -name nodeA -ip 10.245.0.1/24 -subnets 10.244.1.0/24 -out-crt /s/nebula-nodeA.crt -out-key /s/nebula-nodeA.key",
            "nebula-cert sign -ca-crt /s/nebula-ca.crt -ca-key /s/nebula-ca.key -name nodeB -ip 10.245.0.2/24 -subnets 10.244.2.0/24 -out-crt /s/nebula-nodeB.crt -out-key /s/nebula-nodeB.key",
        ])
        let config = plan.nebulaConfig(for: plan.nodes[0], stateDirectory: "/s")
        #expect(config.contains("  cert: /s/nebula-nodeA.crt\n"))
        #expect(config.contains(#"  "10.245.0.2": ["198.18.0.2:4242"]"#))
        #expect(config.contains("  host: 198.18.0.1\n  port: 4242\n"))
        #expect(config.contains("  mtu: 1300\n  unsafe_routes:\n    - route: 10.244.2.0/24\n      via: 10.245.0.2\n"))
        #expect(!config.contains("10.244.1.0/24"), "no route to its own subnet")
        #expect(plan.tunnelSteps(stateDirectory: "/s", publicKeys: []).isEmpty)
        #expect(plan.forwarderArguments(weft: "weft", node: plan.nodes[0], stateDirectory: "/s")
                == ["ip", "netns", "exec", "wl-nodeA", "nebula", "-config", "/s/nebula-nodeA.yml"])
    }

    @Test("bad input is refused with one line", arguments: [
        ("", 2, "invalid prefix"), ("Wl", 2, "invalid prefix"), ("-x", 2, "invalid prefix"), ("a b", 2, "invalid prefix"),
        (String(repeating: "a", count: 25), 2, "invalid prefix"), ("wl", 1, "--nodes must be 2 to 8"), ("wl", 9, "--nodes must be 2 to 8"),
    ])
    func refused(prefix: String, nodes: Int, message: String) {
        #expect {
            _ = try LabPlan(prefix: prefix, mode: .route, nodeCount: nodes)
        } throws: { error in
            (error as? LabError)?.description.contains(message) == true
        }
    }

    @Test("one prefix rule: up to 24 characters, so that compare's <prefix>-vxlan fits too")
    func prefixRule() throws {
        #expect(try LabPlan(prefix: String(repeating: "a", count: 24), mode: .route).prefix.count == 24)
        #expect(try LabPlan(prefix: "0-lab-9", mode: .route).namespace("podA") == "0-lab-9-podA")
    }

    @Test("--no-forwarders outside weft mode is refused with one line", arguments: [LabMode.vxlan, .route])
    func noForwardersOutsideWeft(mode: LabMode) {
        #expect {
            _ = try LabPlan(prefix: "wl", mode: mode, forwarders: false)
        } throws: { error in
            (error as? LabError)?.description == "--no-forwarders applies to weft mode only (\(mode) mode starts no forwarders)"
        }
    }

    @Test("node names for exec")
    func nodeNames() {
        for name in ["podA", "nodeA", "ul", "nodeH", "podH"] { #expect(LabPlan.isNodeName(name)) }
        for name in ["podI", "node", "", "wl-podA"] { #expect(!LabPlan.isNodeName(name)) }
    }

    @Test("/proc/PID/stat: utime and stime after a command name with spaces and parentheses")
    func procStat() {
        let line = "1234 (weft (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 3 0 99 0 0"
        #expect(ProcessStatus.cpuSeconds(statLine: line, ticksPerSecond: 100) == 4.0)
        #expect(ProcessStatus.cpuSeconds(statLine: "garbage", ticksPerSecond: 100) == nil)
    }
}
