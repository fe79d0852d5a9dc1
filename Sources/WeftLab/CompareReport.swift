import Foundation

/// The results of `weft lab compare`, and their three renderings: a table for the terminal,
/// JSON for programs, SVG for people. Pure: no I/O.
public struct CompareReport: Sendable {
    public struct Setup: Sendable {
        public var date: Date
        public var command: String
        public var kernel: String
        public var cpus: Int
        public var nodes: Int
        public var durationSeconds: Double
        public var warmupSeconds: Double
        public var rounds: Int
        public var modes: [LabMode]
        public var cells: [CompareCell]
        public var podMTU: [LabMode: Int]

        public init(date: Date, command: String, kernel: String, cpus: Int, nodes: Int, durationSeconds: Double, warmupSeconds: Double,
                    rounds: Int, modes: [LabMode], cells: [CompareCell], podMTU: [LabMode: Int]) {
            self.date = date
            self.command = command
            self.kernel = kernel
            self.cpus = cpus
            self.nodes = nodes
            self.durationSeconds = durationSeconds
            self.warmupSeconds = warmupSeconds
            self.rounds = rounds
            self.modes = modes
            self.cells = cells
            self.podMTU = podMTU
        }
    }

    /// One cell and mode, over all rounds.
    public struct Row: Sendable, Equatable {
        public var cell: CompareCell
        public var mode: LabMode
        /// Median over the rounds, in `cell.unit`.
        public var value: Double
        public var samples: [Double]
        public var ratioToRoute: Double?
        public var ratioToVXLAN: Double?
        /// The forwarders' CPU seconds per 10⁹ payload bytes delivered (modes with forwarder processes only).
        public var cpuSecondsPerGB: Double?
        /// Medians of the secondary figures: UDP loss in percent, latency p99 in µs, rates in bit/s.
        public var lossPercent: Double?
        public var p99Microseconds: Double?
        public var bitsPerSecond: Double?
    }

    public let setup: Setup
    public let runs: [CompareRun]
    public let rows: [Row]

    public init(setup: Setup, runs: [CompareRun]) {
        self.setup = setup
        self.runs = runs
        var rows: [Row] = []
        for cell in setup.cells {
            var medians: [LabMode: Double] = [:]
            for mode in setup.modes {
                let values = runs.filter { $0.cell == cell && $0.mode == mode }.map(\.figures.value)
                if let median = median(values) { medians[mode] = median }
            }
            for mode in setup.modes {
                let mine = runs.filter { $0.cell == cell && $0.mode == mode }
                guard let value = medians[mode] else { continue }
                func ratio(to base: LabMode) -> Double? {
                    guard let baseValue = medians[base], baseValue > 0 else { return nil }
                    return value / baseValue
                }
                var cpuPerGB: Double?
                let cpu = mine.compactMap(\.cpuSeconds)
                let bytes = mine.filter { $0.cpuSeconds != nil }.reduce(0) { $0 + $1.figures.bytesMoved }
                if !cpu.isEmpty, bytes > 0 { cpuPerGB = cpu.reduce(0, +) / (bytes / 1e9) }
                let field = { (name: String) in median(mine.compactMap { $0.figures.fields[name] }) }
                let loss = median(mine.compactMap { Self.lossPercent($0.figures) })
                rows.append(Row(cell: cell, mode: mode, value: value, samples: mine.map(\.figures.value),
                                ratioToRoute: ratio(to: .route), ratioToVXLAN: ratio(to: .vxlan), cpuSecondsPerGB: cpuPerGB,
                                lossPercent: loss, p99Microseconds: cell == .latency ? field("p99_us") : nil,
                                bitsPerSecond: cell == .latency ? nil : field("bits_per_second")))
            }
        }
        self.rows = rows
    }

