import Glibc
import Testing
import WeftLinux
@testable import WeftLab

/// The bounded command runner: output, status, time limit. No root needed.
struct SubprocessTests {
    @Test("stdout, stderr and the exit status of a finished command")
    func finished() throws {
        let result = try Subprocess.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout: 10)
        #expect(result.status == 3)
        #expect(result.output == "out\n")
        #expect(result.errorOutput == "err\n")
        #expect(!result.timedOut && !result.succeeded)
    }

    @Test("a command outliving its limit is killed with its process group, promptly")
    func timeLimit() throws {
        let start = MonotonicClock.seconds()
        // The shell's child sleeps too: the whole group goes.
        let result = try Subprocess.run(["sh", "-c", "sleep 30 & sleep 30"], timeout: 0.3)
        #expect(result.timedOut)
        #expect(MonotonicClock.seconds() - start < 3)
    }

    @Test("lots of output does not block the child")
    func largeOutput() throws {
        let result = try Subprocess.run(["sh", "-c", "head -c 1000000 /dev/zero | tr '\\\\0' x"], timeout: 10)
        #expect(result.succeeded)
        #expect(result.output.utf8.count == 1_000_000)
    }

    @Test("whileRunning is called while the command runs")
    func progress() throws {
        var calls = 0
        _ = try Subprocess.run(["sleep", "0.2"], timeout: 5) { _ in calls += 1 }
        #expect(calls >= 3)
    }

    @Test("a child inherits stdin, stdout and stderr only, not this process's other descriptors")
    func noInheritedDescriptors() throws {
        let fd = open("/dev/null", O_RDONLY)
        let high = dup2(fd, 211)
        close(fd)
        defer { close(high) }
        #expect(high == 211)
        let result = try Subprocess.run(["ls", "/proc/self/fd"], timeout: 10)
        #expect(result.succeeded)
        #expect(!result.output.split(separator: "\n").contains("211"), "\(result.output)")
    }

    @Test("a missing program is one clear error")
    func missing() {
        #expect(throws: LabError.self) { try Subprocess.run(["weft-no-such-program"], timeout: 5) }
    }

    @Test("a detached child runs in its own session and stops on SIGTERM")
    func detached() throws {
        let child = try Subprocess.spawnDetached(["sleep", "30"], logFile: nil)
        #expect(getsid(child.pid) == child.pid)
        #expect(child.isRunning)
        #expect(child.stop(grace: 5) == 128 + SIGTERM)
    }
}
