import Glibc
import Synchronization

/// A process started with posix_spawn, leader of its own process group (or session), reaped
/// with waitpid; every wait is bounded. The one spawn wrapper for `weft lab` and the tests.
/// (Foundation's Process can hang in waitUntilExit after terminate(); this cannot.)
///
/// The child gets stdin from /dev/null, no descriptor of ours above stderr, nothing blocked
/// and the default action for the usual termination signals, whatever this process set.
public final class ChildProcess: Sendable {
    /// Where the child's stdout or stderr goes.
    public enum Output: Sendable {
        /// /dev/null.
        case discard
        /// A file, created with mode 0644 if missing, appended to or truncated.
        case file(String, append: Bool)
        /// A descriptor of ours (e.g. a pipe's write end), duplicated into the child.
        case descriptor(Int32)
        /// Wherever stdout goes (for stderr only).
        case standardOutput
    }

    /// How the child is separated from our terminal and from us.
    public enum Detachment: Sendable {
        /// A process group of its own: a signal to the group reaches it and what it started.
        case processGroup
        /// A new session (and group): in addition, a Ctrl-C in our terminal does not reach it.
        case session
    }

    public let pid: pid_t
    public let arguments: [String]
    /// The decoded status once reaped.
    private let finalStatus = Mutex<Int32?>(nil)

    private init(pid: pid_t, arguments: [String]) {
        self.pid = pid
        self.arguments = arguments
    }

    /// Starts `arguments` (the first looked up on PATH). `environment` ("NAME=value" entries)
    /// replaces ours when given.
    public static func spawn(_ arguments: [String], stdout: Output, stderr: Output,
                             environment: [String]? = nil,
                             detachment: Detachment = .processGroup) throws(SystemError) -> ChildProcess {
        precondition(!arguments.isEmpty)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        for (fd, output) in [(Int32(1), stdout), (2, stderr)] {
            switch output {
            case .discard:
                posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_WRONLY, 0)
            case .file(let path, let append):
                posix_spawn_file_actions_addopen(&actions, fd, path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0o644)
            case .descriptor(let source):
                posix_spawn_file_actions_adddup2(&actions, source, fd)
            case .standardOutput:
                posix_spawn_file_actions_adddup2(&actions, 1, fd)
            }
        }
        closeInheritedDescriptors(&actions)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for number in [SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT, SIGCHLD] { sigaddset(&defaults, number) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var flags = Int32(POSIX_SPAWN_SETSIGMASK) | Int32(POSIX_SPAWN_SETSIGDEF)
        switch detachment {
        case .session:
            flags |= spawnSetSID
        case .processGroup:
            flags |= Int32(POSIX_SPAWN_SETPGROUP)
            posix_spawnattr_setpgroup(&attributes, 0)
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))

        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.map { strdup($0) } + [nil] }
        defer {
            argv.forEach { free($0) }
            envp?.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result: Int32
        if var envp {
            result = posix_spawnp(&pid, arguments[0], &actions, &attributes, argv, &envp)
        } else {
            result = posix_spawnp(&pid, arguments[0], &actions, &attributes, argv, environ)
        }
        guard result == 0 else { throw SystemError(errno: result, operation: "spawn \(arguments[0])") }
        return ChildProcess(pid: pid, arguments: arguments)
    }

    /// The exit status, or 128 + the signal that ended it, once it has ended (-1 if someone
    /// else reaped it); never blocks.
    public func poll() -> Int32? {
        finalStatus.withLock { finalStatus in
            if let finalStatus { return finalStatus }
            var status: Int32 = 0
            var result: pid_t
            repeat { result = waitpid(pid, &status, WNOHANG) } while result < 0 && errno == EINTR
            if result == pid {
                finalStatus = Self.decode(status)
            } else if result < 0 {
                finalStatus = -1  // reaped elsewhere: gone all the same
            }
            return finalStatus
        }
    }

    public var isRunning: Bool { poll() == nil }

    /// Waits at most `seconds` for the end; nil if it still runs.
    public func wait(seconds: Double) -> Int32? {
        let deadline = MonotonicClock.seconds() + seconds
        while true {
            if let status = poll() { return status }
            if MonotonicClock.seconds() >= deadline { return nil }
            usleep(5_000)
        }
    }

    /// Sends `signal` to the process alone.
    public func signal(_ number: Int32) {
        guard poll() == nil else { return }
        Glibc.kill(pid, number)
    }

    /// Sends `signal` to the whole process group (to the process, if the group is gone).
    public func signalGroup(_ number: Int32) {
        guard poll() == nil else { return }
        if Glibc.kill(-pid, number) != 0 { Glibc.kill(pid, number) }
    }

    /// SIGTERM to the group, up to `grace` seconds, then SIGKILL; returns the status.
    @discardableResult
    public func stop(grace: Double = 5) -> Int32 {
        signalGroup(SIGTERM)
        return wait(seconds: grace) ?? kill()
    }

    /// SIGKILL to the group and the status it ends with (-1 if it outlives 5 more seconds).
    @discardableResult
    public func kill() -> Int32 {
        signalGroup(SIGKILL)
        return wait(seconds: 5) ?? -1
    }

    /// WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import as macros.
    static func decode(_ status: Int32) -> Int32 {
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}

/// The end of a command run to completion.
public struct CommandResult: Sendable, CustomStringConvertible {
    /// The exit status, or 128 + the signal that ended it.
    public var status: Int32
    public var output: String
    public var errorOutput: String
    /// Killed because it outlived its time limit.
    public var timedOut: Bool

    public init(status: Int32, output: String, errorOutput: String, timedOut: Bool = false) {
        self.status = status
        self.output = output
        self.errorOutput = errorOutput
        self.timedOut = timedOut
    }

    public var succeeded: Bool { status == 0 && !timedOut }

    /// One line for an error message: the status and the last lines of stderr.
    public var description: String {
        var text = timedOut ? "timed out" : "exit \(status)"
        let lines = errorOutput.split(separator: "\n").filter { !$0.allSatisfy(\.isWhitespace) }
        if !lines.isEmpty { text += ": " + lines.suffix(3).joined(separator: " | ") }
        return text
    }

    /// Everything, for a failed test: the status, stdout and stderr in full.
    public var transcript: String {
        "\(timedOut ? "timed out, killed: exit \(status)" : "exit \(status)")\nstdout: \(output)\nstderr: \(errorOutput)"
    }
}

/// glibc's POSIX_SPAWN_SETSID (2.26+), hidden from Swift behind _GNU_SOURCE.
private let spawnSetSID: Int32 = 0x80

/// glibc's posix_spawn_file_actions_addclosefrom_np (2.34+), hidden from Swift behind
/// _GNU_SOURCE, looked up once.
private let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
    return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
}()

/// A child gets stdin, stdout and stderr and nothing else. Above all a detached forwarder must
/// not keep a descriptor of whoever started `weft lab up`: Foundation's Process learns that its
/// child ended when a socket it handed down is closed, and would wait as long as the forwarder
/// runs. Done in the child, so this process's own descriptors stay as they are.
private func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
    if let addCloseFrom, addCloseFrom(&actions, 3) == 0 { return }
    guard let directory = opendir("/proc/self/fd") else { return }
    defer { closedir(directory) }
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard let fd = Int32(name), fd > 2 else { continue }
        let flags = fcntl(fd, F_GETFD)
        if flags >= 0 && flags & FD_CLOEXEC == 0 { posix_spawn_file_actions_addclose(&actions, fd) }
    }
}
