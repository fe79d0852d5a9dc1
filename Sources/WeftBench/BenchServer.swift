import Dispatch
import Glibc
import Synchronization
import WeftCore
import WeftLinux

/// `weft bench server`: listens on one TCP port (control connections and TCP streams) and the
/// same UDP port (packet-rate sink and latency echo), and serves tests one after another. A
/// client arriving while a test runs is told the server is busy.
public final class BenchServer: @unchecked Sendable {
    /// How a test ended, as the one line the server prints for it.
    public enum Outcome: Equatable, Sendable {
        case completed(String)
        case failed(String)
    }

    public let address: IPv4Address
    /// The port in use for both TCP and UDP (the kernel's choice when 0 was asked for).
    public let port: UInt16
    private let listener: TCPSocket
    private let udp: UDPSocket
    private var nextTest: UInt32

    /// How long a new connection may take to say what it wants.
    static let helloTimeout: UInt64 = 5_000_000_000
    /// How long the TCP streams of a test may take to connect.
    static let streamsTimeout: UInt64 = 5_000_000_000
    /// Slack on top of the announced warm-up and duration before a silent client is given up.
    static let slack: UInt64 = 30_000_000_000

    /// Binds TCP and UDP on address:port. With port 0 the kernel picks a TCP port and UDP
    /// takes the same number (retried a few times should another UDP socket hold it).
    public init(bind address: IPv4Address = IPv4Address(0, 0, 0, 0), port: UInt16 = BenchOptions.defaultPort) throws(BenchError) {
        self.address = address
        var attempt = 0
        while true {
            attempt += 1
            let listener: TCPSocket
            do {
                listener = try TCPSocket.listen(on: address, port: port)
            } catch {
                throw BenchError("cannot listen on TCP \(address):\(port): \(error.message)")
            }
            let chosen: UInt16
            do { chosen = try listener.localPort } catch {
                listener.close()
                throw BenchError("cannot read the TCP port: \(error)")
            }
            do {
                let udp = try UDPSocket(bindTo: address, port: chosen)
                self.listener = listener
                self.udp = udp
                self.port = chosen
                break
            } catch {
                listener.close()
                if port == 0 && error.errno == EADDRINUSE && attempt < 20 { continue }
                throw BenchError("cannot bind UDP \(address):\(chosen): \(error.message)")
            }
        }
        nextTest = UInt32.random(in: 1...(UInt32.max / 2))
    }

    deinit {
        close()
    }

    public func close() {
        listener.close()
        udp.close()
    }

    /// Serves tests until `shouldStop()` returns true (asked at least every 100 ms, also during
    /// a test, which is then abandoned) or, with `once`, until one test has ended. `log` gets
    /// one line per test. Returns the last test's outcome (nil if none ran).
    @discardableResult
    public func serve(once: Bool = false, shouldStop: @escaping () -> Bool, log: (String) -> Void) throws(BenchError) -> Outcome? {
        var last: Outcome?
        while !shouldStop() {
            let ready: Bool
            do { ready = try listener.waitReadable(timeoutMilliseconds: 100) } catch {
                throw BenchError("waiting for clients on \(address):\(port): \(error)")
            }
            guard ready, let connection = try? listener.accept() else { continue }
            defer { connection.close() }
            guard let outcome = handle(connection, shouldStop: shouldStop, log: log) else { continue }
            last = outcome
            switch outcome {
            case .completed(let line): log(line)
            case .failed(let line): log(line)
            }
            if once { break }
        }
        return last
    }

    // MARK: One connection

    /// Reads the hello and runs the test; nil when the connection was not a test.
    private func handle(_ connection: TCPSocket, shouldStop: @escaping () -> Bool, log: (String) -> Void) -> Outcome? {
        try? connection.setNoDelay()
        let channel = ControlChannel(connection)
        let peer = connection.endpointDescription
        let hello: ControlMessage
        do {
            hello = try channel.receive(until: MonotonicClock.nanoseconds() + Self.helloTimeout)
        } catch {
            log("connection from \(peer): no hello within 5 s, closed")
            return nil
        }
        guard hello.verb == "hello" else {
            let text = hello.verb == "stream" ? "no test is running for this stream" : "expected hello, got '\(hello.verb)'"
            try? channel.send(.error(text))
            log("connection from \(peer): \(text)")
            return nil
        }
        let request: TestRequest
        do { request = try TestRequest(hello) } catch {
            try? channel.send(.error(error.description))
            log("connection from \(peer): refused: \(error)")
            return nil
        }
        let test = nextTest
        nextTest = nextTest == UInt32.max ? 1 : nextTest + 1
        let run = TestRun(server: self, channel: channel, request: request, test: test, peer: peer, shouldStop: shouldStop)
        return run.execute()
    }

