import Glibc

extension ChildProcess {
    /// Runs `arguments` (looked up on PATH) to completion with stdin from /dev/null, and
    /// collects stdout and stderr. After `timeout` seconds the process group is killed and the
    /// result says `timedOut`. `shouldStop` is asked about every 20 ms; when it says yes the
    /// group is killed and nil returned. `whileRunning` is called as often, with the seconds
    /// elapsed.
    public static func run(_ arguments: [String], timeout: Double, shouldStop: () -> Bool = { false },
                           whileRunning: ((Double) -> Void)? = nil) throws(SystemError) -> CommandResult? {
        let output = try OutputPipe()
        let errorOutput = try OutputPipe()
        let child = try spawn(arguments, stdout: .descriptor(output.writeEnd), stderr: .descriptor(errorOutput.writeEnd), detachment: .processGroup)
        output.closeWriteEnd()
        errorOutput.closeWriteEnd()
        let pipes = [output, errorOutput]
        let start = MonotonicClock.seconds()
        var status: Int32?
        var endedAt = 0.0
        var timedOut = false
        while true {
            if status == nil, let ended = child.poll() {
                status = ended
                endedAt = MonotonicClock.seconds()
            }
            let anyOpen = pipes.contains(where: \.isOpen)
            if status != nil && (!anyOpen || MonotonicClock.seconds() - endedAt > 0.2) {
                break  // done (a grandchild may hold a pipe open; do not wait for it)
            }
            if status == nil {
                let elapsed = MonotonicClock.seconds() - start
                if shouldStop() {
                    child.kill()
                    return nil
                }
                if elapsed > timeout {
                    status = child.kill()
                    endedAt = MonotonicClock.seconds()
                    timedOut = true
                    continue
                }
                whileRunning?(elapsed)
            }
            if !anyOpen {
                usleep(1_000)
                continue
            }
            do {
                try OutputPipe.collect(pipes, waitingAtMost: 20)
            } catch {
                child.kill()
                throw error
            }
        }
        return CommandResult(status: status ?? -1, output: output.text, errorOutput: errorOutput.text, timedOut: timedOut)
    }
}
