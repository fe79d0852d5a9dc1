import Glibc
import WeftCore
import WeftRegistry

/// How the lab's nodes carry pod traffic between them.
public enum LabMode: String, CaseIterable, Sendable, Codable, CustomStringConvertible {
    /// Weft: `weft run` in every node, flannel's udp backend (TUN flannel0, UDP 8285).
    case weft
    /// The kernel's VXLAN as flannel's vxlan backend sets it up (flannel.1, VNI 1, UDP 8472).
    case vxlan
    /// Plain routing between the nodes, no tunnel: the physical limit of the lab.
    case route
    /// WireGuard in userspace, Debian's wireguard-go configured with wg, as users run it where
    /// the kernel has no WireGuard (flannel's own alternative backend is WireGuard): a TUN per
    /// node, UDP 51820, every peer's subnet as its allowed IPs, MTU 1420 (wg-quick's default).
    case wireguardGo = "wireguard-go"
    /// Nebula (Debian's nebula): a CA and a certificate per node from nebula-cert, carrying the
    /// node's pod subnet; peers in the static host map; the pod subnets as unsafe_routes; UDP
    /// 4242, tun MTU 1300 (its example configuration's).
    case nebula

    public var description: String { rawValue }

    /// The programs this mode runs besides ip and bridge, and the Debian packages they are in.
    public var programs: [(name: String, package: String)] {
        switch self {
        case .weft, .vxlan, .route: []
        case .wireguardGo: [("wireguard-go", "wireguard-go"), ("wg", "wireguard-tools")]
        case .nebula: [("nebula", "nebula"), ("nebula-cert", "nebula")]
        }
    }

    /// Whether the mode's forwarders need /dev/net/tun.
    public var usesTUN: Bool {
        switch self {
        case .weft, .wireguardGo, .nebula: true
        case .vxlan, .route: false
        }
    }

    /// Why this machine cannot run the mode (a program missing from PATH), or nil.
    public var missingSupport: String? {
        let missing = programs.filter { !Self.onPath($0.name) }
        guard !missing.isEmpty else { return nil }
        let packages = Array(Set(missing.map(\.package))).sorted()
        return "\(missing.map(\.name).joined(separator: " and ")) not installed (apt-get install \(packages.joined(separator: " ")))"
    }

    private static func onPath(_ program: String) -> Bool {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/sbin:/usr/bin:/sbin:/bin"
        return path.split(separator: ":").contains { access("\($0)/\(program)", X_OK) == 0 }
    }

    /// Bytes each packet's tunnel adds: flannel's `encapOverhead` of the udp backend (IPv4 20 +
    /// UDP 8) and of the vxlan backend (IPv4 20 + UDP 8 + VXLAN 8 + Ethernet 14); for the
    /// userspace tunnels, what their own set-up leaves of a 1500-byte underlay (wg-quick's 1420
    /// keeps room for an IPv6 underlay; nebula's example configuration says 1300).
    public var encapsulationOverhead: Int {
        switch self {
        case .weft: 28
        case .vxlan: 50
        case .route: 0
        case .wireguardGo: 80
        case .nebula: 200
        }
    }

    /// The tunnel MTU, which flannel also gives the pods (subnet.env's FLANNEL_MTU).
    public func podMTU(underlayMTU: Int) -> Int { underlayMTU - encapsulationOverhead }
}

/// One node of the lab and its pod: node i (1-based) is letter A, B, … with underlay address
/// 198.18.0.i and pod subnet 10.244.i.0/24.
public struct LabNode: Sendable, Equatable {
    public let index: Int

    public init(index: Int) { self.index = index }