    /// A client that arrived while a test runs: read its hello (so the close is a clean FIN),
    /// answer busy, close.
    fileprivate func rejectBusy() {
        guard let connection = try? listener.accept() else { return }
        defer { connection.close() }
        let channel = ControlChannel(connection)
        _ = try? channel.receive(until: MonotonicClock.nanoseconds() + 200_000_000)
        try? channel.send(.error("busy: another test is running, try again later"))
    }

    fileprivate var listenerSocket: TCPSocket { listener }
    fileprivate var udpSocket: UDPSocket { udp }
}

/// A hello, checked.
struct TestRequest {
    var mode: BenchMode
    var size: Int
    var streams: Int
    var duration: Double
    var warmup: Double

    init(_ hello: ControlMessage) throws(BenchError) {
        guard hello.integer("version") == UInt64(ControlMessage.protocolVersion) else {
            throw BenchError("protocol version \(hello["version"] ?? "?") is not \(ControlMessage.protocolVersion): use the same weft version on both ends")
        }
        guard let mode = hello["mode"].flatMap(BenchMode.init(rawValue:)) else {
            throw BenchError("unknown mode '\(hello["mode"] ?? "")'")
        }
        guard let size = hello.integer("size"), let streams = hello.integer("streams"),
              let duration = hello.number("duration"), let warmup = hello.number("warmup"),
              size <= UInt64(Int.max), streams <= 1024
        else { throw BenchError("the hello lacks size, streams, duration or warmup") }
        try BenchOptions.validate(mode: mode, size: Int(size), streams: Int(streams), duration: duration, warmup: warmup)
        self.mode = mode
        self.size = Int(size)
        self.streams = Int(streams)
        self.duration = duration
        self.warmup = warmup
    }

    /// Warm-up + duration + slack, in ns: how long the server waits for the client's `done`.
    var deadlineNanoseconds: UInt64 {
        UInt64((warmup + duration) * 1e9) + BenchServer.slack
    }
}

/// One test on the server: the control thread's side.
private struct TestRun {
    let server: BenchServer
    let channel: ControlChannel
    let request: TestRequest
    let test: UInt32
    let peer: String
    let shouldStop: () -> Bool

    var label: String { "\(request.mode) test \(test) from \(peer)" }

    func execute() -> BenchServer.Outcome {
        do throws(BenchError) {
            switch request.mode {
            case .udp, .latency: return .completed(try runUDP())
            case .tcp: return .completed(try runTCP())
            }
        } catch {
            try? channel.send(.error(error.description))
            return .failed("\(label): abandoned: \(error)")
        }
    }

    private func runUDP() throws(BenchError) -> String {
        let receiver = try UDPReceiver(socket: server.udpSocket, test: test, napsWhenDrained: request.mode == .udp)
        receiver.start()
        var finished = false
        defer { if !finished { receiver.stop() } }
        try send(ControlMessage("ok", [("test", "\(test)")]))
        let done = try waitFor("done", until: MonotonicClock.nanoseconds() + request.deadlineNanoseconds)
        let sent = done.integer("sent") ?? 0
        let seconds = done.number("seconds") ?? request.duration
        receiver.finish(expecting: request.mode == .udp ? sent : 0)
        finished = true
        if let failure = receiver.failure { throw BenchError("UDP socket: \(failure)") }
        let sink = receiver.sink
        let tracker = sink.tracker
        if request.mode == .latency {
            try send(ControlMessage("result", [("echoed", "\(sink.echoed)")]))
            return "\(label): \(request.size) B, echoed \(sink.echoed) requests"
        }
        try send(ControlMessage("result", [
            ("received", "\(tracker.received)"), ("duplicates", "\(tracker.duplicates)"),
            ("reordered", "\(tracker.reordered)"), ("stale", "\(tracker.stale)"),
        ]))
        let kpps = seconds > 0 ? Double(tracker.received) / seconds / 1000 : 0
        var line = "\(label): \(request.size) B, \(fixed(seconds, 2)) s: received \(tracker.received) of \(sent) "
            + "(lost \(tracker.lost(sent: sent)), reordered \(tracker.reordered), duplicates \(tracker.duplicates)"
        if tracker.stale > 0 { line += ", too late to place \(tracker.stale)" }
        return line + "), \(fixed(kpps, 1)) kpps"
    }

    private func runTCP() throws(BenchError) -> String {
        try send(ControlMessage("ok", [("test", "\(test)")]))
        let streams = try acceptStreams()
        let readers = StreamReaders(streams)
        readers.start()
        defer { readers.stop() }
        try send(ControlMessage("ready"))
        _ = try waitFor("measure", until: MonotonicClock.nanoseconds() + UInt64(request.warmup * 1e9) + BenchServer.slack)
        let startBytes = readers.bytes
        let startTime = MonotonicClock.nanoseconds()
        _ = try waitFor("done", until: startTime + UInt64(request.duration * 1e9) + BenchServer.slack)
        let bytes = readers.bytes - startBytes
        let seconds = Double(MonotonicClock.nanoseconds() - startTime) / 1e9
        try send(ControlMessage("result", [("bytes", "\(bytes)"), ("seconds", jsonNumber(seconds))]))
        let bits = seconds > 0 ? Double(bytes) * 8 / seconds : 0
        return "\(label): \(request.streams) stream\(request.streams == 1 ? "" : "s"), \(fixed(seconds, 2)) s: \(byteCount(bytes)), \(rate(bits))"
    }

