import Foundation
import Glibc
import Testing
import WeftCore
import WeftFirewall
import WeftLinux
import WeftTestSupport

/// The real iptables and nft, run from a thread inside a network namespace of the test's own
/// (a child spawned there inherits it), so the host's rules are never touched.
@Suite(.serialized, .enabled(if: geteuid() == 0 && findInPath("unshare") != nil && findInPath("iptables") != nil && findInPath("nft") != nil,
                             "needs root, unshare, iptables and nft (tools/prereqs installs them)"))
struct PacketFilterTests {
    let rules = TrafficRules(network: IPv4Prefix("10.244.0.0/16")!, subnet: IPv4Prefix("10.244.1.0/24")!, masquerade: true, forward: true)

    func inNamespace(_ body: () throws -> Void) throws {
        let holder = try Subprocess(["unshare", "--net", "sleep", "30"])
        defer { _ = holder.stop(seconds: 2) }
        let path = "/proc/\(holder.pid)/ns/net"
        // unshare execs sleep once the namespace exists: wait until the child's differs from ours.
        let ours = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net")
        for _ in 0..<200 where (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) == ours {
            usleep(10_000)
        }
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: path) != ours, "the namespace exists")
        try NetworkNamespace.withEntered(path: path) { try body() }
    }

    func shell(_ command: [String]) throws -> String {
        guard let result = try ChildProcess.run(command, timeout: 10) else { return "" }
        return result.output
    }

    @Test("iptables: installed once however often ensured, a flushed chain or a deleted jump is put back, remove leaves nothing")
    func iptables() throws {
        try inNamespace {
            let filter = try PacketFilter(tool: .iptables, rules: rules)
            #expect(try filter.ensure() == true)
            #expect(try filter.ensure() == false, "nothing to do the second time")
            let nat = try shell(["iptables", "-t", "nat", "-S"])
            #expect(nat.split(separator: "\n").filter { $0.hasPrefix("-A FLANNEL-POSTRTG") }.count == 5, "\(nat)")
            #expect(nat.split(separator: "\n").filter { $0.contains("-j FLANNEL-POSTRTG") }.count == 1, "\(nat)")

            _ = try shell(["iptables", "-t", "nat", "-D", "FLANNEL-POSTRTG", "2"])
            #expect(try filter.ensure() == true, "a missing rule is noticed")
            _ = try shell(["iptables", "-D", "FORWARD", "-m", "comment", "--comment", "flanneld forward", "-j", "FLANNEL-FWD"])
            #expect(try filter.ensure() == true, "a missing jump is noticed")
            // An extra rule in our chain changes the order: rebuilt.
            _ = try shell(["iptables", "-t", "nat", "-I", "FLANNEL-POSTRTG", "1", "-j", "RETURN"])
            #expect(try filter.ensure() == true)
            #expect(try shell(["iptables", "-t", "nat", "-S", "FLANNEL-POSTRTG"]) == nat.split(separator: "\n").filter { $0.contains("N FLANNEL-POSTRTG") || $0.hasPrefix("-A FLANNEL-POSTRTG") }.joined(separator: "\n") + "\n")

            try filter.remove()
            #expect(!(try shell(["iptables", "-t", "nat", "-S"])).contains("FLANNEL"))
            #expect(!(try shell(["iptables", "-S"])).contains("FLANNEL"))
            try filter.remove()  // idempotent
        }
    }

    @Test("nft: the table is replaced atomically, a deleted table is put back, remove deletes it")
    func nftables() throws {
        try inNamespace {
            let filter = try PacketFilter(tool: .nftables, rules: rules)
            #expect(try filter.ensure() == true)
            #expect(try filter.ensure() == false)
            let table = try shell(["nft", "list", "table", "ip", "flannel-ipv4"])
            #expect(table.contains("masquerade fully-random") && table.contains("ip daddr 10.244.0.0/16 accept"), "\(table)")
            _ = try shell(["nft", "flush", "chain", "ip", "flannel-ipv4", "postrtg"])
            #expect(try filter.ensure() == true, "a flushed chain is noticed")
            #expect(try shell(["nft", "list", "table", "ip", "flannel-ipv4"]) == table)
            _ = try shell(["nft", "delete", "table", "ip", "flannel-ipv4"])
            #expect(try filter.ensure() == true)
            try filter.remove()
            #expect(!(try shell(["nft", "list", "ruleset"])).contains("flannel"))
            try filter.remove()
        }
    }
}
