import Testing
import WeftCore
@testable import WeftLinux

/// flanneld's --iface-regex rule over a fixed interface list (no I/O).
@Suite struct InterfaceChoiceTests {
    let interfaces = [
        NetworkInterface(name: "lo", index: 1, ipv4: [.init(address: IPv4Address(127, 0, 0, 1), prefixLength: 8)], mtu: 65536),
        NetworkInterface(name: "eth0", index: 2, ipv4: [.init(address: IPv4Address(192, 168, 1, 5), prefixLength: 24)], mtu: 1500),
        NetworkInterface(name: "eth1", index: 3, ipv4: [.init(address: IPv4Address(198, 18, 0, 1), prefixLength: 24),
                                                        .init(address: IPv4Address(198, 19, 0, 1), prefixLength: 24)], mtu: 9000),
        NetworkInterface(name: "198x", index: 4, ipv4: [], mtu: 1500),
    ]

    func choose(_ patterns: [String]) -> String? {
        NetworkInterface.firstMatching(patterns, in: interfaces) { pattern, text in
            (try? Regex(pattern)).map { text.contains($0) } ?? false
        }.map { "\($0.0.name) \($0.1)" }
    }

    @Test("addresses before names, patterns in order, unanchored like Go's MatchString")
    func rule() {
        #expect(choose(["198\\.19\\."]) == "eth1 198.19.0.1", "the matching address is the one to bind")
        #expect(choose(["^eth"]) == "eth0 192.168.1.5", "by name, first in order")
        #expect(choose(["198"]) == "eth1 198.18.0.1", "an address match wins over the name 198x")
        #expect(choose(["nothing", "eth1"]) == "eth1 198.18.0.1", "the second pattern when the first matches nothing")
        #expect(choose(["^198x$"]) == nil, "a name match without an IPv4 address binds nothing")
        #expect(choose([]) == nil)
    }

    func underlay(_ request: UnderlayRequest, defaultRoute: String? = "eth0") -> String {
        do {
            let choice = try request.choose(from: interfaces, defaultRouteInterface: { defaultRoute }) { pattern, text in
                (try? Regex(pattern)).map { text.contains($0) } ?? false
            }
            return "\(choice.interface.name) \(choice.bindAddress)" + choice.passedOver.map { " | " + $0 }.joined()
        } catch {
            return "error: \(error)"
        }
    }

    @Test("flanneld's underlay order: --iface entries, then --iface-regex, else --public-ip's interface or the default route")
    func underlayOrder() {
        #expect(underlay(UnderlayRequest()) == "eth0 192.168.1.5", "the default route's interface")
        #expect(underlay(UnderlayRequest(publicIP: IPv4Address(198, 19, 0, 1))) == "eth1 198.19.0.1",
                "the interface holding --public-ip, bound at that address")
        #expect(underlay(UnderlayRequest(interfaces: ["eth1"])) == "eth1 198.18.0.1", "a name binds the first address")
        #expect(underlay(UnderlayRequest(interfaces: ["198.19.0.1"])) == "eth1 198.19.0.1", "an address names its interface")
        #expect(underlay(UnderlayRequest(interfaces: ["eth9", "198x", "eth1", "eth0"]))
                == "eth1 198.18.0.1 | --iface eth9: no interface named eth9 | --iface 198x: 198x has no IPv4 address",
                "in order, the first usable entry wins and the others are reported")
        #expect(underlay(UnderlayRequest(interfaces: ["eth9"], patterns: ["^eth"])) == "eth0 192.168.1.5 | --iface eth9: no interface named eth9",
                "--iface-regex is the fallback when no --iface entry is usable")
        #expect(underlay(UnderlayRequest(interfaces: ["eth1"], publicIP: IPv4Address(203, 0, 113, 9))) == "eth1 198.18.0.1",
                "with --iface, --public-ip need not be local (NAT)")
    }

    @Test("a failed choice says what was tried and lists the interfaces there are")
    func underlayErrors() {
        #expect(underlay(UnderlayRequest(interfaces: ["eth9"]))
                == "error: no usable underlay interface: --iface eth9: no interface named eth9 (interfaces here: lo 127.0.0.1/8; eth0 192.168.1.5/24; eth1 198.18.0.1/24 198.19.0.1/24; 198x)")
        #expect(underlay(UnderlayRequest(interfaces: ["10.9.9.9"], patterns: ["^wl"])).hasPrefix(
            "error: no usable underlay interface: --iface 10.9.9.9: no interface has the address 10.9.9.9; --iface-regex ^wl: no interface with an IPv4 address matches (interfaces here: lo"))
        #expect(underlay(UnderlayRequest(publicIP: IPv4Address(203, 0, 113, 9))).hasPrefix(
            "error: no interface has the --public-ip address 203.0.113.9; without --iface or --iface-regex the underlay is the interface holding it"))
        #expect(underlay(UnderlayRequest(), defaultRoute: nil).hasPrefix("error: no --iface given and no IPv4 default route"))
        #expect(underlay(UnderlayRequest(), defaultRoute: "198x").hasPrefix("error: the default route's interface: 198x has no IPv4 address"))
    }
}
