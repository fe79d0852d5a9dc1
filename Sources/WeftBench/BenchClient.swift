import Dispatch
import Glibc
import Histogram
import Synchronization
import WeftCore
import WeftLinux

/// `weft bench client`: runs one test against a `weft bench server` and returns what it
/// measured. Progress goes to `progress` about once a second (the CLI prints it on stderr).
/// Every wait is bounded: an unreachable server, a server that stops answering or one that
/// goes away mid-test is a `BenchError`, never a hang.
public enum BenchClient {
    static let connectTimeoutMilliseconds: Int32 = 3000
    /// How long the client waits for the result after `done` (the server drains for ≤ 2 s).
    static let resultTimeout: UInt64 = 10_000_000_000
    static let checkInterval: UInt64 = 100_000_000
    static let progressInterval: UInt64 = 1_000_000_000

    public static func run(_ options: BenchOptions, progress: @escaping (String) -> Void = { _ in }) throws(BenchError) -> BenchResult {
        try options.validate()
        let session = try Session.open(options)
        defer { session.channel.socket.close() }
        switch options.mode {
        case .udp: return .udp(try runUDP(session, progress: progress))
        case .tcp: return .tcp(try runTCP(session, progress: progress))
        case .latency: return .latency(try runLatency(session, progress: progress))
        }
    }

    // MARK: UDP packet rate

    static func runUDP(_ session: Session, progress: (String) -> Void) throws(BenchError) -> UDPResult {
        let options = session.options
        let socket = try session.udpSocket()
        defer { socket.close() }
        let capacity = 64
        let size = options.size
        let storage = UnsafeMutableRawPointer.allocate(byteCount: capacity * size, alignment: 64)
        defer { storage.deallocate() }
        storage.initializeMemory(as: UInt8.self, repeating: 0, count: capacity * size)
        let batch = DatagramBatch(capacity: capacity)
        let start = MonotonicClock.nanoseconds()
        var window = MeasurementWindow(start: start, options: options)
        for i in 0..<capacity {
            let datagram = storage + i * size
            BenchDatagram.write(.init(test: session.test, kind: window.measuring ? .rate : .rateWarmUp, sequence: 0), to: datagram)
            batch.setSend(i, UnsafeRawBufferPointer(start: datagram, count: size), to: options.server, port: options.port)
        }

        var sequence: UInt64 = 0          // measured datagrams numbered so far (= sent)
        var warmupSequence: UInt64 = 0
        var refused: UInt64 = 0
        var nextCheck = start + checkInterval
        var meter = Meter(start: start)
        var now = start
        while true {
            now = MonotonicClock.nanoseconds()
            if window.advance(now: now) {
                for i in 0..<capacity { BenchDatagram.setKind(.rate, at: storage + i * size) }
            }
            if window.isOver(now: now) { break }
            if now >= nextCheck {
                nextCheck = now + checkInterval
                try session.checkControl()
                if let line = meter.line(now: now, warmingUp: !window.measuring, format: { count, seconds in
                    let pps = Double(count) / seconds
                    return "\(fixed(pps / 1000, 1)) kpps  \(rate(pps * Double(size) * 8)) sent"
                }) { progress(line) }
            }
            let first = window.measuring ? sequence : warmupSequence
            for i in 0..<capacity {
                BenchDatagram.setSequence(first &+ UInt64(i), at: storage + i * size)
            }
            let outcome: (sent: Int, failed: Int)
            do { outcome = try socket.send(batch, count: capacity) } catch {
                throw BenchError("sending UDP to \(options.server):\(options.port): \(error)")
            }
            if window.measuring {
                sequence += UInt64(capacity)
                refused += UInt64(outcome.failed)
            } else {
                warmupSequence += UInt64(capacity)
            }
            meter.count += UInt64(outcome.sent)
        }
        let seconds = Double(now - window.start) / 1e9
        if refused > 0 {
            progress("note: the kernel refused \(refused) of \(sequence) datagrams (counted as sent and lost)")
        }
        try session.send(ControlMessage("done", [("sent", "\(sequence)"), ("seconds", jsonNumber(seconds))]))
        let result = try session.receive("result", within: resultTimeout)
        guard let received = result.integer("received"), let duplicates = result.integer("duplicates"),
              let reordered = result.integer("reordered")
        else { throw BenchError("the server's result lacks received, duplicates or reordered: '\(result)'") }
        let distinct = min(received, sequence)
        return UDPResult(size: size, duration: seconds, sent: sequence, received: distinct, lost: sequence - distinct,
                         reordered: reordered, duplicates: duplicates)
    }