    /// The test's N stream connections, within 5 s; other connections meanwhile are refused.
    private func acceptStreams() throws(BenchError) -> [TCPSocket] {
        var streams: [TCPSocket] = []
        var success = false
        defer { if !success { streams.forEach { $0.close() } } }
        let deadline = MonotonicClock.nanoseconds() + BenchServer.streamsTimeout
        while streams.count < request.streams {
            if MonotonicClock.nanoseconds() > deadline {
                throw BenchError("only \(streams.count) of \(request.streams) TCP streams connected within 5 s")
            }
            guard try waitForListener() else { continue }
            guard let connection = try? server.listenerSocket.accept() else { continue }
            let streamChannel = ControlChannel(connection)
            let line = try? streamChannel.receive(until: MonotonicClock.nanoseconds() + 2_000_000_000)
            if let line, line.verb == "stream", line.integer("test") == UInt64(test) {
                streams.append(connection)
            } else {
                if line?.verb == "hello" { try? streamChannel.send(.error("busy: another test is running, try again later")) }
                connection.close()
            }
        }
        success = true
        return streams
    }

    /// Waits up to 100 ms for the listener while watching the control connection (which must
    /// stay quiet) and the stop request.
    private func waitForListener() throws(BenchError) -> Bool {
        if shouldStop() { throw BenchError("the server is stopping") }
        let index: Int?
        do {
            index = try TCPSocket.firstReadable([channel.socket, server.listenerSocket], timeoutMilliseconds: 100)
        } catch { throw BenchError("poll: \(error)") }
        if index == 0 {
            let message = try poll()
            if let message { throw BenchError("unexpected '\(message.verb)' from the client") }
        }
        return index == 1
    }

    /// The next control message, which must be `verb`; meanwhile newcomers are told the server
    /// is busy. Throws when the client goes away, the deadline passes or the server stops.
    private func waitFor(_ verb: String, until deadline: UInt64) throws(BenchError) -> ControlMessage {
        while true {
            if shouldStop() { throw BenchError("the server is stopping") }
            if MonotonicClock.nanoseconds() > deadline { throw BenchError("no '\(verb)' from the client in time") }
            let index: Int?
            do {
                index = try TCPSocket.firstReadable([channel.socket, server.listenerSocket], timeoutMilliseconds: 100)
            } catch { throw BenchError("poll: \(error)") }
            if index == 1 { server.rejectBusy() }
            guard index == 0, let message = try poll() else { continue }
            guard message.verb == verb else {
                throw BenchError(message.verb == "error" ? "the client gave up: \(message.text)" : "expected '\(verb)', got '\(message.verb)'")
            }
            return message
        }
    }

    private func poll() throws(BenchError) -> ControlMessage? {
        do { return try channel.poll(timeoutMilliseconds: 0) } catch { throw failure(error) }
    }

    private func send(_ message: ControlMessage) throws(BenchError) {
        do { try channel.send(message) } catch { throw failure(error) }
    }

    private func failure(_ error: ChannelFailure) -> BenchError {
        switch error {
        case .closed: BenchError("the client closed the control connection")
        case .timedOut: BenchError("the client did not answer in time")
        case .malformed(let what): BenchError("the client sent \(what)")
        case .system(let error): BenchError("control connection: \(error)")
        }
    }
}

/// The server's readers of one TCP test: one thread per stream, reading into its own 256 KiB
/// buffer and adding to a shared byte count until the stream ends or `stop()` shuts it down.
private final class StreamReaders: @unchecked Sendable {
    private let streams: [TCPSocket]
    private let total = Atomic<UInt64>(0)
    private let group = DispatchGroup()
    static let bufferSize = 256 << 10

    init(_ streams: [TCPSocket]) {
        self.streams = streams
    }

    var bytes: UInt64 { total.load(ordering: .relaxed) }

    func start() {
        for (index, stream) in streams.enumerated() {
            DispatchQueue(label: "weft.bench.tcp.\(index)").async(group: group) {
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.bufferSize, alignment: 64)
                defer { buffer.deallocate() }
                while let n = try? stream.receive(into: buffer), n > 0 {
                    self.total.add(UInt64(n), ordering: .relaxed)
                }
            }
        }
    }

    func stop() {
        streams.forEach { $0.shutdown() }
        _ = group.wait(timeout: .now() + .seconds(5))
        streams.forEach { $0.close() }
    }
}