    public var letter: String { String(UnicodeScalar(UInt8(64 + index))) }
    /// Namespace suffixes: `P-nodeA`, `P-podA`.
    public var nodeName: String { "node" + letter }
    public var podName: String { "pod" + letter }
    public var underlayAddress: String { "198.18.0.\(index)" }
    public var subnet: String { "10.244.\(index).0/24" }
    /// The same subnet as a prefix, for subnet.env.
    public var subnetPrefix: IPv4Prefix { IPv4Prefix(address: IPv4Address(10, 244, UInt8(index), 0), length: 24) }
    /// `pod0` in the node, the pod's gateway.
    public var gateway: String { "10.244.\(index).1" }
    /// `eth0` in the pod.
    public var podAddress: String { "10.244.\(index).2" }
    /// The address flannel's vxlan backend puts on flannel.1 as a /32 (the subnet's network
    /// address), and the next hop other nodes route this subnet through.
    public var vtepAddress: String { "10.244.\(index).0" }
    /// The node's address inside nebula's own network (10.245.0.i), which nebula routes the
    /// pod subnets through.
    public var nebulaAddress: String { "10.245.0.\(index)" }
    /// flannel.1's MAC. flanneld picks a random one and publishes it in its lease; the lab fixes
    /// it (locally administered, ending in the underlay address) so every node knows it up front.
    public var vtepMAC: String {
        let hex = String(index, radix: 16)
        return "02:00:c6:12:00:" + (hex.count == 1 ? "0" + hex : hex)
    }
}

/// A command the lab runs to build itself, with a word on what it is for.
public struct LabStep: Sendable, Equatable, CustomStringConvertible {
    public let arguments: [String]
    public init(_ arguments: [String]) { self.arguments = arguments }
    public var description: String { arguments.joined(separator: " ") }
}

/// The whole lab as data: namespaces, links, addresses, routes, and the commands that build it.
/// The only definition of the lab's topology (tools/lab runs `weft lab`); nothing is created
/// outside the namespaces `P-*` (links are made directly inside them with `ip -n`).
///
/// Default (2 nodes, no bridge): `P-podA — P-nodeA ═ul0═ P-nodeB — P-podB`. With 3+ nodes or
/// `bridge`, every node's `ul0` is a port of bridge `br0` in `P-ul`.
public struct LabPlan: Sendable, Equatable {
    public static let maxNodes = 8
    public static let underlayMTU = 1500
    public static let network = "10.244.0.0/16"
    public static let networkPrefix = IPv4Prefix(address: IPv4Address(10, 244, 0, 0), length: 16)
    public static let underlayPrefixLength = 24

    public let prefix: String
    public let mode: LabMode
    public let nodes: [LabNode]
    public let bridged: Bool
    public let podMTU: Int
    /// Weft mode only: whether `up` starts `weft run` in every node. Without, the lab is built
    /// (pod MTU 1472, subnet.env files written) and the caller starts its own forwarders with
    /// its own flags, as the integration tests and tools/perf do.
    public let startsForwarders: Bool
    /// Weft mode: flags added to every node's `weft run` (e.g. `--workers 1`).
    public let weftRunOptions: [String]

    /// Checks the prefix, the node count and the pod MTU; the pod MTU defaults to the mode's
    /// tunnel MTU. `forwarders: false` is only meaningful in weft mode, the only one that has any.
    public init(prefix: String, mode: LabMode, nodeCount: Int = 2, bridge: Bool = false, podMTU: Int? = nil,
                forwarders: Bool = true, weftRunOptions: [String] = []) throws(LabError) {
        try Self.check(prefix: prefix)
        guard (2...Self.maxNodes).contains(nodeCount) else {
            throw LabError("--nodes must be 2 to \(Self.maxNodes), not \(nodeCount)")
        }
        let mtu = podMTU ?? mode.podMTU(underlayMTU: Self.underlayMTU)
        guard (576...9000).contains(mtu) else { throw LabError("--pod-mtu must be 576 to 9000, not \(mtu)") }
        guard forwarders || mode == .weft else {
            throw LabError("--no-forwarders applies to weft mode only (\(mode) mode starts no forwarders)")
        }
        guard weftRunOptions.isEmpty || (mode == .weft && forwarders) else {
            throw LabError("--weft-args applies to weft mode with forwarders only")
        }
        self.prefix = prefix
        self.mode = mode
        self.nodes = (1...nodeCount).map(LabNode.init(index:))
        self.bridged = bridge || nodeCount >= 3
        self.podMTU = mtu
        self.startsForwarders = forwarders
        self.weftRunOptions = weftRunOptions
    }

