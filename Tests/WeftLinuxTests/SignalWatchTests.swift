import Foundation
import Glibc
import Testing
import WeftLinux

@Suite struct SignalWatchTests {
    @Test func aSignalReachesTheHandlerAsOrdinaryCode() throws {
        let seen = SignalLog()
        let watch = SignalWatch([SIGUSR2]) { seen.append($0) }
        defer { watch.cancel() }
        #expect(watch.received == nil)
        // To the process, as a user or systemd sends it (raise(3) targets this thread only, and
        // Linux Dispatch does not see a thread-directed signal that is ignored). Dispatch
        // installs its handler asynchronously after the source is resumed, and until then the
        // signal is ignored, so it is sent again until it arrives.
        var waited = 0
        while seen.numbers.isEmpty && waited < 500 {
            kill(getpid(), SIGUSR2)
            usleep(10_000)
            waited += 1
        }
        #expect(seen.numbers.first == SIGUSR2 && Set(seen.numbers) == [SIGUSR2])
        #expect(watch.received == SIGUSR2)
        #expect(SignalWatch.name(SIGTERM) == "SIGTERM")
    }
}

final class SignalLog: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [Int32] = []
    func append(_ number: Int32) { lock.withLock { list.append(number) } }
    var numbers: [Int32] { lock.withLock { list } }
}
