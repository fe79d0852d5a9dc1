import Dispatch
import Foundation
import Synchronization
import Testing
import WeftBench
import WeftCore
import WeftLinux
import WeftTestSupport

let loopback = IPv4Address(127, 0, 0, 1)

/// A `BenchServer` on 127.0.0.1 and a free port, serving on a background queue until `stop()`.
final class ServerHarness: @unchecked Sendable {
    let server: BenchServer
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let logLines = Mutex<[String]>([])
    private let lastOutcome = Mutex<BenchServer.Outcome?>(nil)

    init(once: Bool = false) throws {
        server = try BenchServer(bind: loopback, port: 0)
        DispatchQueue(label: "bench-test-server").async { [self] in
            let outcome = try? server.serve(once: once, shouldStop: { [self] in stopping.load(ordering: .relaxed) },
                                            log: { [self] line in logLines.withLock { $0.append(line) } })
            lastOutcome.withLock { $0 = outcome ?? nil }
            finished.signal()
        }
    }

    var port: UInt16 { server.port }
    var lines: [String] { logLines.withLock { $0 } }
    var outcome: BenchServer.Outcome? { lastOutcome.withLock { $0 } }

    func options(_ mode: BenchMode, size: Int? = nil, streams: Int = 1, duration: Double = 0.3, warmup: Double = 0.1) -> BenchOptions {
        BenchOptions(server: loopback, port: port, mode: mode, size: size, streams: streams, duration: duration, warmup: warmup)
    }

    /// Waits (bounded) for `serve` to return, e.g. after a `once` test.
    @discardableResult
    func waitUntilFinished(seconds: Int = 10) -> Bool {
        finished.wait(timeout: .now() + .seconds(seconds)) == .success
    }

    /// Asks the server to stop, waits for it (bounded) and closes its sockets.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        let stopped = waitUntilFinished()
        #expect(stopped, "the server did not stop within 10 s")
        server.close()
    }
}

/// Runs `body` on another thread and returns its value, failing the test after `seconds`.
func withTimeout<T: Sendable>(_ seconds: Int = 20, _ body: @escaping @Sendable () -> T) -> T? {
    let result = Mutex<T?>(nil)
    let done = DispatchSemaphore(value: 0)
    DispatchQueue(label: "bench-test-body").async {
        let value = body()
        result.withLock { $0 = value }
        done.signal()
    }
    guard done.wait(timeout: .now() + .seconds(seconds)) == .success else {
        Issue.record("did not finish within \(seconds) s")
        return nil
    }
    return result.withLock { $0 }
}

/// The flat JSON object of a result, with each value's raw text, checked to parse as JSON.
func parseJSONObject(_ text: String) throws -> (object: [String: Any], raw: [String: String]) {
    let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
    let object = try #require(try JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any])
    // Raw tokens (the objects are flat: no nesting, no commas inside strings).
    var raw: [String: String] = [:]
    for pair in trimmed.dropFirst().dropLast().split(separator: ",") {
        let parts = pair.split(separator: ":", maxSplits: 1)
        raw[String(parts[0].dropFirst().dropLast())] = String(parts[1])
    }
    return (object, raw)
}

/// Checks that the JSON object has exactly `integers` (unsigned integer tokens), `numbers`
/// (JSON numbers) and a "mode" string, and returns the numbers as Doubles.
@discardableResult
func checkSchema(_ text: String, mode: String, integers: [String], numbers: [String]) throws -> [String: Double] {
    let (object, raw) = try parseJSONObject(text)
    #expect(Set(object.keys) == Set(["mode"] + integers + numbers), "keys of \(text)")
    #expect(object["mode"] as? String == mode)
    var values: [String: Double] = [:]
    for key in integers {
        let token = try #require(raw[key], "missing \(key) in \(text)")
        #expect(!token.isEmpty && token.allSatisfy(\.isNumber), "\(key) is not an unsigned integer in \(text)")
        values[key] = Double(token)
    }
    for key in numbers {
        let token = try #require(raw[key], "missing \(key) in \(text)")
        #expect(object[key] is NSNumber, "\(key) is not a number in \(text)")
        let value = try #require(Double(token), "\(key) is not a number in \(text)")
        #expect(value.isFinite && value >= 0, "\(key) = \(token) in \(text)")
        values[key] = value
    }
    return values
}

// MARK: Running the weft binary

enum WeftBinary {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let path = ProcessInfo.processInfo.environment["WEFT_BINARY"] ?? repository + "/.build/debug/weft"
    static var exists: Bool { access(path, X_OK) == 0 }
}

/// Runs the weft binary with `arguments` to the end (at most `timeout` seconds; after that it
/// is killed, which shows as a status of 128 or more).
func weft(_ arguments: [String], timeout: Double = 20) throws -> CommandResult {
    try run([WeftBinary.path] + arguments, timeout: timeout)
}

/// Starts `weft bench server --bind 127.0.0.1 --port 0 [extra]` and returns it with its port.
func startServerProcess(_ extra: [String] = []) throws -> (Subprocess, UInt16) {
    let child = try Subprocess([WeftBinary.path, "bench", "server", "--bind", "127.0.0.1", "--port", "0"] + extra)
    let errors = try #require(waitForError(child, containing: "(TCP and UDP)"), "the server did not start: \(child.errorOutput)")
    let line = try #require(errors.split(separator: "\n").first { $0.contains("listening on 127.0.0.1:") })
    let portText = line.split(separator: ":").last?.split(separator: " ").first
    let port = try #require(portText.flatMap { UInt16($0) }, "no port in '\(line)'")
    return (child, port)
}

/// Waits (at most `seconds`) until `child`'s stderr contains `text`; returns stderr.
func waitForError(_ child: Subprocess, containing text: String, seconds: Double = 10) -> String? {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        let errors = child.errorOutput
        if errors.contains(text) { return errors }
        usleep(10_000)
    }
    return nil
}
