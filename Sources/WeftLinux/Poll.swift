import Glibc

/// Blocking waits with poll(2), for threads that own one descriptor and must also be wakeable.
public enum Poll {
    public enum Readiness: Sendable, Equatable {
        /// `fd` can be read (or has an error/hang-up that the next read will report).
        case readable
        /// The wakeup eventfd was signalled. It is *not* drained: call `wakeup.drain()`.
        /// Takes precedence when both are ready, so a stop request is never starved.
        case wakeup
        case timeout
    }

    /// Waits until `fd` is readable, `wakeup` is signalled, or the timeout (milliseconds, -1 for
    /// none) passes. An interrupted wait (EINTR) restarts with the full timeout. A closed or
    /// invalid `fd` throws EBADF.
    public static func waitReadable(_ fd: Int32, orWakeup wakeup: EventFD,
                                    timeoutMilliseconds: Int32 = -1) throws(SystemError) -> Readiness {
        var fds = (pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: wakeup.fileDescriptor, events: Int16(POLLIN), revents: 0))
        let ready = try withUnsafeMutableBytes(of: &fds) { raw throws(SystemError) -> Int32 in
            let base = raw.baseAddress!.assumingMemoryBound(to: pollfd.self)
            return try Syscall.poll(base, 2, timeoutMilliseconds)
        }
        if ready == 0 { return .timeout }
        if fds.1.revents & Int16(POLLNVAL) != 0 {
            throw SystemError(errno: EBADF, operation: "poll eventfd \(wakeup.fileDescriptor)")
        }
        if fds.1.revents != 0 { return .wakeup }
        if fds.0.revents & Int16(POLLNVAL) != 0 {
            throw SystemError(errno: EBADF, operation: "poll fd \(fd)")
        }
        return .readable
    }

    /// Which of two descriptors `waitReadable(_:_:orWakeup:)` found readable.
    public struct Readable: Sendable, Equatable {
        public var first: Bool
        public var second: Bool

        public init(first: Bool, second: Bool) {
            self.first = first
            self.second = second
        }
    }

    /// Waits until `first` or `second` is readable or `wakeup` is signalled (no timeout): what a
    /// thread that serves two devices sleeps in. Returns nil for the wakeup, which takes
    /// precedence and is not drained; else which descriptors are readable (or have an error or
    /// hang-up the next read will report). EINTR restarts the wait; a closed or invalid
    /// descriptor throws EBADF.
    public static func waitReadable(_ first: Int32, _ second: Int32, orWakeup wakeup: EventFD) throws(SystemError) -> Readable? {
        var fds = (pollfd(fd: first, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: second, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: wakeup.fileDescriptor, events: Int16(POLLIN), revents: 0))
        _ = try withUnsafeMutableBytes(of: &fds) { raw throws(SystemError) -> Int32 in
            let base = raw.baseAddress!.assumingMemoryBound(to: pollfd.self)
            return try Syscall.poll(base, 3, -1)
        }
        let invalid = Int16(POLLNVAL)
        if fds.2.revents & invalid != 0 { throw SystemError(errno: EBADF, operation: "poll eventfd \(wakeup.fileDescriptor)") }
        if fds.0.revents & invalid != 0 { throw SystemError(errno: EBADF, operation: "poll fd \(first)") }
        if fds.1.revents & invalid != 0 { throw SystemError(errno: EBADF, operation: "poll fd \(second)") }
        if fds.2.revents != 0 { return nil }
        return Readable(first: fds.0.revents != 0, second: fds.1.revents != 0)
    }
}
