/// UDP packet rate: the client's sent count and the server's counts over the measured interval.
public struct UDPResult: Equatable, Sendable {
    public var size: Int
    /// Measured seconds (warm-up excluded), from the client's first to its last measured send.
    public var duration: Double
    /// Datagrams handed to the kernel in the measured interval (one the kernel refused counts
    /// as sent and lost).
    public var sent: UInt64
    /// Distinct datagrams the server received (never more than `sent`).
    public var received: UInt64
    public var lost: UInt64
    public var reordered: UInt64
    public var duplicates: UInt64

    public var packetsPerSecond: Double { duration > 0 ? Double(received) / duration : 0 }
    /// UDP payload bits.
    public var bitsPerSecond: Double { packetsPerSecond * Double(size) * 8 }
}

/// TCP throughput: bytes the server read over its measured interval.
public struct TCPResult: Equatable, Sendable {
    public var streams: Int
    public var duration: Double
    public var bytes: UInt64
    public var bitsPerSecond: Double { duration > 0 ? Double(bytes) * 8 / duration : 0 }
}

/// Round trips in microseconds; all zero when no sample came back.
public struct LatencyResult: Equatable, Sendable {
    public var size: Int
    public var duration: Double
    public var samples: UInt64
    public var lost: UInt64
    public var minimum: Double
    public var mean: Double
    public var p50: Double
    public var p90: Double
    public var p99: Double
    public var p999: Double
    public var maximum: Double
}

/// The outcome of one `weft bench client` run: one JSON object (`--json`) or one human line.
public enum BenchResult: Equatable, Sendable {
    case udp(UDPResult)
    case tcp(TCPResult)
    case latency(LatencyResult)

    /// Exactly one JSON object, keys in a fixed order; integers as integers, rates and times
    /// as numbers with at most three decimals. This is the contract `weft lab compare` reads.
    public var json: String {
        var fields: [(String, String)]
        switch self {
        case .udp(let r):
            fields = [("mode", "\"udp\""), ("size", "\(r.size)"), ("duration_s", jsonNumber(r.duration)),
                      ("sent", "\(r.sent)"), ("received", "\(r.received)"), ("lost", "\(r.lost)"),
                      ("reordered", "\(r.reordered)"), ("duplicates", "\(r.duplicates)"),
                      ("packets_per_second", jsonNumber(r.packetsPerSecond)), ("bits_per_second", jsonNumber(r.bitsPerSecond))]
        case .tcp(let r):
            fields = [("mode", "\"tcp\""), ("streams", "\(r.streams)"), ("duration_s", jsonNumber(r.duration)),
                      ("bytes", "\(r.bytes)"), ("bits_per_second", jsonNumber(r.bitsPerSecond))]
        case .latency(let r):
            fields = [("mode", "\"latency\""), ("size", "\(r.size)"), ("duration_s", jsonNumber(r.duration)),
                      ("samples", "\(r.samples)"), ("lost", "\(r.lost)"),
                      ("min_us", jsonNumber(r.minimum)), ("mean_us", jsonNumber(r.mean)), ("p50_us", jsonNumber(r.p50)),
                      ("p90_us", jsonNumber(r.p90)), ("p99_us", jsonNumber(r.p99)), ("p999_us", jsonNumber(r.p999)),
                      ("max_us", jsonNumber(r.maximum))]
        }
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    /// One line for people.
    public var summary: String {
        switch self {
        case .udp(let r):
            let lossPercent = r.sent > 0 ? Double(r.lost) * 100 / Double(r.sent) : 0
            return "udp \(r.size) B: sent \(r.sent), received \(r.received), lost \(r.lost) (\(fixed(lossPercent, 2)) %), "
                + "reordered \(r.reordered), duplicates \(r.duplicates) in \(fixed(r.duration, 2)) s: "
                + "\(fixed(r.packetsPerSecond / 1000, 1)) kpps, \(rate(r.bitsPerSecond))"
        case .tcp(let r):
            return "tcp \(r.streams) stream\(r.streams == 1 ? "" : "s"): \(byteCount(r.bytes)) in \(fixed(r.duration, 2)) s: "
                + rate(r.bitsPerSecond)
        case .latency(let r):
            return "latency \(r.size) B: \(r.samples) samples, \(r.lost) lost in \(fixed(r.duration, 2)) s: "
                + "min \(fixed(r.minimum, 1)) mean \(fixed(r.mean, 1)) p50 \(fixed(r.p50, 1)) p90 \(fixed(r.p90, 1)) "
                + "p99 \(fixed(r.p99, 1)) p99.9 \(fixed(r.p999, 1)) max \(fixed(r.maximum, 1)) us"
        }
    }
}

/// A JSON number with at most three decimals and at least one ("10.0", "812.375"); NaN and
/// infinities (which JSON cannot hold) become 0.
func jsonNumber(_ value: Double) -> String {
    guard value.isFinite else { return "0.0" }
    var text = fixed(value, 3)
    guard text.contains("."), !text.contains("e") else { return text }
    while text.hasSuffix("0") && !text.hasSuffix(".0") { text.removeLast() }
    return text
}

/// `value` with exactly `decimals` decimals, without Foundation's String(format:).
func fixed(_ value: Double, _ decimals: Int) -> String {
    guard value.isFinite else { return value.isNaN ? "nan" : (value < 0 ? "-inf" : "inf") }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let scaled = (abs(value) * scale).rounded()
    guard scaled < 9.0e18 else { return "\(value)" }
    let units = UInt64(scaled)
    let whole = units / UInt64(scale)
    var text = (value < 0 && units != 0 ? "-" : "") + "\(whole)"
    if decimals > 0 {
        let fraction = String(units % UInt64(scale))
        text += "." + String(repeating: "0", count: decimals - fraction.count) + fraction
    }
    return text
}

/// "9.51 Gbit/s", "812.4 Mbit/s", "64.0 kbit/s".
func rate(_ bitsPerSecond: Double) -> String {
    if bitsPerSecond >= 1e9 { return fixed(bitsPerSecond / 1e9, 2) + " Gbit/s" }
    if bitsPerSecond >= 1e6 { return fixed(bitsPerSecond / 1e6, 1) + " Mbit/s" }
    return fixed(bitsPerSecond / 1e3, 1) + " kbit/s"
}

/// "11.90 GB", "812.4 MB", "123 B": decimal units, as the rates.
func byteCount(_ bytes: UInt64) -> String {
    let value = Double(bytes)
    if value >= 1e9 { return fixed(value / 1e9, 2) + " GB" }
    if value >= 1e6 { return fixed(value / 1e6, 1) + " MB" }
    if value >= 1e3 { return fixed(value / 1e3, 1) + " kB" }
    return "\(bytes) B"
}
