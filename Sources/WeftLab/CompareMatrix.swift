import Foundation

/// One kind of traffic in `weft lab compare`, run with `weft bench client` from pod A to the
/// last pod.
public enum CompareCell: String, CaseIterable, Sendable, Codable, CustomStringConvertible {
    /// TCP, one stream: bits per second.
    case tcp1
    /// TCP, four streams: bits per second.
    case tcp4
    /// UDP, 64-byte datagrams as fast as they go: packets per second received.
    case udp64
    /// UDP, 1400-byte datagrams: packets per second received.
    case udp1400
    /// Round trips of 64-byte datagrams, one at a time: the median in microseconds.
    case latency

    public var description: String { rawValue }

    /// Whether a larger figure is better (throughput), or a smaller one (latency).
    public var higherIsBetter: Bool { self != .latency }

    /// The unit of `BenchFigures.value`.
    public var unit: String {
        switch self {
        case .tcp1, .tcp4: "bit/s"
        case .udp64, .udp1400: "packets/s"
        case .latency: "us (p50)"
        }
    }

    public var title: String {
        switch self {
        case .tcp1: "TCP, 1 stream"
        case .tcp4: "TCP, 4 streams"
        case .udp64: "UDP 64 B"
        case .udp1400: "UDP 1400 B"
        case .latency: "latency p50"
        }
    }

    /// `weft bench client` arguments after the binary.
    public func clientArguments(server: String, port: Int, duration: Double, warmup: Double) -> [String] {
        var arguments = ["bench", "client", "--server", server, "--port", String(port)]
        switch self {
        case .tcp1: arguments += ["--mode", "tcp", "--streams", "1"]
        case .tcp4: arguments += ["--mode", "tcp", "--streams", "4"]
        case .udp64: arguments += ["--mode", "udp", "--size", "64"]
        case .udp1400: arguments += ["--mode", "udp", "--size", "1400"]
        case .latency: arguments += ["--mode", "latency", "--size", "64"]
        }
        return arguments + ["--duration", formatSeconds(duration), "--warmup", formatSeconds(warmup), "--json"]
    }

    /// The bench mode (the JSON's "mode") this cell expects.
    var benchMode: String {
        switch self {
        case .tcp1, .tcp4: "tcp"
        case .udp64, .udp1400: "udp"
        case .latency: "latency"
        }
    }

    /// Parses a list such as "tcp1,udp64".
    public static func parseList(_ text: String) throws(LabError) -> [CompareCell] {
        try parseNames(text, what: "--cells")
    }
}

extension LabMode {
    /// Parses a list such as "weft,vxlan,route".
    public static func parseList(_ text: String) throws(LabError) -> [LabMode] {
        try parseNames(text, what: "--modes")
    }
}

private func parseNames<T: RawRepresentable & CaseIterable>(_ text: String, what: String) throws(LabError) -> [T] where T.RawValue == String {
    var list: [T] = []
    for word in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespacesAndNewlines) }) where !word.isEmpty {
        guard let value = T(rawValue: word) else {
            throw LabError("\(what): unknown '\(word)' (one or more of \(T.allCases.map(\.rawValue).joined(separator: ",")))")
        }
        guard !list.contains(where: { $0.rawValue == value.rawValue }) else { throw LabError("\(what): '\(word)' given twice") }
        list.append(value)
    }
    guard !list.isEmpty else { throw LabError("\(what) is empty") }
    return list
}

/// Seconds as few digits as needed: 10, 0.25.
func formatSeconds(_ seconds: Double) -> String {
    seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)
}

/// What one `weft bench client --json` run reported, reduced to what compare needs.
public struct BenchFigures: Sendable, Equatable {
    /// The cell's headline figure in `cell.unit`.
    public var value: Double
    /// Payload bytes delivered: TCP bytes, UDP datagrams received × size, latency samples ×
    /// size both ways. Divides the forwarders' CPU time.
    public var bytesMoved: Double
    /// Every number of the JSON object, as reported.
    public var fields: [String: Double]

    /// Reads bench's one JSON object. Throws when it is not the expected mode or lacks a figure.
    public static func parse(_ text: String, cell: CompareCell) throws(LabError) -> BenchFigures {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let data = trimmed.data(using: .utf8),
              let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw LabError("weft bench printed no JSON object: '\(trimmed.prefix(200))'")
        }
        guard let mode = object["mode"] as? String, mode == cell.benchMode else {
            throw LabError("weft bench reported mode '\(object["mode"] ?? "none")', expected '\(cell.benchMode)'")
        }
        var fields: [String: Double] = [:]
        // bench's contract has numbers and the mode string only. (No `is Bool` test: on Linux an
        // NSNumber holding 0 or 1 passes it, and would drop "lost": 0 or "streams": 1.)
        for (key, value) in object {
            if let number = value as? NSNumber { fields[key] = number.doubleValue }
        }
        func field(_ name: String) throws(LabError) -> Double {
            guard let value = fields[name], value.isFinite else { throw LabError("weft bench's \(mode) result has no number '\(name)'") }
            return value
        }
        switch cell {
        case .tcp1, .tcp4:
            return BenchFigures(value: try field("bits_per_second"), bytesMoved: try field("bytes"), fields: fields)
        case .udp64, .udp1400:
            return BenchFigures(value: try field("packets_per_second"), bytesMoved: try field("received") * (try field("size")), fields: fields)
        case .latency:
            return BenchFigures(value: try field("p50_us"), bytesMoved: 2 * (try field("samples")) * (try field("size")), fields: fields)
        }
    }
}

/// The order of the runs: for each round, for each cell, every mode, the modes rotating by
/// one from one cell to the next so that no mode always goes first (or right after another)
/// while the machine's noise drifts.
public struct CompareSchedule: Sendable, Equatable {
    public struct Slot: Sendable, Equatable {
        public let round: Int
        public let cell: CompareCell
        public let modes: [LabMode]
    }

    public let slots: [Slot]

    public init(rounds: Int, cells: [CompareCell], modes: [LabMode]) {
        var slots: [Slot] = []
        var turn = 0
        for round in 1...max(1, rounds) {
            for cell in cells {
                let shift = turn % max(1, modes.count)
                slots.append(Slot(round: round, cell: cell, modes: Array(modes[shift...] + modes[..<shift])))
                turn += 1
            }
        }
        self.slots = slots
    }

    public var runCount: Int { slots.reduce(0) { $0 + $1.modes.count } }
}

/// One finished bench run.
public struct CompareRun: Sendable, Equatable {
    public var round: Int
    public var cell: CompareCell
    public var mode: LabMode
    public var figures: BenchFigures
    /// CPU seconds of the forwarders (weft mode) while the bench measured; nil for kernel modes.
    public var cpuSeconds: Double?

    public init(round: Int, cell: CompareCell, mode: LabMode, figures: BenchFigures, cpuSeconds: Double?) {
        self.round = round
        self.cell = cell
        self.mode = mode
        self.figures = figures
        self.cpuSeconds = cpuSeconds
    }
}
