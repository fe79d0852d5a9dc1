import Testing
import WeftCore
import WeftFirewall

/// flanneld's rules (pkg/trafficmngr/iptables and nftables), as Weft renders them.
@Suite struct TrafficRulesTests {
    let rules = TrafficRules(network: IPv4Prefix("10.244.0.0/16")!, subnet: IPv4Prefix("10.244.1.0/24")!, masquerade: true, forward: true)

    @Test("iptables: flanneld's FLANNEL-POSTRTG and FLANNEL-FWD chains, rule for rule, in order")
    func iptablesChains() {
        let chains = rules.iptablesChains
        #expect(chains.map(\.name) == ["FLANNEL-POSTRTG", "FLANNEL-FWD"])
        let masq = ["-m", "comment", "--comment", "flanneld masq"]
        #expect(chains[0].table == "nat" && chains[0].parent == "POSTROUTING")
        #expect(chains[0].jump == masq + ["-j", "FLANNEL-POSTRTG"])
        #expect(chains[0].rules.map(\.specification) == [
            ["-m", "mark", "--mark", "0x4000/0x4000"] + masq + ["-j", "RETURN"],
            ["-s", "10.244.0.0/16", "-d", "10.244.0.0/16"] + masq + ["-j", "RETURN"],
            ["!", "-s", "10.244.0.0/16", "-d", "10.244.1.0/24"] + masq + ["-j", "RETURN"],
            ["-s", "10.244.0.0/16", "!", "-d", "224.0.0.0/4"] + masq + ["-j", "MASQUERADE", "--random-fully"],
            ["!", "-s", "10.244.0.0/16", "-d", "10.244.0.0/16"] + masq + ["-j", "MASQUERADE", "--random-fully"],
        ])
        let forward = ["-m", "comment", "--comment", "flanneld forward"]
        #expect(chains[1].table == "filter" && chains[1].parent == "FORWARD")
        #expect(chains[1].rules.map(\.specification) == [
            ["-s", "10.244.0.0/16"] + forward + ["-j", "ACCEPT"],
            ["-d", "10.244.0.0/16"] + forward + ["-j", "ACCEPT"],
        ])
    }

    @Test("--ip-masq-fully-random-disable drops --random-fully; each part can be off")
    func options() {
        var plain = rules
        plain.fullyRandom = false
        #expect(!plain.iptablesChains[0].rules.contains { $0.specification.contains("--random-fully") })
        #expect(!plain.nftablesScript.contains("fully-random"))
        var forwardOnly = rules
        forwardOnly.masquerade = false
        #expect(forwardOnly.iptablesChains.map(\.name) == ["FLANNEL-FWD"])
        #expect(!forwardOnly.nftablesScript.contains("postrtg"))
        var none = forwardOnly
        none.forward = false
        #expect(none.isEmpty && none.iptablesChains.isEmpty)
    }

    @Test("nft: one script that replaces the flannel-ipv4 table atomically")
    func nftablesScript() {
        #expect(rules.nftablesScript == """
            table ip flannel-ipv4
            delete table ip flannel-ipv4
            table ip flannel-ipv4 {
            \tchain postrtg {
            \t\ttype nat hook postrouting priority srcnat; policy accept;
            \t\tmeta mark & 0x4000 == 0x4000 return
            \t\tip saddr 10.244.0.0/16 ip daddr 10.244.0.0/16 return
            \t\tip saddr != 10.244.0.0/16 ip daddr 10.244.1.0/24 return
            \t\tip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random
            \t\tip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random
            \t}
            \tchain forward {
            \t\ttype filter hook forward priority filter; policy accept;
            \t\tip saddr 10.244.0.0/16 accept
            \t\tip daddr 10.244.0.0/16 accept
            \t}
            }

            """)
    }
}
