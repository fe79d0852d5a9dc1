import CWeftLinux
import Glibc
import Synchronization

/// A Linux eventfd (non-blocking, close-on-exec) used to wake a thread blocked in
/// `Poll.waitReadable`: another thread calls `signal()`, the woken thread calls `drain()`.
public final class EventFD: @unchecked Sendable {
    public let fileDescriptor: Int32
    private let closed = Atomic<Bool>(false)

    public init() throws(SystemError) {
        fileDescriptor = try Syscall.eventfd(0, CWeftLinux_EFD_NONBLOCK | CWeftLinux_EFD_CLOEXEC)
    }

    /// Makes the descriptor readable until the next `drain()`. Safe from any thread; does
    /// nothing after `close()` (and if the counter is saturated, which still means readable).
    public func signal() {
        if closed.load(ordering: .acquiring) { return }
        _ = try? Syscall.eventfdWrite(fileDescriptor, 1)
    }

    /// Resets the counter so the descriptor is no longer readable. Returns how many signals
    /// were pending (0 if none).
    @discardableResult
    public func drain() -> UInt64 {
        if closed.load(ordering: .acquiring) { return 0 }
        switch try? Syscall.eventfdRead(fileDescriptor) {
        case .processed(let value): return value
        case .wouldBlock, .none: return 0
        }
    }

    /// Idempotent. Do not close while another thread may still poll or signal it.
    public func close() {
        if closed.exchange(true, ordering: .acquiringAndReleasing) { return }
        try? Syscall.close(fileDescriptor, "eventfd")
    }

    deinit {
        close()
    }
}
