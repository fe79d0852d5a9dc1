import Dispatch
import Foundation
import Testing
@testable import WeftBench
import WeftCore
import WeftLinux
import Synchronization

/// Client and server in-process on 127.0.0.1, short tests (0.1 s warm-up + 0.3 s). One at a
/// time: a UDP flood takes a core, and no assertion is about speed.
@Suite(.serialized) struct LoopbackTests {
    @Test func udpCountsWhatArrived() throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        let progress = ProgressLines()
        let options = harness.options(.udp, size: 64, duration: 1.2, warmup: 0.1)
        let result = try #require(runClient(options, progress: progress.add))
        guard case .udp(let udp) = try result.get() else { Issue.record("not a udp result"); return }
        #expect(udp.size == 64)
        #expect(udp.sent > 0)
        #expect(udp.received > 0 && udp.received <= udp.sent)
        #expect(udp.received + udp.lost == udp.sent)
        #expect(udp.duration >= 1.2 && udp.duration < 2.5)
        #expect(udp.packetsPerSecond > 0 && abs(udp.bitsPerSecond - udp.packetsPerSecond * 64 * 8) < 1)
        #expect(progress.lines.contains { $0.contains("kpps") }, "no progress line: \(progress.lines)")
        try checkUDPSchema(BenchResult.udp(udp).json, size: 64)
        // The server's line for the finished test.
        #expect(waitFor { harness.lines.contains { $0.contains("udp test") && $0.contains("received \(udp.received) of \(udp.sent)") } },
                "server log: \(harness.lines)")
    }

    @Test func udpFullSizeDatagrams() throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        let options = harness.options(.udp, warmup: 0)
        let result = try #require(runClient(options))
        guard case .udp(let udp) = try result.get() else { Issue.record("not a udp result"); return }
        #expect(udp.size == 1472 && udp.received > 0 && udp.received <= udp.sent)
    }

    @Test func tcpWithTwoStreamsMovesBytes() throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        let options = harness.options(.tcp, streams: 2)
        let result = try #require(runClient(options))
        guard case .tcp(let tcp) = try result.get() else { Issue.record("not a tcp result"); return }
        #expect(tcp.streams == 2)
        #expect(tcp.bytes > 0)
        #expect(tcp.duration > 0.2 && tcp.bitsPerSecond > 0)
        let values = try checkSchema(BenchResult.tcp(tcp).json, mode: "tcp", integers: ["streams", "bytes"],
                                     numbers: ["duration_s", "bits_per_second"])
        #expect(values["streams"] == 2)
        #expect(waitFor { harness.lines.contains { $0.contains("tcp test") && $0.contains("2 streams") } }, "server log: \(harness.lines)")
    }

    @Test func latencyPercentilesAreOrdered() throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        let options = harness.options(.latency)
        let result = try #require(runClient(options))
        guard case .latency(let latency) = try result.get() else { Issue.record("not a latency result"); return }
        #expect(latency.size == 64)
        #expect(latency.samples > 0)
        let ordered = [latency.minimum, latency.p50, latency.p90, latency.p99, latency.p999, latency.maximum]
        #expect(ordered == ordered.sorted(), "percentiles out of order: \(ordered)")
        #expect(latency.minimum > 0 && latency.mean >= latency.minimum && latency.mean <= latency.maximum)
        let values = try checkSchema(BenchResult.latency(latency).json, mode: "latency", integers: ["size", "samples", "lost"],
                                     numbers: ["duration_s", "min_us", "mean_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"])
        let fromJSON = ["min_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"].map { values[$0]! }
        #expect(fromJSON == fromJSON.sorted())
    }

    @Test func serverServesTestsOneAfterAnother() throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        for mode in [BenchMode.latency, .udp, .tcp] {
            let options = harness.options(mode, duration: 0.2, warmup: 0)
            let result = try #require(runClient(options))
            #expect(throws: Never.self) { try result.get() }
        }
        #expect(waitFor { harness.lines.count == 3 }, "server log: \(harness.lines)")
    }

    @Test func aSecondClientIsToldTheServerIsBusy() throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        let long = harness.options(.latency, duration: 1.5, warmup: 0)
        let first = DispatchSemaphore(value: 0)
        DispatchQueue(label: "first-client").async {
            _ = try? BenchClient.run(long)
            first.signal()
        }
        usleep(300_000)
        let second = harness.options(.udp, duration: 0.2, warmup: 0)
        let result = try #require(runClient(second))
        #expect(throws: BenchError.self) { try result.get() }
        if case .failure(let error) = result { #expect(error.description.contains("busy"), "\(error)") }
        #expect(first.wait(timeout: .now() + .seconds(10)) == .success)
    }

    @Test func aClientThatVanishesDoesNotStopTheServer() throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        // A hello, then gone in the middle of the test.
        let socket = try TCPSocket.connect(to: loopback, port: harness.port, timeoutMilliseconds: 2000)
        let line = "hello version=1 mode=udp size=64 streams=1 duration=30 warmup=0\n"
        try Array(line.utf8).withUnsafeBytes { try socket.sendAll($0) }
        usleep(100_000)
        socket.close()
        #expect(waitFor { harness.lines.contains { $0.contains("abandoned") } }, "server log: \(harness.lines)")
        // The next test runs normally.
        let options = harness.options(.udp, size: 64, duration: 0.2, warmup: 0)
        let result = try #require(runClient(options))
        #expect(throws: Never.self) { try result.get() }
    }

    @Test func stoppingTheServerEndsARunningTestWithAnError() throws {
        let harness = try ServerHarness()
        let options = harness.options(.udp, size: 64, duration: 30, warmup: 0)
        let started = Date()
        DispatchQueue(label: "stopper").asyncAfter(deadline: .now() + .milliseconds(300)) { harness.stop() }
        let result = try #require(runClient(options))
        #expect(throws: BenchError.self) { try result.get() }
        if case .failure(let error) = result { #expect(error.description.contains("stopping"), "\(error)") }
        #expect(Date().timeIntervalSince(started) < 10)
    }

    @Test func nobodyListeningIsAnError() throws {
        // A port that was free a moment ago: connection refused at once.
        let listener = try TCPSocket.listen(on: loopback, port: 0)
        let port = try listener.localPort
        listener.close()
        let options = BenchOptions(server: loopback, port: port, mode: .udp, duration: 0.2)
        let result = try #require(runClient(options))
        if case .failure(let error) = result {
            #expect(error.description.contains("cannot connect to 127.0.0.1:\(port)") && error.description.contains("refused"), "\(error)")
        } else {
            Issue.record("connected to a closed port")
        }
    }

    @Test func aSilentServerTimesOut() throws {
        // Accepts (the kernel does, from the backlog) but never answers the hello.
        let listener = try TCPSocket.listen(on: loopback, port: 0)
        defer { listener.close() }
        var options = BenchOptions(server: loopback, port: try listener.localPort, mode: .latency, duration: 0.2)
        options.answerTimeout = 0.3
        let started = Date()
        let result = try #require(runClient(options))
        if case .failure(let error) = result {
            #expect(error.description.contains("did not send 'ok'"), "\(error)")
        } else {
            Issue.record("a silent server gave a result")
        }
        #expect(Date().timeIntervalSince(started) < 5)
    }
}

/// Runs the client on another thread, failing the test if it takes more than 20 s.
func runClient(_ options: BenchOptions, progress: @escaping @Sendable (String) -> Void = { _ in }) -> Result<BenchResult, BenchError>? {
    withTimeout { Result { () throws(BenchError) in try BenchClient.run(options, progress: progress) } }
}

/// Collects progress lines from the client's thread.
final class ProgressLines: @unchecked Sendable {
    private let storage = Mutex<[String]>([])
    var lines: [String] { storage.withLock { $0 } }
    var add: @Sendable (String) -> Void { { [self] line in storage.withLock { $0.append(line) } } }
}

/// Polls `condition` for up to `seconds`.
func waitFor(seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

func checkUDPSchema(_ json: String, size: Int) throws {
    let values = try checkSchema(json, mode: "udp",
                                 integers: ["size", "sent", "received", "lost", "reordered", "duplicates"],
                                 numbers: ["duration_s", "packets_per_second", "bits_per_second"])
    #expect(values["size"] == Double(size))
    #expect(values["received"]! <= values["sent"]! && values["received"]! > 0)
    #expect(values["received"]! + values["lost"]! == values["sent"]!)
}
