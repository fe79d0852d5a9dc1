import Foundation
import Glibc
import Testing
import WeftLinux

@Suite(.serialized) struct SignalWatchTests {
    @Test func aSignalReachesTheHandlerAsOrdinaryCode() throws {
        let seen = SignalLog()
        let watch = try SignalWatch([SIGUSR2]) { seen.append($0) }
        defer { watch.cancel() }
        #expect(watch.received == nil)
        // Sent once, right after init: the handler is in place before init returns, and a
        // signal the process raises itself (thread-directed) is seen too.
        raise(SIGUSR2)
        #expect(seen.wait(for: 1))
        #expect(watch.received == SIGUSR2)
        #expect(seen.numbers == [SIGUSR2])
        #expect(SignalWatch.name(SIGTERM) == "SIGTERM")
    }

    @Test func twoWatchesOfOneSignalBothSeeItAndCancellingOneKeepsTheOther() throws {
        let first = SignalLog()
        let second = SignalLog()
        let watchA = try SignalWatch([SIGUSR1, SIGUSR2]) { first.append($0) }
        let watchB = try SignalWatch([SIGUSR2]) { second.append($0) }
        defer { watchB.cancel() }
        kill(getpid(), SIGUSR1)
        #expect(first.wait(for: 1))
        #expect(watchB.received == nil)  // B does not watch SIGUSR1
        watchA.cancel()
        raise(SIGUSR2)  // still handled (not the default action, which would end the test run)
        #expect(second.wait(for: 1))
        #expect(first.numbers == [SIGUSR1])
        #expect(second.numbers == [SIGUSR2])
    }

    @Test func aWatchMadeWhileAnotherThreadCancelsOneKeepsItsHandler() throws {
        // One thread makes and cancels watches of SIGWINCH (default action: ignored, so a lost
        // handler fails the test instead of ending the run) while another does the same and
        // checks, each time, that the signal is still caught while its own watch lives.
        let rounds = 20_000
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            for _ in 0..<rounds { (try? SignalWatch([SIGWINCH]))?.cancel() }
            done.signal()
        }
        var lost = 0
        for _ in 0..<rounds {
            let watch = try SignalWatch([SIGWINCH])
            var current = sigaction()
            sigaction(SIGWINCH, nil, &current)
            if current.__sigaction_handler.sa_handler == nil { lost += 1 }
            watch.cancel()
        }
        done.wait()
        #expect(lost == 0, "a watch found SIGWINCH at its default action \(lost) times")
    }
}

final class SignalLog: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [Int32] = []
    func append(_ number: Int32) { lock.withLock { list.append(number) } }
    var numbers: [Int32] { lock.withLock { list } }

    /// Waits up to 5 s for `count` handler runs.
    func wait(for count: Int) -> Bool {
        for _ in 0..<500 {
            if numbers.count >= count { return true }
            usleep(10_000)
        }
        return false
    }
}