    // MARK: TCP throughput

    static func runTCP(_ session: Session, progress: (String) -> Void) throws(BenchError) -> TCPResult {
        let options = session.options
        var streams: [TCPSocket] = []
        defer { streams.forEach { $0.close() } }
        for index in 0..<options.streams {
            let stream = try session.connect(what: "TCP stream \(index + 1)")
            streams.append(stream)
            do {
                try ControlChannel(stream).send(ControlMessage("stream", [("test", "\(session.test)"), ("index", "\(index)")]))
            } catch {
                throw BenchError("TCP stream \(index + 1) to \(options.server):\(options.port) closed at once")
            }
        }
        _ = try session.receive("ready", within: nanoseconds(options.answerTimeout))

        let senders = StreamSenders(streams, size: options.size)
        senders.start()
        defer { senders.stop() }
        let start = MonotonicClock.nanoseconds()
        var meter = Meter(start: start)
        func wait(until end: UInt64, warmingUp: Bool) throws(BenchError) {
            while true {
                let now = MonotonicClock.nanoseconds()
                if let failure = senders.failure {
                    throw BenchError("TCP stream to \(options.server):\(options.port) failed: \(failure)")
                }
                meter.count = senders.bytes
                if let line = meter.line(now: now, warmingUp: warmingUp, format: { bytes, seconds in
                    rate(Double(bytes) * 8 / seconds) + " sent"
                }) { progress(line) }
                if now >= end { return }
                let milliseconds = Int32(min(checkInterval, end - now) / 1_000_000) + 1
                if let message = try session.pollControl(timeoutMilliseconds: milliseconds) {
                    throw session.unexpected(message)
                }
            }
        }
        try wait(until: start + nanoseconds(options.warmup), warmingUp: true)
        try session.send(ControlMessage("measure"))
        try wait(until: MonotonicClock.nanoseconds() + nanoseconds(options.duration), warmingUp: false)
        try session.send(ControlMessage("done"))
        senders.stop()
        let result = try session.receive("result", within: resultTimeout)
        guard let bytes = result.integer("bytes"), let seconds = result.number("seconds") else {
            throw BenchError("the server's result lacks bytes or seconds: '\(result)'")
        }
        return TCPResult(streams: options.streams, duration: seconds, bytes: bytes)
    }

    // MARK: Latency

    static func runLatency(_ session: Session, progress: (String) -> Void) throws(BenchError) -> LatencyResult {
        let options = session.options
        let socket = try session.udpSocket()
        defer { socket.close() }
        let wakeup: EventFD
        do { wakeup = try EventFD() } catch { throw BenchError("cannot create an eventfd: \(error)") }
        defer { wakeup.close() }
        let size = options.size
        let receiveCapacity = 8
        let bufferSize = 2048
        let request = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        defer { request.deallocate() }
        request.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        let replies = UnsafeMutableRawPointer.allocate(byteCount: receiveCapacity * bufferSize, alignment: 64)
        defer { replies.deallocate() }
        let sendBatch = DatagramBatch(capacity: 1)
        sendBatch.setSend(0, UnsafeRawBufferPointer(start: request, count: size), to: options.server, port: options.port)
        let receiveBatch = DatagramBatch(capacity: receiveCapacity)
        for i in 0..<receiveCapacity {
            receiveBatch.setReceiveBuffer(i, UnsafeMutableRawBufferPointer(start: replies + i * bufferSize, count: bufferSize))
        }
        // Nanoseconds, 3 significant digits, up to 100 s: fixed size, so recording never allocates.
        var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 100_000_000_000,
                                          numberOfSignificantValueDigits: .three)
        var samples: UInt64 = 0
        var lost: UInt64 = 0
        var sum: UInt64 = 0
        let replyTimeout = nanoseconds(options.replyTimeout)

