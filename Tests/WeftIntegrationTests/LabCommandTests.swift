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
    /// Short, so that `<prefix>-vxlan` stays within tools/lab's 12 characters and tools/test's
    /// sweep of "wt" labs can remove leftovers.
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
          arguments: [("weft", 2), ("weft", 3), ("vxlan", 2), ("vxlan", 3), ("route", 2), ("route", 3)])
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
        let mtu = ["weft": 1472, "vxlan": 1450, "route": 1500][mode] ?? 0
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
        while !compare.errorOutput.contains("lab: [1/15]") && compare.isRunning && Date() < deadline { usleep(20_000) }
        try #require(compare.isRunning, "compare still measuring when interrupted: \(compare.wait(seconds: 1))")
        #expect(try namespaces(prefix).count == 12, "three two-node labs")
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
                              timeout: 150)
        try #require(result.status == 0, "\(result.transcript)")
        #expect(try namespaces(prefix).isEmpty, "every lab removed")

        let cells = ["tcp1", "tcp4", "udp64", "udp1400", "latency"], modes = ["weft", "vxlan", "route"]
        let lines = result.output.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        for cell in cells {
            for mode in modes {
                let line = lines.first { $0.count > 2 && $0[0] == cell && $0[1] == mode }
                #expect(line != nil, "table line for \(cell) \(mode): \(result.output)")
                if let cpu = line?.last {
                    #expect(mode == "weft" ? Double(cpu) != nil : cpu == "-", "CPU s/GB column of \(cell) \(mode): \(cpu)")
                }
            }
        }

        let data = try #require(FileManager.default.contents(atPath: "\(directory)/c.json"))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["schema"] as? String == "weft-lab-compare/1")
        #expect((object["command"] as? String)?.hasPrefix("weft lab compare --prefix \(prefix) --duration 1") == true)
        let results = try #require(object["results"] as? [[String: Any]])
        #expect(results.count == 15)
        for entry in results {
            let name = "\(entry["cell"] ?? "?") \(entry["mode"] ?? "?")"
            #expect((entry["value"] as? Double ?? 0) > 0, "\(name)")
            #expect((entry["ratio_to_route"] as? Double ?? 0) > 0, "\(name)")
            #expect((entry["ratio_to_vxlan"] as? Double ?? 0) > 0, "\(name)")
            if entry["mode"] as? String == "weft" {
                #expect((entry["cpu_seconds_per_gb"] as? Double ?? 0) > 0, "\(name)")
            } else {
                #expect(entry["cpu_seconds_per_gb"] is NSNull, "\(name)")
            }
        }
        let runs = try #require(object["runs"] as? [[String: Any]])
        #expect(runs.count == 15)
        for entry in runs {
            let bench = entry["bench"] as? [String: Double] ?? [:]
            #expect((bench["duration_s"] ?? 0) > 0 && (entry["bytes_moved"] as? Double ?? 0) > 0, "\(entry)")
        }

        let svg = try String(contentsOfFile: "\(directory)/c.svg", encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n"))
        #expect(svg.components(separatedBy: "class=\"bar\"").count - 1 == 15)
    }
}
}