    /// The date as `2026-11-23 12:00 UTC`.
    public var dateText: String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm 'UTC'"
        return formatter.string(from: setup.date)
    }

    // MARK: Table

    /// UDP datagrams lost, in percent of those sent.
    static func lossPercent(_ figures: BenchFigures) -> Double? {
        guard let sent = figures.fields["sent"], let lost = figures.fields["lost"], sent > 0 else { return nil }
        return 100 * lost / sent
    }

    /// The figure of one run, as `describe(_: Row)` words it.
    public static func describe(_ run: CompareRun) -> String {
        describe(Row(cell: run.cell, mode: run.mode, value: run.figures.value, samples: [run.figures.value],
                     lossPercent: lossPercent(run.figures), p99Microseconds: run.cell == .latency ? run.figures.fields["p99_us"] : nil,
                     bitsPerSecond: run.cell == .latency ? nil : run.figures.fields["bits_per_second"]))
    }

    /// The headline figure of a row with its unit: "9.81 Gbit/s", "166.6 kpps", "p50 67 µs".
    public static func headline(_ row: Row) -> String {
        switch row.cell {
        case .tcp1, .tcp4: String(format: "%.2f Gbit/s", row.value / 1e9)
        case .udp64, .udp1400: String(format: "%.1f kpps", row.value / 1e3)
        case .latency: String(format: "p50 %.0f µs", row.value)
        }
    }

    /// The headline figure and what qualifies it: UDP's bit rate and loss, latency's p99.
    public static func describe(_ row: Row) -> String {
        var text = headline(row)
        switch row.cell {
        case .tcp1, .tcp4:
            break
        case .udp64, .udp1400:
            if let bits = row.bitsPerSecond { text += String(format: " (%.0f Mbit/s)", bits / 1e6) }
            if let loss = row.lossPercent { text += String(format: ", %.1f %% lost", loss) }
        case .latency:
            if let p99 = row.p99Microseconds { text += String(format: ", p99 %.0f µs", p99) }
        }
        return text
    }

    /// Absolute figures, ratios to route and to vxlan (medians over the rounds), and the
    /// forwarder's CPU seconds per GB in weft mode.
    public var table: String {
        let header = ["cell", "mode", "result", "x route", "x vxlan", "CPU s/GB"]
        var body: [[String]] = []
        for row in rows {
            body.append([row.cell.rawValue, row.mode.rawValue, Self.describe(row),
                         row.ratioToRoute.map { String(format: "%.2f", $0) } ?? "-",
                         row.ratioToVXLAN.map { String(format: "%.2f", $0) } ?? "-",
                         row.cpuSecondsPerGB.map { String(format: "%.2f", $0) } ?? "-"])
        }
        let widths = header.indices.map { column in ([header] + body).map { $0[column].count }.max() ?? 0 }
        let rightAligned: Set<Int> = [3, 4, 5]
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { column, text in
                let pad = String(repeating: " ", count: widths[column] - text.count)
                return rightAligned.contains(column) ? pad + text : text + pad
            }.joined(separator: "  ").trimmingCharacters(in: .whitespacesAndNewlines)
        }
        var lines = [
            "weft lab compare, \(dateText): \(setup.nodes) nodes, \(formatSeconds(setup.durationSeconds)) s per cell after \(formatSeconds(setup.warmupSeconds)) s warm-up, "
                + "\(setup.rounds) round\(setup.rounds == 1 ? "" : "s")\(setup.rounds > 1 ? " (medians)" : ""), Linux \(setup.kernel), \(setup.cpus) CPUs",
            line(header),
        ]
        var previous: CompareCell?
        for (row, cells) in zip(rows, body) {
            if previous != nil && previous != row.cell { lines.append("") }
            previous = row.cell
            lines.append(line(cells))
        }
        lines.append("x route, x vxlan: the mode's figure divided by that mode's (latency: higher is slower).")
        lines.append("CPU s/GB: user + system seconds of both nodes' forwarder processes (weft, wireguard-go, nebula) per 10^9 payload bytes delivered.")
        return lines.joined(separator: "\n")
    }

    // MARK: JSON

    public static let schema = "weft-lab-compare/1"

    /// Everything, as one JSON object: the set-up, one result per cell and mode, every run.
    public var json: String {
        let iso = ISO8601DateFormatter()
        let object: [String: Any] = [
            "schema": Self.schema,
            "date": iso.string(from: setup.date),
            "command": setup.command,
            "host": ["kernel": setup.kernel, "cpus": setup.cpus],
            "nodes": setup.nodes,
            "duration_s": setup.durationSeconds,
            "warmup_s": setup.warmupSeconds,
            "rounds": setup.rounds,
            "modes": setup.modes.map(\.rawValue),
            "cells": setup.cells.map(\.rawValue),
            "pod_mtu": Dictionary(uniqueKeysWithValues: setup.podMTU.map { ($0.key.rawValue, $0.value) }),
            "results": rows.map { row -> [String: Any] in
                [
                    "cell": row.cell.rawValue,
                    "mode": row.mode.rawValue,
                    "unit": row.cell.unit,
                    "value": rounded(row.value),
                    "samples": row.samples.map(rounded),
                    "ratio_to_route": row.ratioToRoute.map { rounded($0) as Any } ?? NSNull(),
                    "ratio_to_vxlan": row.ratioToVXLAN.map { rounded($0) as Any } ?? NSNull(),
                    "cpu_seconds_per_gb": row.cpuSecondsPerGB.map { rounded($0) as Any } ?? NSNull(),
                    "summary": Self.describe(row),
                ]
            },
            "runs": runs.map { run -> [String: Any] in
                [
                    "round": run.round,
                    "cell": run.cell.rawValue,
                    "mode": run.mode.rawValue,
                    "value": rounded(run.figures.value),
                    "bytes_moved": run.figures.bytesMoved,
                    "cpu_seconds": run.cpuSeconds.map { rounded($0) as Any } ?? NSNull(),
                    "bench": run.figures.fields,
                ]
            },
        ]
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]) else { return "{}" }
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}

/// Four significant decimals are plenty for figures that vary by ±25 % run to run.
func rounded(_ value: Double) -> Double {
    guard value.isFinite, value != 0 else { return value }
    let magnitude = value.magnitude
    let digits = max(0, 4 - Int(log10(magnitude).rounded(.down)) - 1)
    let scale = pow(10, Double(min(digits, 12)))
    return (value * scale).rounded() / scale
}

func median(_ values: [Double]) -> Double? {
    guard !values.isEmpty else { return nil }
    let sorted = values.sorted()
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}
