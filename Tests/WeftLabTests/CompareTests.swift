import Foundation
import FoundationXML
import Testing
@testable import WeftLab

/// weft lab compare's pure parts: bench arguments and JSON, the schedule, ratios, table, JSON
/// and SVG. No root, no namespaces.
struct CompareTests {
    static let tcp = #"{"mode":"tcp","streams":4,"duration_s":10.0,"bytes":12500000000,"bits_per_second":10000000000.0}"#
    static let udp = #"{"mode":"udp","size":64,"duration_s":10.0,"sent":1000000,"received":900000,"lost":100000,"reordered":0,"duplicates":0,"packets_per_second":90000.0,"bits_per_second":46080000.0}"#
    static let latency = #"{"mode":"latency","size":64,"duration_s":10.0,"samples":50000,"lost":0,"min_us":40.0,"mean_us":70.5,"p50_us":67.0,"p90_us":80.0,"p99_us":91.0,"p999_us":120.0,"max_us":300.0}"#

    @Test("bench client arguments follow weft bench's contract")
    func clientArguments() {
        #expect(CompareCell.tcp4.clientArguments(server: "10.244.2.2", port: 5301, duration: 10, warmup: 1)
                == ["bench", "client", "--server", "10.244.2.2", "--port", "5301", "--mode", "tcp", "--streams", "4",
                    "--duration", "10", "--warmup", "1", "--json"])
        #expect(CompareCell.udp1400.clientArguments(server: "10.244.3.2", port: 5301, duration: 1, warmup: 0.25)
                == ["bench", "client", "--server", "10.244.3.2", "--port", "5301", "--mode", "udp", "--size", "1400",
                    "--duration", "1", "--warmup", "0.25", "--json"])
        #expect(CompareCell.latency.clientArguments(server: "10.244.2.2", port: 5301, duration: 5, warmup: 1).contains("latency"))
    }

    @Test("bench JSON: the headline figure and the bytes delivered per mode")
    func parse() throws {
        let tcp = try BenchFigures.parse(Self.tcp, cell: .tcp4)
        #expect(tcp.value == 1e10 && tcp.bytesMoved == 12.5e9)
        #expect(tcp.fields == ["streams": 4, "duration_s": 10, "bytes": 12.5e9, "bits_per_second": 1e10])
        let one = try BenchFigures.parse(#"{"mode":"tcp","streams":1,"duration_s":1.0,"bytes":0,"bits_per_second":1}"#, cell: .tcp1)
        #expect(one.fields == ["streams": 1, "duration_s": 1, "bytes": 0, "bits_per_second": 1], "0 and 1 are numbers, not booleans")
        let udp = try BenchFigures.parse(Self.udp + "\n", cell: .udp64)
        #expect(udp.value == 90000 && udp.bytesMoved == 900000 * 64)
        #expect(udp.fields["lost"] == 100000)
        let latency = try BenchFigures.parse(Self.latency, cell: .latency)
        #expect(latency.value == 67 && latency.bytesMoved == 2 * 50000 * 64)
    }

    @Test("bench output that is not the expected JSON is an error", arguments: [
        ("", CompareCell.tcp1), ("weft: no route", .tcp1), (CompareTests.udp, .tcp1),
        (#"{"mode":"tcp","bytes":5}"#, .tcp1), (#"{"mode":"latency","samples":3,"size":64}"#, .latency),
    ])
    func parseErrors(text: String, cell: CompareCell) {
        #expect(throws: LabError.self) { try BenchFigures.parse(text, cell: cell) }
    }

    @Test("lists of modes and cells")
    func lists() throws {
        #expect(try LabMode.parseList("weft, vxlan,route") == [.weft, .vxlan, .route])
        #expect(try CompareCell.parseList("latency,tcp1") == [.latency, .tcp1])
        #expect(throws: LabError.self) { try LabMode.parseList("weft,fou") }
        #expect(throws: LabError.self) { try CompareCell.parseList("tcp1,tcp1") }
        #expect(throws: LabError.self) { try CompareCell.parseList(",") }
    }

    @Test("schedule: every round runs every cell in every mode once, the modes' order rotating from cell to cell")
    func schedule() {
        let schedule = CompareSchedule(rounds: 2, cells: [.tcp1, .tcp4, .latency], modes: [.weft, .vxlan, .route])
        #expect(schedule.runCount == 18)
        #expect(schedule.slots.map(\.modes) == [
            [.weft, .vxlan, .route], [.vxlan, .route, .weft], [.route, .weft, .vxlan],
            [.weft, .vxlan, .route], [.vxlan, .route, .weft], [.route, .weft, .vxlan],
        ])
        #expect(schedule.slots.map(\.round) == [1, 1, 1, 2, 2, 2])
        #expect(schedule.slots.map(\.cell) == [.tcp1, .tcp4, .latency, .tcp1, .tcp4, .latency])
        // Each mode goes first equally often.
        #expect(Set([LabMode.weft, .vxlan, .route].map { mode in schedule.slots.filter { $0.modes.first == mode }.count }) == [2])
    }

    static func report(rounds: Int = 1) throws -> CompareReport {
        var runs: [CompareRun] = []
        func tcp(_ gbits: Double) -> String { #"{"mode":"tcp","streams":1,"duration_s":10,"bytes":\#(gbits * 1.25e9),"bits_per_second":\#(gbits * 1e9)}"# }
        func udp(_ kpps: Double) -> String {
            #"{"mode":"udp","size":64,"duration_s":10,"sent":\#(kpps * 11e3),"received":\#(kpps * 1e4),"lost":\#(kpps * 1e3),"reordered":0,"duplicates":0,"packets_per_second":\#(kpps * 1e3),"bits_per_second":\#(kpps * 512e3)}"#
        }
        func latency(_ p50: Double) -> String {
            #"{"mode":"latency","size":64,"duration_s":10,"samples":1000,"lost":0,"min_us":1,"mean_us":\#(p50),"p50_us":\#(p50),"p90_us":\#(p50),"p99_us":\#(p50 * 2),"p999_us":\#(p50 * 3),"max_us":\#(p50 * 4)}"#
        }
        for round in 1...rounds {
            let extra = Double(round - 1)
            runs.append(CompareRun(round: round, cell: .tcp1, mode: .route, figures: try .parse(tcp(10 + extra), cell: .tcp1), cpuSeconds: nil))
            runs.append(CompareRun(round: round, cell: .tcp1, mode: .vxlan, figures: try .parse(tcp(8), cell: .tcp1), cpuSeconds: nil))
            runs.append(CompareRun(round: round, cell: .tcp1, mode: .weft, figures: try .parse(tcp(4), cell: .tcp1), cpuSeconds: 10))
            runs.append(CompareRun(round: round, cell: .udp64, mode: .route, figures: try .parse(udp(160), cell: .udp64), cpuSeconds: nil))
            runs.append(CompareRun(round: round, cell: .udp64, mode: .vxlan, figures: try .parse(udp(80), cell: .udp64), cpuSeconds: nil))
            runs.append(CompareRun(round: round, cell: .udp64, mode: .weft, figures: try .parse(udp(100), cell: .udp64), cpuSeconds: 1.28))
            runs.append(CompareRun(round: round, cell: .latency, mode: .route, figures: try .parse(latency(60), cell: .latency), cpuSeconds: nil))
            runs.append(CompareRun(round: round, cell: .latency, mode: .vxlan, figures: try .parse(latency(90), cell: .latency), cpuSeconds: nil))
            runs.append(CompareRun(round: round, cell: .latency, mode: .weft, figures: try .parse(latency(120), cell: .latency), cpuSeconds: 0.000128))
        }
        let setup = CompareReport.Setup(
            date: Date(timeIntervalSince1970: 1_795_435_200), command: "weft lab compare --duration 10 --chart 'a&b<c>.svg'",
            kernel: "6.18.44", cpus: 2, nodes: 2, durationSeconds: 10, warmupSeconds: 1, rounds: rounds,
            modes: [.weft, .vxlan, .route], cells: [.tcp1, .udp64, .latency], podMTU: [.weft: 1472, .vxlan: 1450, .route: 1500])
        return CompareReport(setup: setup, runs: runs)
    }

    @Test("rows: medians over rounds, ratios to route and to vxlan, CPU seconds per GB for weft only")
    func rows() throws {
        let report = try Self.report(rounds: 3)
        #expect(report.rows.count == 9)
        let tcpRoute = try #require(report.rows.first { $0.cell == .tcp1 && $0.mode == .route })
        #expect(tcpRoute.value == 11e9)  // median of 10, 11, 12
        #expect(tcpRoute.samples == [10e9, 11e9, 12e9])
        let tcpWeft = try #require(report.rows.first { $0.cell == .tcp1 && $0.mode == .weft })
        #expect(abs(try #require(tcpWeft.ratioToRoute) - 4.0 / 11) < 1e-9)
        #expect(tcpWeft.ratioToVXLAN == 0.5)
        // 3 × 10 CPU s over 3 × 5 GB.
        #expect(abs(try #require(tcpWeft.cpuSecondsPerGB) - 2) < 1e-9)
        let udpWeft = try #require(report.rows.first { $0.cell == .udp64 && $0.mode == .weft })
        #expect(udpWeft.ratioToRoute == 100.0 / 160)
        #expect(abs(try #require(udpWeft.lossPercent) - 100.0 / 11) < 1e-9)
        // 1.28 s over 10⁶ × 64 B.
        #expect(abs(try #require(udpWeft.cpuSecondsPerGB) - 20) < 1e-9)
        let latencyWeft = try #require(report.rows.first { $0.cell == .latency && $0.mode == .weft })
        #expect(latencyWeft.ratioToRoute == 2 && latencyWeft.p99Microseconds == 240)
        for row in report.rows where row.mode != .weft { #expect(row.cpuSecondsPerGB == nil) }
    }

    @Test("table: a line per cell and mode with the figure, both ratios and CPU s/GB ('-' for kernel modes)")
    func table() throws {
        let table = try Self.report().table
        let lines = table.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines[0].hasPrefix("weft lab compare, 2026-11-23 12:00 UTC: 2 nodes, 10 s per cell"))
        #expect(lines[1].split(separator: " ", omittingEmptySubsequences: true) == ["cell", "mode", "result", "x", "route", "x", "vxlan", "CPU", "s/GB"])
        func words(_ cell: String, _ mode: String) -> [Substring]? {
            lines.first { $0.hasPrefix(cell + " ") && $0.split(separator: " ")[1] == mode }?.split(separator: " ")
        }
        #expect(words("tcp1", "weft") == ["tcp1", "weft", "4.00", "Gbit/s", "0.40", "0.50", "2.00"])
        #expect(words("tcp1", "route") == ["tcp1", "route", "10.00", "Gbit/s", "1.00", "1.25", "-"])
        #expect(words("udp64", "weft") == ["udp64", "weft", "100.0", "kpps", "(51", "Mbit/s),", "9.1", "%", "lost", "0.62", "1.25", "20.00"])
        #expect(words("latency", "weft") == ["latency", "weft", "p50", "120", "µs,", "p99", "240", "µs", "2.00", "1.33", "1.00"])
        #expect(lines.filter { $0.isEmpty }.count == 2)  // a blank line between cells
    }

    @Test("JSON: schema, set-up, one result per cell and mode, every run with bench's own figures")
    func json() throws {
        let report = try Self.report(rounds: 2)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(report.json.utf8)) as? [String: Any])
        #expect(object["schema"] as? String == "weft-lab-compare/1")
        #expect(object["date"] as? String == "2026-11-23T12:00:00Z")
        #expect(object["command"] as? String == "weft lab compare --duration 10 --chart 'a&b<c>.svg'")
        #expect(Set(object.keys) == ["schema", "date", "command", "host", "nodes", "duration_s", "warmup_s", "rounds", "modes", "cells", "pod_mtu", "results", "runs"])
        #expect(object["modes"] as? [String] == ["weft", "vxlan", "route"])
        #expect((object["pod_mtu"] as? [String: Int])?["vxlan"] == 1450)
        let results = try #require(object["results"] as? [[String: Any]])
        #expect(results.count == 9)
        for result in results {
            #expect(Set(result.keys) == ["cell", "mode", "unit", "value", "samples", "ratio_to_route", "ratio_to_vxlan", "cpu_seconds_per_gb", "summary"])
            #expect((result["value"] as? Double ?? 0) > 0)
            #expect((result["samples"] as? [Double])?.count == 2)
        }
        let weft = try #require(results.first { $0["cell"] as? String == "tcp1" && $0["mode"] as? String == "weft" })
        #expect(weft["ratio_to_route"] as? Double == 0.381)  // 4 ÷ median(10, 11), four digits
        #expect(weft["cpu_seconds_per_gb"] as? Double == 2)
        let route = try #require(results.first { $0["cell"] as? String == "tcp1" && $0["mode"] as? String == "route" })
        #expect(route["cpu_seconds_per_gb"] is NSNull)
        let runs = try #require(object["runs"] as? [[String: Any]])
        #expect(runs.count == 18)
        #expect((runs[0]["bench"] as? [String: Double])?["bits_per_second"] == 10e9)
    }

    @Test("SVG: one bar per cell and mode, ratio labels, the 1.0 line, escaped title with date and command")
    func svg() throws {
        let report = try Self.report()
        let svg = report.svg
        #expect(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\""))
        #expect(svg.hasSuffix("</svg>\n"))
        for cell in report.setup.cells {
            for mode in report.setup.modes {
                #expect(svg.components(separatedBy: "<rect class=\"bar\" data-cell=\"\(cell)\" data-mode=\"\(mode)\"").count == 2, "\(cell) \(mode)")
            }
        }
        #expect(svg.components(separatedBy: "class=\"bar\"").count - 1 == 9)
        #expect(svg.contains("2026-11-23 12:00 UTC"))
        #expect(svg.contains("weft lab compare --duration 10 --chart &apos;a&amp;b&lt;c&gt;.svg&apos;"))
        #expect(!svg.contains("a&b<c>"))
        #expect(svg.contains(">0.40<") && svg.contains(">0.62<") && svg.contains(">2.00<"))
        #expect(svg.contains("stroke-dasharray"))
        // Well-formed XML.
        #expect(XMLParser(data: Data(svg.utf8)).parse())
    }

    @Test("without route the chart divides by vxlan")
    func baseline() throws {
        let full = try Self.report()
        var setup = full.setup
        setup.modes = [.weft, .vxlan]
        let report = CompareReport(setup: setup, runs: full.runs.filter { $0.mode != .route })
        #expect(report.chartBaseline == .vxlan)
        #expect(report.rows.allSatisfy { $0.ratioToRoute == nil })
        #expect(report.table.contains("tcp1     weft   4.00 Gbit/s"))
        #expect(report.svg.contains("ratio to vxlan"))
    }
}
