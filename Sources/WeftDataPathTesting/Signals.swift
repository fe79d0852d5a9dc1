import Dispatch
import Glibc
import Synchronization
import WeftLinux

/// Counts packets that left the data path (sent to the fake socket or written to the fake TUN)
/// and signals a waiting thread each time another `burst` of them has come out. Lock-free, so the
/// benchmarks can count without allocating.
public final class Completion: @unchecked Sendable {
    private let done = Atomic<Int>(0)
    private let burst: Int
    private let semaphore = DispatchSemaphore(value: 0)

    public init(burst: Int) {
        self.burst = burst
    }

    /// Called by data-path threads: `count` more packets came out.
    @inline(__always)
    public func add(_ count: Int) {
        let now = done.add(count, ordering: .acquiringAndReleasing).newValue
        for _ in 0..<(now / burst - (now - count) / burst) { semaphore.signal() }
    }

    /// Blocks until one more burst has come out; false after `seconds` without it (a packet was
    /// dropped or lost: the caller must stop rather than hang).
    public func wait(seconds: Int = 10) -> Bool {
        semaphore.wait(timeout: .now() + .seconds(seconds)) == .success
    }

    public var count: Int { done.load(ordering: .acquiring) }
}

/// Makes a descriptor readable while packets are on offer, so a data-path thread can block in
/// poll(2) on it exactly as it does on a TUN or a socket.
public final class Offer: @unchecked Sendable {
    private let pending = Atomic<Int>(0)
    public let readiness: EventFD

    public init() throws {
        readiness = try EventFD()
    }

    /// Producer: `count` more packets are waiting.
    public func add(_ count: Int) {
        pending.add(count, ordering: .releasing)
        readiness.signal()
    }

    /// Data-path thread: takes every packet on offer now.
    @inline(__always)
    public func takeAll() -> Int {
        pending.exchange(0, ordering: .acquiring)
    }

    /// Data-path thread, before sleeping: clears readiness. A later `add` signals again, and
    /// one between this and the next `takeAll` is seen by that `takeAll`.
    public func clear() {
        readiness.drain()
    }
}

/// A closed gate blocks every thread that passes it until it is opened: a fake device that
/// "hangs" so a test can fill the queues in front of it.
final class Gate: Sendable {
    private let group = DispatchGroup()
    private let closed = Mutex(false)

    func close() {
        closed.withLock { closed in
            guard !closed else { return }
            closed = true
            group.enter()
        }
    }

    func open() {
        closed.withLock { closed in
            guard closed else { return }
            closed = false
            group.leave()
        }
    }

    func pass() {
        group.wait()
    }
}

/// Polls `condition` every millisecond until it holds or `timeout` passes; returns whether it
/// held. For tests waiting on another thread's work, never on the data path.
public func waitUntil(timeout: Duration = .seconds(5), _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        if ContinuousClock.now >= deadline { return false }
        usleep(1000)
    }
    return true
}