    /// The one prefix rule of the lab (`weft lab` and tools/lab, which runs it): [a-z0-9-],
    /// starting with a letter or digit, at most 24 characters: short enough for readable names,
    /// safe as a file name and as part of a namespace name, and leaving room for compare's
    /// `<prefix>-vxlan` labs.
    public static func check(prefix: String) throws(LabError) {
        let allowed = prefix.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 }
        guard (1...24).contains(prefix.utf8.count), allowed, prefix.first != "-" else {
            throw LabError("invalid prefix '\(prefix)': use a-z, 0-9 and '-', 1 to 24 characters, not starting with '-'")
        }
    }

    public func namespace(_ name: String) -> String { "\(prefix)-\(name)" }

    /// The last node's pod: where traffic goes (weft bench server).
    public var lastNode: LabNode { nodes[nodes.count - 1] }

    /// Every namespace suffix in creation order: `ul` first when bridged, then pod and node of
    /// each node.
    public var names: [String] {
        (bridged ? ["ul"] : []) + nodes.flatMap { [$0.podName, $0.nodeName] }
    }

    /// Namespace suffixes in the order `status` shows them: the line of the two-node lab, then
    /// further nodes.
    public static let displayOrder: [String] = {
        var order = ["podA", "nodeA", "ul", "nodeB", "podB"]
        for index in 3...maxNodes {
            let node = LabNode(index: index)
            order += [node.nodeName, node.podName]
        }
        return order
    }()

    /// Node names `exec` accepts.
    public static func isNodeName(_ name: String) -> Bool { displayOrder.contains(name) }

    /// The commands that build the lab, in order. Each one names a lab namespace (`ip netns add
    /// P-x`, `ip -n P-x …`, `bridge -n P-x …`, `ip netns exec P-x sysctl …`).
    public var steps: [LabStep] {
        var steps: [LabStep] = []
        func ip(_ name: String, _ arguments: String...) { steps.append(LabStep(["ip", "-n", namespace(name)] + arguments)) }
        func sysctl(_ name: String, _ settings: [String]) {
            steps.append(LabStep(["ip", "netns", "exec", namespace(name), "sysctl", "-qw"] + settings))
        }

        for name in names {
            steps.append(LabStep(["ip", "netns", "add", namespace(name)]))
            sysctl(name, ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
            ip(name, "link", "set", "lo", "up")
        }
        // Before any link exists in a node, so that every later interface (flannel0,
        // flannel.1) inherits rp_filter=0 from `default`.
        for node in nodes {
            sysctl(node.nodeName, ["net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"])
        }

        let mtu = String(Self.underlayMTU)
        if bridged {
            ip("ul", "link", "add", "br0", "mtu", mtu, "type", "bridge", "stp_state", "0", "forward_delay", "0")
            ip("ul", "link", "set", "br0", "up")
            for node in nodes {
                ip(node.nodeName, "link", "add", "ul0", "mtu", mtu, "type", "veth", "peer", "name", node.nodeName, "mtu", mtu, "netns", namespace("ul"))
                ip("ul", "link", "set", node.nodeName, "master", "br0")
                ip("ul", "link", "set", node.nodeName, "up")
            }
        } else {
            ip(nodes[0].nodeName, "link", "add", "ul0", "mtu", mtu, "type", "veth", "peer", "name", "ul0", "mtu", mtu, "netns", namespace(nodes[1].nodeName))
        }
        let podMTU = String(podMTU)
        for node in nodes {
            ip(node.nodeName, "link", "add", "pod0", "mtu", podMTU, "type", "veth", "peer", "name", "eth0", "mtu", podMTU, "netns", namespace(node.podName))
        }
        for node in nodes {
            sysctl(node.nodeName, ["net.ipv4.conf.ul0.rp_filter=0", "net.ipv4.conf.pod0.rp_filter=0", "net.ipv4.conf.lo.rp_filter=0"])
            ip(node.nodeName, "addr", "add", "\(node.underlayAddress)/\(Self.underlayPrefixLength)", "dev", "ul0")
            ip(node.nodeName, "addr", "add", "\(node.gateway)/24", "dev", "pod0")
            ip(node.nodeName, "link", "set", "ul0", "up")
            ip(node.nodeName, "link", "set", "pod0", "up")
            ip(node.podName, "addr", "add", "\(node.podAddress)/24", "dev", "eth0")
            ip(node.podName, "link", "set", "eth0", "up")
            ip(node.podName, "route", "add", "default", "via", node.gateway, "dev", "eth0")
        }

        switch mode {
        case .route:
            for node in nodes {
                for peer in nodes where peer != node {
                    ip(node.nodeName, "route", "add", peer.subnet, "via", peer.underlayAddress, "dev", "ul0")
                }
            }
        case .vxlan:
            // flannel's vxlan backend (pkg/backend/vxlan): flannel.1 with VNI 1, the underlay
            // address and device, port 8472, no learning, MTU = underlay MTU − 50; the subnet's
            // network address as a /32; per peer a permanent neighbour for the peer's VTEP
            // address, an fdb entry sending that MAC to the peer's underlay address, and the
            // route `<subnet> via <vtep> dev flannel.1 onlink` (added last, as flannel does).
            let vxlanMTU = String(LabMode.vxlan.podMTU(underlayMTU: Self.underlayMTU))
            for node in nodes {
                ip(node.nodeName, "link", "add", "flannel.1", "address", node.vtepMAC, "mtu", vxlanMTU, "type", "vxlan",
                   "id", "1", "local", node.underlayAddress, "dev", "ul0", "dstport", "8472", "nolearning")
                ip(node.nodeName, "addr", "add", "\(node.vtepAddress)/32", "dev", "flannel.1")
                ip(node.nodeName, "link", "set", "flannel.1", "up")
                for peer in nodes where peer != node {
                    ip(node.nodeName, "neigh", "replace", peer.vtepAddress, "lladdr", peer.vtepMAC, "dev", "flannel.1", "nud", "permanent")
                    steps.append(LabStep(["bridge", "-n", namespace(node.nodeName), "fdb", "append", peer.vtepMAC,
                                          "dev", "flannel.1", "dst", peer.underlayAddress, "self", "permanent"]))
                    ip(node.nodeName, "route", "replace", peer.subnet, "via", peer.vtepAddress, "dev", "flannel.1", "onlink")
                }
            }
        case .weft, .wireguardGo, .nebula:
            break  // the forwarder in every node creates its TUN; see tunnelSteps for the rest.
        }
        return steps
    }

    // MARK: Userspace tunnels (wireguard-go, nebula)

    /// The tunnel's interface in `node`. wireguard-go names its control socket after the
    /// interface in one directory for the whole machine (/var/run/wireguard), so its name
    /// carries a hash of the lab's prefix: labs side by side never share a socket.
    public func tunnelInterface(_ node: LabNode) -> String {
        switch mode {
        case .weft: "flannel0"
        case .vxlan: "flannel.1"
        case .route: "ul0"
        case .wireguardGo: "wg" + node.letter + prefixTag
        case .nebula: "nebula1"
        }
    }

    /// Six hex digits of FNV-1a over the prefix.
    private var prefixTag: String {
        var hash: UInt32 = 2_166_136_261
        for byte in prefix.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        let hex = String(hash & 0xFF_FFFF, radix: 16)
        return String(repeating: "0", count: 6 - hex.count) + hex
    }

    public static func wireGuardKeyFile(for node: LabNode, stateDirectory: String) -> String { "\(stateDirectory)/wg-\(node.nodeName).key" }
    public static func wireGuardPublicKeyFile(for node: LabNode, stateDirectory: String) -> String { "\(stateDirectory)/wg-\(node.nodeName).pub" }
    public static func nebulaConfigFile(for node: LabNode, stateDirectory: String) -> String { nebulaFile("\(node.nodeName).yml", stateDirectory) }
    /// nebula's files in the state directory: `ca.crt`, `ca.key`, `nodeA.crt`, `nodeA.key`, `nodeA.yml`, …
    private static func nebulaFile(_ name: String, _ stateDirectory: String) -> String { "\(stateDirectory)/nebula-\(name)" }

    /// Keys and certificates, made in the state directory before the forwarders start (no
    /// network is touched): a WireGuard key pair per node, or nebula's CA and a certificate per
    /// node with its nebula address and its pod subnet.
    public func credentialSteps(stateDirectory: String) -> [LabStep] {
        switch mode {
        case .weft, .vxlan, .route:
            return []
        case .wireguardGo:
            return nodes.map { node in
                let key = Self.wireGuardKeyFile(for: node, stateDirectory: stateDirectory)
                let publicKey = Self.wireGuardPublicKeyFile(for: node, stateDirectory: stateDirectory)
                return LabStep(["sh", "-c", "umask 077 && wg genkey > '\(key)' && wg pubkey < '\(key)' > '\(publicKey)'"])
            }
        case .nebula:
            let caCertificate = Self.nebulaFile("ca.crt", stateDirectory), caKey = Self.nebulaFile("ca.key", stateDirectory)
            return [LabStep(["nebula-cert", "ca", "-name", "weft lab \(prefix)", "-out-crt", caCertificate, "-out-key", caKey])]
                + nodes.map { node in
                    LabStep(["nebula-cert", "sign", "-ca-crt", caCertificate, "-ca-key", caKey,
                             "-name", node.nodeName, "-ip", "\(node.nebulaAddress)/24", "-subnets", node.subnet,
                             "-out-crt", Self.nebulaFile("\(node.nodeName).crt", stateDirectory),
                             "-out-key", Self.nebulaFile("\(node.nodeName).key", stateDirectory)])
                }
        }
    }

    /// nebula's configuration for `node`: its certificate, every peer in the static host map at
    /// its underlay address (no lighthouse is needed when every host is known), the peers' pod
    /// subnets as unsafe_routes via their nebula addresses, and a firewall that lets all of the
    /// overlay's traffic through, as the lab's other modes do.
    public func nebulaConfig(for node: LabNode, stateDirectory: String) -> String {
        let peers = nodes.filter { $0 != node }
        var lines = [
            "pki:",
            "  ca: \(Self.nebulaFile("ca.crt", stateDirectory))",
            "  cert: \(Self.nebulaFile("\(node.nodeName).crt", stateDirectory))",
            "  key: \(Self.nebulaFile("\(node.nodeName).key", stateDirectory))",
            "static_host_map:",
        ]
        lines += peers.map { #"  "\#($0.nebulaAddress)": ["\#($0.underlayAddress):4242"]"# }
        lines += [
            "lighthouse:", "  am_lighthouse: false", "  hosts: []",
            "listen:", "  host: \(node.underlayAddress)", "  port: 4242",
            "punchy:", "  punch: false",
            "tun:", "  dev: \(tunnelInterface(node))", "  mtu: \(podMTU)", "  unsafe_routes:",
        ]
        for peer in peers {
            lines += ["    - route: \(peer.subnet)", "      via: \(peer.nebulaAddress)"]
        }
        lines += [
            "logging:", "  level: warning",
            "firewall:",
            "  outbound:", "    - port: any", "      proto: any", "      host: any",
            "  inbound:", "    - port: any", "      proto: any", "      host: any",
        ]
        return lines.joined(separator: "\n") + "\n"
    }

    /// The forwarder `node` runs in this mode, as one command (nil in the kernel's modes).
    public func forwarderArguments(weft: String, node: LabNode, stateDirectory: String) -> [String]? {
        let inNode = ["ip", "netns", "exec", namespace(node.nodeName)]
        switch mode {
        case .vxlan, .route: return nil
        case .weft: return weftRunArguments(weft: weft, node: node, stateDirectory: stateDirectory)
        case .wireguardGo: return inNode + ["env", "WG_PROCESS_FOREGROUND=1", "wireguard-go", tunnelInterface(node)]
        case .nebula: return inNode + ["nebula", "-config", Self.nebulaConfigFile(for: node, stateDirectory: stateDirectory)]
        }
    }

    /// What wireguard-go needs once its interfaces exist: `wg set` with the node's key and
    /// every peer (public key, underlay endpoint, pod subnet as allowed IPs), the subnet's
    /// network address as a /32, the MTU, and the route for the whole pod network, as
    /// flannel's wireguard backend sets it up. `publicKeys` are in node order. Nebula sets up
    /// its interface itself.
    public func tunnelSteps(stateDirectory: String, publicKeys: [String]) -> [LabStep] {
        guard mode == .wireguardGo else { return [] }
        var steps: [LabStep] = []
        for node in nodes {
            let interface = tunnelInterface(node)
            var set = ["ip", "netns", "exec", namespace(node.nodeName), "wg", "set", interface, "listen-port", "51820",
                       "private-key", Self.wireGuardKeyFile(for: node, stateDirectory: stateDirectory)]
            for peer in nodes where peer != node {
                set += ["peer", publicKeys[peer.index - 1], "endpoint", "\(peer.underlayAddress):51820", "allowed-ips", peer.subnet]
            }
            steps.append(LabStep(set))
            steps.append(LabStep(["ip", "-n", namespace(node.nodeName), "addr", "add", "\(node.vtepAddress)/32", "dev", interface]))
            steps.append(LabStep(["ip", "-n", namespace(node.nodeName), "link", "set", interface, "mtu", String(podMTU), "up"]))
            steps.append(LabStep(["ip", "-n", namespace(node.nodeName), "route", "add", Self.network, "dev", interface]))
        }
        return steps
    }

    /// Where node `node`'s subnet.env lives in the lab's state directory.
    public static func subnetFile(for node: LabNode, stateDirectory: String) -> String {
        "\(stateDirectory)/subnet-\(node.nodeName).env"
    }

    /// Writes subnet.env for node `node` before its `weft run` starts: the pods are wired for
    /// 10.244.i.0/24, so the node names it as its previous subnet, which a node takes again when
    /// it is free (flanneld's restart rule). The MTU is the udp backend's tunnel MTU.
    public static func writeSubnetEnvironment(for node: LabNode, to path: String) throws(LabError) {
        do {
            try SubnetEnvironmentFile.write(to: path, network: networkPrefix, subnet: node.subnetPrefix,
                                            mtu: LabMode.weft.podMTU(underlayMTU: underlayMTU), ipMasquerade: false)
        } catch {
            throw LabError("cannot write \(path): \(error)")
        }
    }

    /// `weft run` for a node: the file registry shared by the nodes in `stateDirectory`, no
    /// --subnet, no --peer, then `weftRunOptions`.
    public func weftRunArguments(weft: String, node: LabNode, stateDirectory: String) -> [String] {
        ["ip", "netns", "exec", namespace(node.nodeName), weft, "run", "--iface", "ul0", "--network", Self.network,
         "--subnet-dir", "\(stateDirectory)/registry", "--subnet-file", Self.subnetFile(for: node, stateDirectory: stateDirectory)]
            + weftRunOptions
    }

    /// A few lines that describe the lab, printed by `up`; `stateDirectory` holds the nodes'
    /// subnet.env files in weft mode.
    public func summary(stateDirectory: String) -> String {
        var lines = ["lab: up prefix=\(prefix) mode=\(mode) nodes=\(nodes.count) pod-mtu=\(podMTU)" + (bridged ? " underlay=bridge" : "")
                     + (mode == .weft && !startsForwarders ? " forwarders=none" : "")
                     + (weftRunOptions.isEmpty ? "" : " weft-args=\"\(weftRunOptions.joined(separator: " "))\"")]
        if bridged {
            lines.append("  \(namespace("ul"))  br0, ports: " + nodes.map(\.nodeName).joined(separator: " "))
        }
        for node in nodes {
            var line = "  \(namespace(node.nodeName))  ul0 \(node.underlayAddress)/24  pod0 \(node.gateway)/24"
            switch mode {
            case .route: line += "  routes to the other pods via their node"
            case .vxlan: line += "  flannel.1 \(node.vtepAddress)/32 mtu \(LabMode.vxlan.podMTU(underlayMTU: Self.underlayMTU))"
            case .weft: line += startsForwarders ? "  weft run (flannel0)" : "  no forwarder"
            case .wireguardGo: line += "  wireguard-go (\(tunnelInterface(node)) \(node.vtepAddress)/32, udp 51820)"
            case .nebula: line += "  nebula (\(tunnelInterface(node)) \(node.nebulaAddress)/24, udp 4242)"
            }
            lines.append(line)
            lines.append("  \(namespace(node.podName))  eth0 \(node.podAddress)/24 gw \(node.gateway) mtu \(podMTU)")
        }
        if mode == .weft && !startsForwarders {
            lines.append("  start weft run --iface ul0 in each node yourself; subnet.env files: "
                         + nodes.map { Self.subnetFile(for: $0, stateDirectory: stateDirectory) }.joined(separator: " "))
        }
        return lines.joined(separator: "\n")
    }
}

/// A lab failure: one line for the user.
public struct LabError: Error, CustomStringConvertible, Equatable {
    public let description: String
    /// Set when a signal (SIGINT, SIGTERM, SIGHUP) stopped the work.
    public let signal: Int32?

    public init(_ description: String, signal: Int32? = nil) {
        self.description = description
        self.signal = signal
    }
}