        let start = MonotonicClock.nanoseconds()
        var window = MeasurementWindow(start: start, options: options)
        var sequence: UInt64 = 0
        var nextCheck = start + checkInterval
        var nextProgress = start + progressInterval
        var now = start
        do {
            while true {
                now = MonotonicClock.nanoseconds()
                window.advance(now: now)
                if window.isOver(now: now) { break }
                if now >= nextCheck {
                    nextCheck = now + checkInterval
                    try session.checkControl()
                    if now >= nextProgress {
                        nextProgress += progressInterval
                        let elapsed = fixed(Double(now - start) / 1e9, 1)
                        let p50 = Double(histogram.valueAtPercentile(50)) / 1000
                        let p99 = Double(histogram.valueAtPercentile(99)) / 1000
                        progress("\(pad(elapsed, 5)) s  \(samples) samples  p50 \(fixed(p50, 1)) us  p99 \(fixed(p99, 1)) us  lost \(lost)"
                                 + (window.measuring ? "" : "  (warm-up)"))
                    }
                }
                let sentAt = MonotonicClock.nanoseconds()
                BenchDatagram.write(.init(test: session.test, kind: .echoRequest, sequence: sequence, sentAt: sentAt), to: request)
                let sent = try socket.send(sendBatch, count: 1).sent == 1
                var roundTrip: UInt64?
                let deadline = sentAt + replyTimeout
                while sent && roundTrip == nil {
                    let waitNow = MonotonicClock.nanoseconds()
                    guard waitNow < deadline else { break }
                    let milliseconds = Int32((deadline - waitNow + 999_999) / 1_000_000)
                    guard try Poll.waitReadable(socket.fileDescriptor, orWakeup: wakeup,
                                                timeoutMilliseconds: milliseconds) == .readable else { continue }
                    let count = try socket.receive(into: receiveBatch, maxCount: receiveCapacity)
                    let arrived = MonotonicClock.nanoseconds()
                    for i in 0..<count {
                        let bytes = UnsafeRawBufferPointer(start: replies + i * bufferSize, count: receiveBatch.length(i))
                        guard let header = BenchDatagram.parse(bytes), header.kind == .echoReply,
                              header.test == session.test, header.sequence == sequence else { continue }
                        roundTrip = arrived - sentAt
                    }
                }
                if window.measuring {
                    if let roundTrip {
                        histogram.record(min(roundTrip, histogram.highestTrackableValue))
                        sum &+= roundTrip
                        samples += 1
                    } else {
                        lost += 1
                    }
                }
                sequence += 1
            }
        } catch let error as BenchError {
            throw error
        } catch {
            throw BenchError("UDP to \(options.server):\(options.port): \(error)")
        }
        let seconds = Double(now - window.start) / 1e9
        try session.send(ControlMessage("done"))
        _ = try session.receive("result", within: resultTimeout)
        func microseconds(_ value: UInt64) -> Double { samples > 0 ? Double(value) / 1000 : 0 }
        return LatencyResult(
            size: size, duration: seconds, samples: samples, lost: lost,
            minimum: microseconds(histogram.min),
            mean: samples > 0 ? Double(sum) / Double(samples) / 1000 : 0,
            p50: microseconds(histogram.valueAtPercentile(50)),
            p90: microseconds(histogram.valueAtPercentile(90)),
            p99: microseconds(histogram.valueAtPercentile(99)),
            p999: microseconds(histogram.valueAtPercentile(99.9)),
            maximum: microseconds(histogram.maxRecorded))
    }
}

// MARK: - Pieces

/// The control connection of one client test, after the server's `ok`.
struct Session {
    let options: BenchOptions
    let channel: ControlChannel
    let test: UInt32

