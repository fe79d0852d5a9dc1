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
}
