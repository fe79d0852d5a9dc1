import Foundation
import Glibc
import Synchronization
import WeftLinux

/// The last SIGINT, SIGTERM or SIGHUP received since `LabSignals.install()`, or 0.
private let pendingSignal = Atomic<Int32>(0)

/// Ctrl-C and SIGTERM while the lab works: the handler only records the signal; every wait in
/// this module looks at it at least every 20 ms and stops with a `LabError` carrying it, so the
/// caller can tear down what it built. Children run in their own process group, so a Ctrl-C in
/// the terminal reaches only `weft lab`, which then ends them itself.
public enum LabSignals {
    public static func install() {
        var handled = sigset_t()
        sigemptyset(&handled)
        for number in [SIGINT, SIGTERM, SIGHUP] {
            signal(number) { pendingSignal.store($0, ordering: .relaxed) }
            sigaddset(&handled, number)
        }
        // A parent may have started us with these blocked (a test runner's Process does):
        // they would then never arrive.
        sigprocmask(SIG_UNBLOCK, &handled, nil)
    }

    /// The signal received, if any.
    public static var pending: Int32? {
        let number = pendingSignal.load(ordering: .relaxed)
        return number == 0 ? nil : number
    }

    /// Throws the interruption when a signal arrived.
    public static func check() throws(LabError) {
        if let number = pending { throw interrupted(number) }
    }

    static func interrupted(_ number: Int32) -> LabError {
        LabError("interrupted by \(name(number))", signal: number)
    }

    public static func name(_ number: Int32) -> String {
        switch number {
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        case SIGHUP: "SIGHUP"
        default: "signal \(number)"
        }
    }
}

