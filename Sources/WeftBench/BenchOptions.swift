import WeftCore

/// What `weft bench client` measures.
public enum BenchMode: String, CaseIterable, Sendable {
    /// UDP packet rate: datagrams as fast as sendmmsg goes, counted by the server.
    case udp
    /// TCP throughput over N parallel streams.
    case tcp
    /// UDP request/response round trips, one outstanding.
    case latency
}

/// The client's settings, checked by `validate()` (the server checks the same limits again).
public struct BenchOptions: Sendable, Equatable {
    public static let defaultPort: UInt16 = 5301
    /// UDP payload sizes: the header needs 32 bytes, 64 is iperf3's usual small size, and 1472
    /// fills a 1500-byte MTU (20 IPv4 + 8 UDP).
    public static let udpSizes = 64...1472
    /// Bytes per send() in TCP mode.
    public static let tcpSizes = 64...(16 << 20)
    public static let defaultTCPSize = 128 << 10
    public static let streamRange = 1...128
    public static let maxSeconds = 86_400.0

    public var server: IPv4Address
    public var port: UInt16
    public var mode: BenchMode
    /// UDP payload bytes (udp, latency) or bytes per send() (tcp).
    public var size: Int
    public var streams: Int
    public var duration: Double
    public var warmup: Double
    /// Latency mode: how long to wait for a reply before counting the request lost.
    public var replyTimeout: Double
    /// How long to wait for the server's answer to the hello and for its `ready` (tcp).
    public var answerTimeout: Double = 5

    public init(server: IPv4Address, port: UInt16 = BenchOptions.defaultPort, mode: BenchMode = .udp,
                size: Int? = nil, streams: Int = 1, duration: Double = 10, warmup: Double = 1, replyTimeout: Double = 1) {
        self.server = server
        self.port = port
        self.mode = mode
        self.size = size ?? BenchOptions.defaultSize(mode)
        self.streams = streams
        self.duration = duration
        self.warmup = warmup
        self.replyTimeout = replyTimeout
    }

    public static func defaultSize(_ mode: BenchMode) -> Int {
        switch mode {
        case .udp: 1472
        case .latency: 64
        case .tcp: defaultTCPSize
        }
    }

    /// The first thing wrong with these settings, as one line naming the flag.
    public func validate() throws(BenchError) {
        try Self.validate(mode: mode, size: size, streams: streams, duration: duration, warmup: warmup)
        if port == 0 { throw BenchError("--port must be 1 to 65535") }
        if !(replyTimeout > 0) || !(answerTimeout > 0) { throw BenchError("timeouts must be positive") }
    }

    static func validate(mode: BenchMode, size: Int, streams: Int, duration: Double, warmup: Double) throws(BenchError) {
        let sizes = mode == .tcp ? tcpSizes : udpSizes
        guard sizes.contains(size) else {
            throw BenchError("--size must be \(sizes.lowerBound) to \(sizes.upperBound) bytes in \(mode) mode, not \(size)")
        }
        guard streamRange.contains(streams) else {
            throw BenchError("--streams must be \(streamRange.lowerBound) to \(streamRange.upperBound), not \(streams)")
        }
        if streams != 1 && mode != .tcp { throw BenchError("--streams applies to --mode tcp only") }
        guard duration > 0, duration <= maxSeconds else {
            throw BenchError("--duration must be more than 0 and at most \(Int(maxSeconds)) seconds")
        }
        guard warmup >= 0, warmup <= maxSeconds else {
            throw BenchError("--warmup must be 0 to \(Int(maxSeconds)) seconds")
        }
    }
}