    static func open(_ options: BenchOptions) throws(BenchError) -> Session {
        let socket = try connect(options, what: "")
        try? socket.setNoDelay()
        let channel = ControlChannel(socket)
        var session = Session(options: options, channel: channel, test: 0)
        do throws(BenchError) {
            try session.send(ControlMessage("hello", [
                ("version", "\(ControlMessage.protocolVersion)"), ("mode", options.mode.rawValue), ("size", "\(options.size)"),
                ("streams", "\(options.streams)"), ("duration", jsonNumber(options.duration)), ("warmup", jsonNumber(options.warmup)),
            ]))
            let ok = try session.receive("ok", within: nanoseconds(options.answerTimeout))
            guard let test = ok.integer("test"), let id = UInt32(exactly: test) else {
                throw BenchError("the server's answer lacks a test id: '\(ok)'")
            }
            session = Session(options: options, channel: channel, test: id)
        } catch {
            socket.close()
            throw error
        }
        return session
    }

    static func connect(_ options: BenchOptions, what: String) throws(BenchError) -> TCPSocket {
        do {
            return try TCPSocket.connect(to: options.server, port: options.port,
                                         timeoutMilliseconds: BenchClient.connectTimeoutMilliseconds)
        } catch {
            let prefix = "cannot connect\(what.isEmpty ? "" : " " + what) to \(options.server):\(options.port)"
            if error.errno == ETIMEDOUT {
                throw BenchError("\(prefix): no answer within \(BenchClient.connectTimeoutMilliseconds / 1000) s")
            }
            throw BenchError("\(prefix): \(error.message)")
        }
    }

    func connect(what: String) throws(BenchError) -> TCPSocket {
        try Self.connect(options, what: what)
    }

    /// A UDP socket on an ephemeral port, any address.
    func udpSocket() throws(BenchError) -> UDPSocket {
        do { return try UDPSocket(bindTo: IPv4Address(0, 0, 0, 0), port: 0) } catch {
            throw BenchError("cannot open a UDP socket: \(error)")
        }
    }

    func send(_ message: ControlMessage) throws(BenchError) {
        do { try channel.send(message) } catch { throw failure(error, waitingFor: nil) }
    }

    /// The next message, which must be `verb` (an `error` from the server becomes its text).
    func receive(_ verb: String, within timeout: UInt64) throws(BenchError) -> ControlMessage {
        let message: ControlMessage
        do { message = try channel.receive(until: MonotonicClock.nanoseconds() + timeout) } catch {
            throw failure(error, waitingFor: verb, timeout: timeout)
        }
        guard message.verb == verb else { throw unexpected(message) }
        return message
    }

    func pollControl(timeoutMilliseconds: Int32) throws(BenchError) -> ControlMessage? {
        do { return try channel.poll(timeoutMilliseconds: timeoutMilliseconds) } catch {
            throw failure(error, waitingFor: nil)
        }
    }

    /// During a test the server says nothing: anything (an error, the end of the connection)
    /// ends the test.
    func checkControl() throws(BenchError) {
        if let message = try pollControl(timeoutMilliseconds: 0) { throw unexpected(message) }
    }

    func unexpected(_ message: ControlMessage) -> BenchError {
        if message.verb == "error" {
            if message.text.hasPrefix("busy") {
                return BenchError("server \(options.server):\(options.port) is busy with another test; try again later")
            }
            return BenchError("server \(options.server):\(options.port): \(message.text)")
        }
        return BenchError("server \(options.server):\(options.port) sent '\(message.verb)' out of turn")
    }

    private func failure(_ error: ChannelFailure, waitingFor verb: String?, timeout: UInt64 = 0) -> BenchError {
        let server = "\(options.server):\(options.port)"
        switch error {
        case .closed:
            return BenchError(verb == "ok"
                ? "server \(server) closed the connection without answering (is it a weft bench server?)"
                : "server \(server) closed the control connection during the test")
        case .timedOut:
            return BenchError("server \(server) did not send '\(verb ?? "?")' within \(jsonNumber(Double(timeout) / 1e9)) s"
                + (verb == "ok" ? " (is it a weft bench server?)" : ""))
        case .malformed(let what):
            return BenchError("server \(server) sent \(what) (is it a weft bench server?)")
        case .system(let error):
            return BenchError("control connection to \(server): \(error)")
        }
    }
}