/// Sleeps, waking early with the interruption when a signal arrives.
func pause(_ seconds: Double) throws(LabError) {
    let deadline = MonotonicClock.seconds() + seconds
    while true {
        try LabSignals.check()
        let left = deadline - MonotonicClock.seconds()
        if left <= 0 { return }
        usleep(UInt32(min(left, 0.02) * 1e6))
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

    public var succeeded: Bool { status == 0 && !timedOut }

    public var description: String {
        var text = timedOut ? "timed out" : "exit \(status)"
        let error = errorOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        if !error.isEmpty { text += ": " + error.split(separator: "\n").suffix(3).joined(separator: " | ") }
        return text
    }
}

/// A process started by `Subprocess.spawn`, leader of its own process group.
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    public let arguments: [String]
    private var finalStatus: Int32?

    init(pid: pid_t, arguments: [String]) {
        self.pid = pid
        self.arguments = arguments
    }

    /// The exit status (or 128 + signal) once it has ended; never blocks.
    public func poll() -> Int32? {
        if let finalStatus { return finalStatus }
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        if result == pid {
            finalStatus = Self.decode(status)
        } else if result < 0 && errno == ECHILD {
            finalStatus = -1  // reaped elsewhere: gone all the same
        }
        return finalStatus
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

    /// Sends `signal` to the whole process group.
    public func signalGroup(_ number: Int32) {
        guard poll() == nil else { return }
        if kill(-pid, number) != 0 { kill(pid, number) }
    }

    /// SIGTERM to the group, up to `grace` seconds, then SIGKILL; returns the status.
    @discardableResult
    public func stop(grace: Double = 5) -> Int32 {
        signalGroup(SIGTERM)
        if let status = wait(seconds: grace) { return status }
        signalGroup(SIGKILL)
        return wait(seconds: 5) ?? -1
    }

    static func decode(_ status: Int32) -> Int32 {
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}

/// Runs commands with posix_spawn and waitpid, every wait bounded. (Foundation's Process can
/// hang in waitUntilExit after terminate(); this cannot.)
public enum Subprocess {
    /// glibc's POSIX_SPAWN_SETSID (2.26+), hidden from Swift behind _GNU_SOURCE.
    private static let spawnSetSID: Int32 = 0x80

    /// Where a child's output goes.
    enum Output {
        /// Write ends of two pipes, for stdout and stderr.
        case pipes(Int32, Int32)
        /// Both appended to this file.
        case file(String)
    }

    /// Runs `arguments` (looked up on PATH) to completion with stdin from /dev/null. After
    /// `timeout` seconds, or when a signal arrives (if `interruptible`), the process group is
    /// killed; a signal then throws. `whileRunning` is called about every 20 ms with the
    /// seconds elapsed.
    public static func run(_ arguments: [String], timeout: Double, interruptible: Bool = true,
                           whileRunning: ((Double) -> Void)? = nil) throws(LabError) -> CommandResult {
        if interruptible { try LabSignals.check() }
        var outputPipe: [Int32] = [-1, -1]
        var errorPipe: [Int32] = [-1, -1]
        guard pipe(&outputPipe) == 0 else { throw LabError("pipe: \(errnoText())") }
        guard pipe(&errorPipe) == 0 else {
            close(outputPipe[0]); close(outputPipe[1])
            throw LabError("pipe: \(errnoText())")
        }
        for fd in outputPipe + errorPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let child: ChildProcess
        do {
            child = try spawn(arguments, output: .pipes(outputPipe[1], errorPipe[1]), newSession: false)
        } catch {
            for fd in outputPipe + errorPipe { close(fd) }
            throw error
        }
        close(outputPipe[1])
        close(errorPipe[1])

        var readers = [PipeReader(fd: outputPipe[0]), PipeReader(fd: errorPipe[0])]
        defer { for reader in readers where reader.fd >= 0 { close(reader.fd) } }
        let start = MonotonicClock.seconds()
        var status: Int32?
        var endedAt = 0.0
        var timedOut = false
        while true {
            if status == nil, let ended = child.poll() {
                status = ended
                endedAt = MonotonicClock.seconds()
            }
            let open = readers.indices.filter { readers[$0].fd >= 0 }
            if status != nil && (open.isEmpty || MonotonicClock.seconds() - endedAt > 0.2) {
                break  // done (a grandchild may hold a pipe open; do not wait for it)
            }
            if status == nil {
                let elapsed = MonotonicClock.seconds() - start
                if interruptible, let number = LabSignals.pending {
                    child.signalGroup(SIGKILL)
                    _ = child.wait(seconds: 5)
                    throw LabSignals.interrupted(number)
                }
                if elapsed > timeout {
                    child.signalGroup(SIGKILL)
                    status = child.wait(seconds: 5) ?? -1
                    endedAt = MonotonicClock.seconds()
                    timedOut = true
                    continue
                }
                whileRunning?(elapsed)
            }
            if open.isEmpty {
                usleep(1_000)
                continue
            }
            var descriptors = open.map { pollfd(fd: readers[$0].fd, events: Int16(POLLIN), revents: 0) }
            let ready = Glibc.poll(&descriptors, nfds_t(descriptors.count), 20)
            if ready <= 0 { continue }
            for (slot, index) in open.enumerated() where descriptors[slot].revents != 0 {
                readers[index].readAvailable()
            }
        }
        return CommandResult(status: status ?? -1, output: readers[0].text, errorOutput: readers[1].text, timedOut: timedOut)
    }

    /// Starts `arguments` in the background, leader of a new session (so a Ctrl-C in the
    /// terminal does not reach it), stdin from /dev/null, stdout and stderr appended to
    /// `logFile` (or /dev/null).
    public static func spawnDetached(_ arguments: [String], logFile: String?) throws(LabError) -> ChildProcess {
        try spawn(arguments, output: .file(logFile ?? "/dev/null"), newSession: true)
    }

    static func spawn(_ arguments: [String], output: Output, newSession: Bool) throws(LabError) -> ChildProcess {
        precondition(!arguments.isEmpty)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        switch output {
        case .pipes(let out, let err):
            posix_spawn_file_actions_adddup2(&actions, out, 1)
            posix_spawn_file_actions_adddup2(&actions, err, 2)
        case .file(let path):
            posix_spawn_file_actions_addopen(&actions, 1, path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
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
        for number in [SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT] { sigaddset(&defaults, number) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var flags = Int32(POSIX_SPAWN_SETSIGMASK) | Int32(POSIX_SPAWN_SETSIGDEF)
        if newSession {
            flags |= spawnSetSID
        } else {
            flags |= Int32(POSIX_SPAWN_SETPGROUP)
            posix_spawnattr_setpgroup(&attributes, 0)
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))

        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        argv.append(nil)
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawnp(&pid, arguments[0], &actions, &attributes, argv, environ)
        guard result == 0 else {
            throw LabError("cannot run \(arguments[0]): \(String(cString: strerror(result)))")
        }
        return ChildProcess(pid: pid, arguments: arguments)
    }
}

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
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    for fd in entries.compactMap(Int32.init) where fd > 2 {
        let flags = fcntl(fd, F_GETFD)
        if flags >= 0 && flags & FD_CLOEXEC == 0 { posix_spawn_file_actions_addclose(&actions, fd) }
    }
}

/// Collects what a child writes to one pipe.
private struct PipeReader {
    var fd: Int32
    var bytes: [UInt8] = []

    init(fd: Int32) { self.fd = fd }

    mutating func readAvailable() {
        var buffer = [UInt8](repeating: 0, count: 16384)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count > 0 {
            bytes += buffer[0..<count]
        } else if count == 0 || (errno != EINTR && errno != EAGAIN) {
            close(fd)
            fd = -1
        }
    }

    var text: String { String(decoding: bytes, as: UTF8.self) }
}

func errnoText() -> String { String(cString: strerror(errno)) }
