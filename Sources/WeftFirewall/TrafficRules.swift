import WeftCore

/// flanneld's masquerade and forward rules for one node (flannel's pkg/trafficmngr), as data:
/// what `PacketFilter` installs with iptables or nft, and what the tests compare byte for byte.
///
/// Masquerading (`--ip-masq`) rewrites the source of pod traffic that leaves the cluster
/// network, and never of pod-to-pod traffic, so pods keep their addresses across nodes. The
/// forward rules (`--iptables-forward-rules`, on by default) accept the cluster network in
/// FORWARD, for hosts whose FORWARD policy is DROP (Docker sets that).
public struct TrafficRules: Equatable, Sendable {
    /// The cluster network (flannel's Network).
    public var network: IPv4Prefix
    /// This node's subnet (its lease).
    public var subnet: IPv4Prefix
    public var masquerade: Bool
    /// `--random-fully` on the MASQUERADE rules, unless `--ip-masq-fully-random-disable`.
    public var fullyRandom: Bool
    public var forward: Bool

    public init(network: IPv4Prefix, subnet: IPv4Prefix, masquerade: Bool, fullyRandom: Bool = true, forward: Bool) {
        self.network = network
        self.subnet = subnet
        self.masquerade = masquerade
        self.fullyRandom = fullyRandom
        self.forward = forward
    }

    public var isEmpty: Bool { !masquerade && !forward }

    /// kube-proxy marks what it masquerades itself; masquerading it again breaks it on some kernels.
    static let kubeProxyMark = "0x4000/0x4000"
    static let masqueradeComment = "flanneld masq"
    static let forwardComment = "flanneld forward"

    /// One iptables rule: `iptables -t TABLE -A CHAIN SPEC…`.
    public struct IPTablesRule: Equatable, Sendable {
        public var table: String
        public var chain: String
        public var specification: [String]
    }

    /// One of flanneld's chains and the jump into it from a built-in chain.
    public struct IPTablesChain: Equatable, Sendable {
        public var table: String
        public var name: String
        /// The built-in chain whose first rule jumps here.
        public var parent: String
        public var jump: [String]
        public var rules: [IPTablesRule]
    }

    /// flanneld's chains with their rules in order: FLANNEL-POSTRTG in nat, FLANNEL-FWD in filter.
    public var iptablesChains: [IPTablesChain] {
        var chains: [IPTablesChain] = []
        let network = "\(self.network)", subnet = "\(self.subnet)"
        if masquerade {
            let comment = ["-m", "comment", "--comment", Self.masqueradeComment]
            let random = fullyRandom ? ["--random-fully"] : []
            let name = "FLANNEL-POSTRTG"
            let rule = { (spec: [String]) in IPTablesRule(table: "nat", chain: name, specification: spec) }
            chains.append(IPTablesChain(table: "nat", name: name, parent: "POSTROUTING", jump: comment + ["-j", name], rules: [
                // Not what kube-proxy masquerades itself.
                rule(["-m", "mark", "--mark", Self.kubeProxyMark] + comment + ["-j", "RETURN"]),
                // Pod to pod keeps its source.
                rule(["-s", network, "-d", network] + comment + ["-j", "RETURN"]),
                // Traffic from outside to a pod of this node arrives as it was sent.
                rule(["!", "-s", network, "-d", subnet] + comment + ["-j", "RETURN"]),
                // Pods leaving the cluster network, except to multicast.
                rule(["-s", network, "!", "-d", "224.0.0.0/4"] + comment + ["-j", "MASQUERADE"] + random),
                // The host reaching pods on other nodes: from its tunnel address, so replies come back.
                rule(["!", "-s", network, "-d", network] + comment + ["-j", "MASQUERADE"] + random),
            ]))
        }
        if forward {
            let comment = ["-m", "comment", "--comment", Self.forwardComment]
            let name = "FLANNEL-FWD"
            chains.append(IPTablesChain(table: "filter", name: name, parent: "FORWARD", jump: comment + ["-j", name], rules: [
                IPTablesRule(table: "filter", chain: name, specification: ["-s", network] + comment + ["-j", "ACCEPT"]),
                IPTablesRule(table: "filter", chain: name, specification: ["-d", network] + comment + ["-j", "ACCEPT"]),
            ]))
        }
        return chains
    }

    /// flanneld's nftables table (with `EnableNFTables`).
    public static let nftablesTable = "flannel-ipv4"

    /// An nft script that replaces the table atomically: creating it first makes the delete
    /// succeed when it is absent, so applying twice leaves one copy.
    public var nftablesScript: String {
        let network = "\(self.network)", subnet = "\(self.subnet)"
        let random = fullyRandom ? " fully-random" : ""
        var lines = ["table ip \(Self.nftablesTable)", "delete table ip \(Self.nftablesTable)", "table ip \(Self.nftablesTable) {"]
        if masquerade {
            lines += [
                "\tchain postrtg {",
                "\t\ttype nat hook postrouting priority srcnat; policy accept;",
                "\t\tmeta mark & 0x4000 == 0x4000 return",
                "\t\tip saddr \(network) ip daddr \(network) return",
                "\t\tip saddr != \(network) ip daddr \(subnet) return",
                "\t\tip saddr \(network) ip daddr != 224.0.0.0/4 masquerade\(random)",
                "\t\tip saddr != \(network) ip daddr \(network) masquerade\(random)",
                "\t}",
            ]
        }
        if forward {
            lines += [
                "\tchain forward {",
                "\t\ttype filter hook forward priority filter; policy accept;",
                "\t\tip saddr \(network) accept",
                "\t\tip daddr \(network) accept",
                "\t}",
            ]
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }
}