/// The client's senders of one TCP test: one thread per stream, sending the same buffer over and
/// over until `stop()` (which shuts the streams down, waking a blocked send).
private final class StreamSenders: @unchecked Sendable {
    private let streams: [TCPSocket]
    private let size: Int
    private let total = Atomic<UInt64>(0)
    private let stopping = Atomic<Bool>(false)
    private let group = DispatchGroup()
    private let firstFailure = Mutex<String?>(nil)

    init(_ streams: [TCPSocket], size: Int) {
        self.streams = streams
        self.size = size
    }

    var bytes: UInt64 { total.load(ordering: .relaxed) }
    var failure: String? { firstFailure.withLock { $0 } }

    func start() {
        for (index, stream) in streams.enumerated() {
            DispatchQueue(label: "weft.bench.tcp.\(index)").async(group: group) {
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: self.size, alignment: 64)
                defer { buffer.deallocate() }
                buffer.initializeMemory(as: UInt8.self, repeating: 0)
                let bytes = UnsafeRawBufferPointer(buffer)
                while !self.stopping.load(ordering: .relaxed) {
                    do throws(SystemError) {
                        let n = try stream.send(bytes)
                        self.total.add(UInt64(n), ordering: .relaxed)
                    } catch {
                        if !self.stopping.load(ordering: .acquiring) {
                            self.firstFailure.withLock { $0 = $0 ?? error.message }
                        }
                        return
                    }
                }
            }
        }
    }

    /// Idempotent; waits up to 5 s for the threads.
    func stop() {
        if stopping.exchange(true, ordering: .acquiringAndReleasing) { return }
        streams.forEach { $0.shutdown() }
        _ = group.wait(timeout: .now() + .seconds(5))
    }
}

/// Rates over the last second for the progress lines.
/// Warm-up, then `options.duration` of measurement from the moment warm-up ends (CLOCK_MONOTONIC ns).
struct MeasurementWindow {
    private let warmupEnd: UInt64
    private let duration: UInt64
    private(set) var measuring: Bool
    /// When measurement began (the test's start until then).
    private(set) var start: UInt64
    private var end: UInt64

    init(start: UInt64, options: BenchOptions) {
        warmupEnd = start + nanoseconds(options.warmup)
        duration = nanoseconds(options.duration)
        measuring = options.warmup <= 0
        self.start = start
        end = start + duration
    }

    /// True when this call ends the warm-up.
    @discardableResult
    mutating func advance(now: UInt64) -> Bool {
        guard !measuring, now >= warmupEnd else { return false }
        measuring = true
        start = now
        end = now + duration
        return true
    }

    func isOver(now: UInt64) -> Bool { measuring && now >= end }
}

struct Meter {
    let start: UInt64
    var count: UInt64 = 0
    private var lastTime: UInt64
    private var lastCount: UInt64 = 0

    init(start: UInt64) {
        self.start = start
        lastTime = start
    }

    /// A line when a second has passed since the last one: elapsed time, then `format(count in
    /// that second, its seconds)`.
    mutating func line(now: UInt64, warmingUp: Bool, format: (UInt64, Double) -> String) -> String? {
        guard now >= lastTime + BenchClient.progressInterval else { return nil }
        let seconds = Double(now - lastTime) / 1e9
        let text = "\(pad(fixed(Double(now - start) / 1e9, 1), 5)) s  " + format(count - lastCount, seconds)
            + (warmingUp ? "  (warm-up)" : "")
        lastTime = now
        lastCount = count
        return text
    }
}

func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
}

func nanoseconds(_ seconds: Double) -> UInt64 {
    seconds > 0 ? UInt64(seconds * 1e9) : 0
}
