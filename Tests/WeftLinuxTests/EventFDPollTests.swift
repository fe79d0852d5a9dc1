import Glibc
import Testing
import WeftCore
@testable import WeftLinux

@Suite struct EventFDPollTests {
    @Test func timeoutWithNothingReady() throws {
        let wakeup = try EventFD()
        let other = try EventFD()   // a descriptor that never becomes readable
        defer { wakeup.close(); other.close() }
        #expect(try Poll.waitReadable(other.fileDescriptor, orWakeup: wakeup, timeoutMilliseconds: 20) == .timeout)
    }

    @Test func signalWakesAndDrainResets() throws {
        let wakeup = try EventFD()
        let other = try EventFD()
        defer { wakeup.close(); other.close() }
        wakeup.signal()
        wakeup.signal()
        #expect(try Poll.waitReadable(other.fileDescriptor, orWakeup: wakeup, timeoutMilliseconds: 1000) == .wakeup)
        #expect(wakeup.drain() == 2)
        #expect(wakeup.drain() == 0)
        #expect(try Poll.waitReadable(other.fileDescriptor, orWakeup: wakeup, timeoutMilliseconds: 10) == .timeout)
    }

    @Test func signalFromAnotherThreadWakesABlockedPoll() throws {
        let wakeup = try EventFD()
        let other = try EventFD()
        defer { wakeup.close(); other.close() }
        Thread.detach {
            usleep(50_000)
            wakeup.signal()
        }
        #expect(try Poll.waitReadable(other.fileDescriptor, orWakeup: wakeup, timeoutMilliseconds: 5000) == .wakeup)
    }

    @Test func readableFileDescriptor() throws {
        let wakeup = try EventFD()
        let data = try EventFD()
        defer { wakeup.close(); data.close() }
        data.signal()
        #expect(try Poll.waitReadable(data.fileDescriptor, orWakeup: wakeup, timeoutMilliseconds: 1000) == .readable)
    }

    @Test func closeIsIdempotent() throws {
        let wakeup = try EventFD()
        wakeup.close()
        wakeup.close()
        wakeup.signal()   // no effect, no crash
        #expect(wakeup.drain() == 0)
    }
}
