import Glibc
import Synchronization
import WeftLinux

/// The lab's watch, set by `LabSignals.install()`.
private let labWatch = Mutex<SignalWatch?>(nil)

/// Ctrl-C and SIGTERM while the lab works: a `SignalWatch` only records the signal; every wait
/// in this module looks at it at least every 20 ms and stops with a `LabError` carrying it, so
/// the caller can tear down what it built. Children run in their own process group, so a Ctrl-C
/// in the terminal reaches only `weft lab`, which then ends them itself.
public enum LabSignals {
    /// Idempotent.
    public static func install() throws(LabError) {
        do {
            try labWatch.withLock { (watch: inout SignalWatch?) throws(SystemError) in
                if watch == nil { watch = try SignalWatch([SIGINT, SIGTERM, SIGHUP]) }
            }
        } catch {
            throw LabError("cannot watch for Ctrl-C: \(error)")
        }
    }

    /// The signal received, if any.
    public static var pending: Int32? {
        labWatch.withLock { $0?.received }
    }

    /// Throws the interruption when a signal arrived.
    public static func check() throws(LabError) {
        if let number = pending { throw interrupted(number) }
    }

    static func interrupted(_ number: Int32) -> LabError {
        LabError("interrupted by \(name(number))", signal: number)
    }

    public static func name(_ number: Int32) -> String {
        SignalWatch.name(number)
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

/// Runs commands as WeftLinux's `ChildProcess`, every wait bounded and interruptible by
/// `LabSignals`.
public enum Subprocess {
    /// Runs `arguments` (looked up on PATH) to completion with stdin from /dev/null. After
    /// `timeout` seconds, or when a signal arrives (if `interruptible`), the process group is
    /// killed; a signal then throws. `whileRunning` is called about every 20 ms with the
    /// seconds elapsed.
    public static func run(_ arguments: [String], timeout: Double, interruptible: Bool = true,
                           whileRunning: ((Double) -> Void)? = nil) throws(LabError) -> CommandResult {
        if interruptible { try LabSignals.check() }
        let result: CommandResult?
        do {
            result = try ChildProcess.run(arguments, timeout: timeout, shouldStop: { interruptible && LabSignals.pending != nil },
                                          whileRunning: whileRunning)
        } catch {
            throw LabError("cannot run \(arguments[0]): \(error.message)")
        }
        guard let result else { throw LabSignals.interrupted(LabSignals.pending ?? SIGINT) }
        return result
    }

    /// Starts `arguments` in the background, leader of a new session (so a Ctrl-C in the
    /// terminal does not reach it), stdin from /dev/null, stdout and stderr appended to
    /// `logFile` (or /dev/null).
    public static func spawnDetached(_ arguments: [String], logFile: String?) throws(LabError) -> ChildProcess {
        try spawn(arguments, stdout: logFile.map { .file($0, append: true) } ?? .discard, stderr: .standardOutput, detachment: .session)
    }

    static func spawn(_ arguments: [String], stdout: ChildProcess.Output, stderr: ChildProcess.Output,
                      detachment: ChildProcess.Detachment) throws(LabError) -> ChildProcess {
        do {
            return try ChildProcess.spawn(arguments, stdout: stdout, stderr: stderr, detachment: detachment)
        } catch {
            throw LabError("cannot run \(arguments[0]): \(error.message)")
        }
    }
}

