import Foundation
import Testing
import WeftLinux
import WeftTestSupport

extension NamespaceTests {
/// `weft lab`: labs built, used and removed by the command itself, in every mode; interrupted
/// half-way; and a short compare. Each test removes its labs with `weft lab down` even when it
/// fails, and checks `ip netns list` itself.
@Suite(.serialized, .enabled(if: Environment.canRunNamespaces, Comment(rawValue: Environment.missingForNamespaces ?? "")))
struct LabCommandTests {
    /// Short and starting with "wt", so that tools/test's sweep of "wt" labs can remove
    /// leftovers; `<prefix>-vxlan` stays well within the prefix rule's 24 characters.
    private static func prefix() -> String { "wt" + String(UInt32.random(in: 46656..<1_679_616), radix: 36) }

    private func weft(_ arguments: [String], timeout: Double = 60) throws -> CommandResult {
        try run([Environment.weftBinary] + arguments, timeout: timeout)
    }

    private func namespaces(_ prefix: String) throws -> [String] {
        try run(["ip", "netns", "list"], timeout: 10).output.split(separator: "\n")
            .map { String($0.split(separator: " ")[0]) }.filter { $0.hasPrefix(prefix + "-") }
    }

    private func letter(_ index: Int) -> String { String(UnicodeScalar(UInt8(64 + index))) }

    @Test("up, every pod pings every other, status, exec's exit status, up refused twice, down leaves nothing",
          arguments: [("weft", 2), ("weft", 3), ("vxlan", 2), ("vxlan", 3), ("route", 2), ("route", 3), ("wireguard-go", 2), ("wireguard-go", 3), ("nebula", 2), ("nebula", 3)])
    func upAndDown(mode: String, nodes: Int) throws {
        let prefix = Self.prefix()
        defer { _ = try? weft(["lab", "down", "--prefix", prefix]) }
        let up = try weft(["lab", "up", "--prefix", prefix, "--mode", mode, "--nodes", String(nodes)])
        try #require(up.status == 0, "\(up)")
        #expect(up.output.contains("lab: up prefix=\(prefix) mode=\(mode) nodes=\(nodes)"), "\(up.output)")
        let created = try namespaces(prefix)
        #expect(created.count == 2 * nodes + (nodes > 2 ? 1 : 0), "\(created)")

        for from in 1...nodes {
            for to in 1...nodes where to != from {
                let ping = try weft(["lab", "exec", "--prefix", prefix, "pod" + letter(from), "--", "ping", "-n", "-c", "1", "-W", "2", "10.244.\(to).2"])
                #expect(ping.status == 0, "pod \(from) → pod \(to) in \(mode) mode: \(ping)")
            }
        }
        let mtu = ["weft": 1472, "vxlan": 1450, "route": 1500, "wireguard-go": 1420, "nebula": 1300][mode] ?? 0
        let fits = try weft(["lab", "exec", "--prefix", prefix, "podA", "--", "ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", String(mtu - 28), "10.244.2.2"])
        #expect(fits.status == 0, "a pod-MTU packet crosses in \(mode) mode: \(fits)")

        let exec = try weft(["lab", "exec", "--prefix", prefix, "nodeB", "--", "sh", "-c", "exit 7"])
        #expect(exec.status == 7)
        let status = try weft(["lab", "status", "--prefix", prefix])
        #expect(status.status == 0)
        #expect(status.output.contains("lab \(prefix): mode=\(mode) nodes=\(nodes)"), "\(status.output)")
        #expect(status.output.contains("== \(prefix)-nodeA"))
        switch mode {
        case "weft":
            #expect(status.output.contains("flannel0"))
            #expect(status.output.components(separatedBy: " run --iface ul0 --network 10.244.0.0/16 --subnet-dir").count == nodes + 1, "\(status.output)")
        case "vxlan":
            let link = try weft(["lab", "exec", "--prefix", prefix, "nodeA", "--", "ip", "-d", "link", "show", "flannel.1"])
            #expect(link.output.contains("vxlan id 1 local 198.18.0.1 dev ul0") && link.output.contains("dstport 8472") && link.output.contains("nolearning"), "\(link.output)")
            #expect(link.output.contains("mtu 1450"))
        case "wireguard-go":
            #expect(status.output.contains("wireguard-go wgA"), "\(status.output)")
            let handshakes = try weft(["lab", "exec", "--prefix", prefix, "nodeA", "--", "wg", "show", "all", "latest-handshakes"])
            #expect(handshakes.status == 0 && !handshakes.output.isEmpty, "a WireGuard handshake happened: \(handshakes)")
        case "nebula":
            #expect(status.output.contains("nebula -config"), "\(status.output)")
            #expect(status.output.contains("nebula1"), "\(status.output)")
        default:
            #expect(!status.output.contains("flannel"))
        }

        let again = try weft(["lab", "up", "--prefix", prefix, "--mode", mode])
        #expect(again.status != 0)
        #expect(again.errorOutput.contains("already exist") && again.errorOutput.split(separator: "\n").count == 1, "\(again)")

        let down = try weft(["lab", "down", "--prefix", prefix])
        #expect(down.status == 0, "\(down)")
        #expect(try namespaces(prefix).isEmpty)
        #expect(access("/run/weft-lab/\(prefix)", F_OK) != 0, "state directory removed")
        #expect(try weft(["lab", "down", "--prefix", prefix]).status == 0, "down again: nothing to do, no failure")
        #expect(try weft(["lab", "exec", "--prefix", prefix, "podA", "--", "true"]).status != 0)
    }

