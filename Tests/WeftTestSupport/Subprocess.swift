import Foundation
import Glibc

/// The result of a finished command.
public struct CommandResult: CustomStringConvertible, Sendable {
    public var status: Int32
    public var output: String
    public var errorOutput: String
    public var description: String { "exit \(status)\nstdout: \(output)\nstderr: \(errorOutput)" }

    public init(status: Int32, output: String, errorOutput: String) {
        self.status = status
        self.output = output
        self.errorOutput = errorOutput
    }
}

public struct SubprocessError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A command started in the background, in a process group of its own, with its output in files
/// (a chatty process never blocks on a full pipe).
///
/// Built on posix_spawn and waitpid rather than Foundation's Process: its waitUntilExit() was
/// seen to hang for good after terminate(), and a timeout must also end what the command
/// started (`sh -c '… &'`), which killing the whole process group does.
public final class Subprocess: @unchecked Sendable {
    public let pid: pid_t
    public let arguments: [String]
    private let directory: String
    private let lock = NSLock()
    private var exitStatus: Int32?

    /// Starts `arguments` (the first looked up on PATH) with `environment` added to ours.
    public init(_ arguments: [String], environment: [String: String] = [:]) throws {
        precondition(!arguments.isEmpty)
        self.arguments = arguments
        directory = try makeTemporaryDirectory("subprocess")
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, directory + "/out", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, directory + "/err", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Own process group (so a timeout can end it all), default signal dispositions, nothing blocked.
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, signal) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        var variables = ProcessInfo.processInfo.environment
        for (name, value) in environment { variables[name] = value }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child: pid_t = 0
        let status = posix_spawnp(&child, arguments[0], &actions, &attributes, argv, envp)
        guard status == 0 else {
            try? FileManager.default.removeItem(atPath: directory)
            throw SubprocessError("cannot start \(arguments[0]): \(String(cString: strerror(status)))")
        }
        pid = child
    }

    deinit {
        if isRunning { killGroup(SIGKILL) }
        _ = reap(blocking: true)
        try? FileManager.default.removeItem(atPath: directory)
    }

    public var output: String { (try? String(contentsOfFile: directory + "/out", encoding: .utf8)) ?? "" }
    public var errorOutput: String { (try? String(contentsOfFile: directory + "/err", encoding: .utf8)) ?? "" }

    public var isRunning: Bool { reap(blocking: false) == nil }

    /// Sends `signal` to the command itself.
    public func signal(_ signal: Int32) {
        if isRunning { kill(pid, signal) }
    }

    /// Waits at most `seconds` for the command to end; after that kills its whole process group.
    @discardableResult
    public func wait(seconds: Double) -> CommandResult {
        let deadline = Date().addingTimeInterval(seconds)
        while isRunning, Date() < deadline { usleep(10_000) }
        if isRunning {
            killGroup(SIGKILL)
            let status = reap(blocking: true) ?? -1
            return CommandResult(status: status, output: output, errorOutput: errorOutput + "\n(killed after \(seconds) s)")
        }
        return CommandResult(status: reap(blocking: true) ?? -1, output: output, errorOutput: errorOutput)
    }

    /// SIGTERM to the command, then `wait(seconds:)`.
    @discardableResult
    public func stop(seconds: Double = 10) -> CommandResult {
        signal(SIGTERM)
        return wait(seconds: seconds)
    }

    private func killGroup(_ signal: Int32) {
        kill(-pid, signal)
    }

    /// The exit status (128 + N for a signal), or nil while the command runs.
    private func reap(blocking: Bool) -> Int32? {
        lock.lock()
        defer { lock.unlock() }
        if let exitStatus { return exitStatus }
        var status: Int32 = 0
        var result: pid_t
        repeat { result = waitpid(pid, &status, blocking ? 0 : WNOHANG) } while result < 0 && errno == EINTR
        guard result == pid else { return result < 0 ? -1 : nil }
        // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import as macros.
        let signal = status & 0x7F
        exitStatus = signal == 0 ? (status >> 8) & 0xFF : 128 + signal
        return exitStatus
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
