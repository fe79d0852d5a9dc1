import Foundation
import Glibc
import WeftLinux

/// A command started in the background, in a process group of its own, with its output in files
/// (a chatty process never blocks on a full pipe): WeftLinux's `ChildProcess` with the
/// conveniences tests want. A timeout ends the whole process group, so also what the command
/// started (`sh -c '… &'`).
public final class Subprocess: Sendable {
    private let child: ChildProcess
    private let directory: String

    public var pid: pid_t { child.pid }
    public var arguments: [String] { child.arguments }

    /// Starts `arguments` (the first looked up on PATH) with `environment` added to ours.
    public init(_ arguments: [String], environment: [String: String] = [:]) throws {
        directory = try makeTemporaryDirectory("subprocess")
        var variables = ProcessInfo.processInfo.environment
        for (name, value) in environment { variables[name] = value }
        do {
            child = try ChildProcess.spawn(arguments,
                                           stdout: .file(directory + "/out", append: false),
                                           stderr: .file(directory + "/err", append: false),
                                           environment: variables.map { "\($0.key)=\($0.value)" })
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
    }

    deinit {
        if child.isRunning { child.kill() }
        try? FileManager.default.removeItem(atPath: directory)
    }

    public var output: String { (try? String(contentsOfFile: directory + "/out", encoding: .utf8)) ?? "" }
    public var errorOutput: String { (try? String(contentsOfFile: directory + "/err", encoding: .utf8)) ?? "" }

    public var isRunning: Bool { child.isRunning }

    /// Sends `signal` to the command itself.
    public func signal(_ signal: Int32) {
        child.signal(signal)
    }

    /// Waits at most `seconds` for the command to end; after that kills its whole process group.
    @discardableResult
    public func wait(seconds: Double) -> CommandResult {
        if let status = child.wait(seconds: seconds) {
            return CommandResult(status: status, output: output, errorOutput: errorOutput)
        }
        return CommandResult(status: child.kill(), output: output, errorOutput: errorOutput, timedOut: true)
    }

    /// SIGTERM to the command, then `wait(seconds:)`.
    @discardableResult
    public func stop(seconds: Double = 10) -> CommandResult {
        signal(SIGTERM)
        return wait(seconds: seconds)
    }
}

/// Runs a command to completion, bounded in time.
@discardableResult
public func run(_ arguments: [String], timeout seconds: Double = 60, environment: [String: String] = [:]) throws -> CommandResult {
    try Subprocess(arguments, environment: environment).wait(seconds: seconds)
}

/// A fresh directory under the temporary directory.
public func makeTemporaryDirectory(_ name: String) throws -> String {
    let path = NSTemporaryDirectory() + "weft-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Where `command` is on PATH, or nil.
public func findInPath(_ command: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin"
    return path.split(separator: ":").map { "\($0)/\(command)" }.first { access($0, X_OK) == 0 }
}

/// The first `count` elements of `stream`, or nil if they do not all arrive within `timeout`;
/// an error the stream throws is rethrown. Callers decide what a timeout means for them.
public func firstElements<Element: Sendable>(_ count: Int, of stream: AsyncThrowingStream<Element, Error>,
                                            within timeout: Duration) async throws -> [Element]? {
    try await withThrowingTaskGroup(of: [Element]?.self) { group in
        group.addTask {
            var elements: [Element] = []
            for try await element in stream {
                elements.append(element)
                if elements.count == count { break }
            }
            return elements
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        let first = try await group.next()!
        group.cancelAll()
        return first
    }
}