    @Test("up --no-forwarders: weft mode's lab and subnet.env files but no weft run; forwarders started through exec carry the pods; down ends them")
    func noForwarders() throws {
        let prefix = Self.prefix()
        defer { _ = try? weft(["lab", "down", "--prefix", prefix]) }
        let up = try weft(["lab", "up", "--prefix", prefix, "--mode", "weft", "--no-forwarders"])
        try #require(up.status == 0, "\(up)")
        #expect(up.output.hasPrefix("lab: up prefix=\(prefix) mode=weft nodes=2 pod-mtu=1472 forwarders=none"), "\(up.output)")
        #expect(try namespaces(prefix).count == 4)
        let state = "/run/weft-lab/\(prefix)"
        for index in 1...2 {
            let file = "\(state)/subnet-node\(letter(index)).env"
            #expect(up.output.contains(file), "\(up.output)")
            #expect(try String(contentsOfFile: file, encoding: .utf8)
                    == "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.\(index).1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n")
        }
        let status = try weft(["lab", "status", "--prefix", prefix])
        #expect(status.output.contains("lab \(prefix): mode=weft nodes=2") && status.output.contains("forwarders=false"), "\(status.output)")
        #expect(!status.output.contains("  proc  ") && !status.output.contains("flannel0"), "no forwarder, no TUN: \(status.output)")
        let link = try weft(["lab", "exec", "--prefix", prefix, "podA", "--", "ip", "link", "show", "eth0"])
        #expect(link.output.contains("mtu 1472"), "\(link.output)")
        #expect(try weft(["lab", "exec", "--prefix", prefix, "podA", "--", "ping", "-n", "-c", "1", "-W", "2", "10.244.1.1"]).status == 0,
                "pod A reaches its gateway")
        #expect(try weft(["lab", "exec", "--prefix", prefix, "podA", "--", "ping", "-n", "-c", "1", "-W", "1", "10.244.2.2"]).status != 0,
                "nothing carries pod traffic before a forwarder runs")

        // The caller's own forwarders, with the lab's subnet.env files and a registry of its own.
        var forwarders: [BackgroundProcess] = []
        for index in 1...2 {
            let node = "node" + letter(index)
            forwarders.append(try BackgroundProcess([
                Environment.weftBinary, "lab", "exec", "--prefix", prefix, node, "--", Environment.weftBinary, "run", "--iface", "ul0",
                "--network", "10.244.0.0/16", "--subnet-dir", "\(state)/own-registry", "--subnet-file", "\(state)/subnet-\(node).env",
            ]))
        }
        let deadline = Date().addingTimeInterval(20)
        var ping = try weft(["lab", "exec", "--prefix", prefix, "podA", "--", "ping", "-n", "-c", "1", "-W", "1", "10.244.2.2"])
        while ping.status != 0 && Date() < deadline && forwarders.allSatisfy(\.isRunning) {
            usleep(100_000)
            ping = try weft(["lab", "exec", "--prefix", prefix, "podA", "--", "ping", "-n", "-c", "1", "-W", "1", "10.244.2.2"])
        }
        #expect(ping.status == 0, "pod A → pod B through the caller's forwarders: \(ping); \(forwarders.map(\.errorOutput))")

        let down = try weft(["lab", "down", "--prefix", prefix])
        #expect(down.status == 0, "\(down)")
        for forwarder in forwarders {
            let ended = forwarder.wait(seconds: 10)
            #expect(!forwarder.isRunning, "down ends the caller's weft run too: \(ended)")
        }
        #expect(try namespaces(prefix).isEmpty)
        #expect(access(state, F_OK) != 0)
    }

    @Test("tools/lab runs weft lab: up, exec's exit status, a refused flag in one line, down")
    func toolsLab() throws {
        let prefix = Self.prefix()
        let environment = ["WEFT_BIN": Environment.weftBinary]
        func lab(_ arguments: [String]) throws -> CommandResult {
            try run([Environment.tool("lab")] + arguments, timeout: 60, environment: environment)
        }
        defer { _ = try? weft(["lab", "down", "--prefix", prefix]) }
        let help = try lab(["--help"])
        #expect(help.status == 0 && help.output.contains("Runs `weft lab SUBCOMMAND ...`"), "\(help)")
        let up = try lab(["up", "--prefix", prefix, "--mode", "route", "--nodes", "3"])
        try #require(up.status == 0, "\(up)")
        #expect(up.output.contains("lab: up prefix=\(prefix) mode=route nodes=3 pod-mtu=1500 underlay=bridge"), "\(up.output)")
        #expect(try namespaces(prefix).count == 7)
        #expect(try lab(["exec", "--prefix", prefix, "podC", "--", "ping", "-n", "-c", "1", "-W", "2", "10.244.1.2"]).status == 0)
        #expect(try lab(["exec", "--prefix", prefix, "nodeC", "--", "sh", "-c", "exit 5"]).status == 5)
        let refused = try lab(["up", "--prefix", prefix, "--mode", "route", "--no-forwarders"])
        #expect(refused.status != 0)
        #expect(refused.errorOutput.contains("--no-forwarders applies to weft mode only") && refused.errorOutput.split(separator: "\n").count == 1,
                "\(refused)")
        let down = try lab(["down", "--prefix", prefix])
        #expect(down.status == 0 && down.output.contains("lab: down prefix=\(prefix) (7 namespaces removed)"), "\(down)")
        #expect(try namespaces(prefix).isEmpty)
    }

    @Test("SIGINT while up builds an eight-node lab: exit 130 and nothing left")
    func interruptedUp() throws {
        let prefix = Self.prefix()
        defer { _ = try? weft(["lab", "down", "--prefix", prefix]) }
        let up = try BackgroundProcess([Environment.weftBinary, "lab", "up", "--prefix", prefix, "--mode", "weft", "--nodes", "8"])
        let deadline = Date().addingTimeInterval(20)
        while try namespaces(prefix).count < 4 && up.isRunning && Date() < deadline { usleep(10_000) }
        try #require(up.isRunning, "up still building when interrupted: \(up.wait(seconds: 1))")
        up.signal(SIGINT)
        let result = up.wait(seconds: 30)
        #expect(result.status == 130, "\(result.transcript)")
        #expect(result.errorOutput.contains("interrupted by SIGINT"), "\(result.errorOutput)")
        #expect(try namespaces(prefix).isEmpty)
        #expect(access("/run/weft-lab/\(prefix)", F_OK) != 0)
        let forwarders = try run(["pgrep", "-f", "/run/weft-lab/\(prefix)/"], timeout: 10)
        #expect(forwarders.output.isEmpty, "no weft run left: \(forwarders.output)")
    }

    @Test("SIGINT during compare's measurements: exit 130, every lab removed, no results written")
    func interruptedCompare() throws {
        let prefix = Self.prefix()
        defer { _ = try? weft(["lab", "down", "--prefix", prefix]) }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-lab-\(prefix)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let compare = try BackgroundProcess([Environment.weftBinary, "lab", "compare", "--prefix", prefix, "--duration", "3",
                                             "--json", "\(directory)/c.json", "--chart", "\(directory)/c.svg"])
        let deadline = Date().addingTimeInterval(60)
        while !compare.errorOutput.contains("lab: [1/25]") && compare.isRunning && Date() < deadline { usleep(20_000) }
        try #require(compare.isRunning, "compare still measuring when interrupted: \(compare.wait(seconds: 1))")
        #expect(try namespaces(prefix).count == 20, "five two-node labs: weft, vxlan, route, wireguard-go, nebula")
        usleep(500_000)  // well inside the second measurement
        compare.signal(SIGINT)
        let result = compare.wait(seconds: 30)
        #expect(result.status == 130, "\(result.transcript)")
        #expect(try namespaces(prefix).isEmpty)
        #expect(access("\(directory)/c.json", F_OK) != 0 && access("\(directory)/c.svg", F_OK) != 0)
        #expect(try run(["pgrep", "-f", "/run/weft-lab/\(prefix)-"], timeout: 10).output.isEmpty, "no weft run left")
        let bench = URL(fileURLWithPath: Environment.weftBinary).resolvingSymlinksInPath().path + " bench "
        #expect(try run(["pgrep", "-f", bench], timeout: 10).output.isEmpty, "no weft bench left")
    }

    @Test("compare --duration 1, all modes and cells: table, JSON and SVG with a figure for each (never judging speed)")
    func compareSmoke() throws {
        let prefix = Self.prefix()
        defer { _ = try? weft(["lab", "down", "--prefix", prefix]) }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-lab-\(prefix)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try weft(["lab", "compare", "--prefix", prefix, "--duration", "1", "--json", "\(directory)/c.json", "--chart", "\(directory)/c.svg"],
                              timeout: 300)
        try #require(result.status == 0, "\(result.transcript)")
        #expect(try namespaces(prefix).isEmpty, "every lab removed")

        let cells = ["tcp1", "tcp4", "udp64", "udp1400", "latency"], modes = ["weft", "vxlan", "route", "wireguard-go", "nebula"]
        // The modes with forwarder processes have a CPU figure; the kernel's have none.
        let measured: Set<String> = ["weft", "wireguard-go", "nebula"]
        let lines = result.output.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        for cell in cells {
            for mode in modes {
                let line = lines.first { $0.count > 2 && $0[0] == cell && $0[1] == mode }
                #expect(line != nil, "table line for \(cell) \(mode): \(result.output)")
                if let cpu = line?.last {
                    #expect(measured.contains(mode) ? Double(cpu) != nil : cpu == "-", "CPU s/GB column of \(cell) \(mode): \(cpu)")
                }
            }
        }

        let data = try #require(FileManager.default.contents(atPath: "\(directory)/c.json"))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["schema"] as? String == "weft-lab-compare/1")
        #expect((object["command"] as? String)?.hasPrefix("weft lab compare --prefix \(prefix) --duration 1") == true)
        let results = try #require(object["results"] as? [[String: Any]])
        #expect(results.count == 25)
        for entry in results {
            let name = "\(entry["cell"] ?? "?") \(entry["mode"] ?? "?")"
            #expect((entry["value"] as? Double ?? 0) > 0, "\(name)")
            #expect((entry["ratio_to_route"] as? Double ?? 0) > 0, "\(name)")
            #expect((entry["ratio_to_vxlan"] as? Double ?? 0) > 0, "\(name)")
            if measured.contains(entry["mode"] as? String ?? "") {
                #expect((entry["cpu_seconds_per_gb"] as? Double ?? 0) > 0, "\(name)")
            } else {
                #expect(entry["cpu_seconds_per_gb"] is NSNull, "\(name)")
            }
        }
        let runs = try #require(object["runs"] as? [[String: Any]])
        #expect(runs.count == 25)
        for entry in runs {
            let bench = entry["bench"] as? [String: Double] ?? [:]
            #expect((bench["duration_s"] ?? 0) > 0 && (entry["bytes_moved"] as? Double ?? 0) > 0, "\(entry)")
        }

        let svg = try String(contentsOfFile: "\(directory)/c.svg", encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n"))
        #expect(svg.components(separatedBy: "class=\"bar\"").count - 1 == 25)
    }
}
}
