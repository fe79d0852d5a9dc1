import Dispatch
import Glibc
import Synchronization
import WeftCore


/// A long-lived helper thread for the handoff benchmarks. Starting a thread per iteration would
/// allocate and be measured; this one is started in setup and given jobs through a semaphore.
final class HelperThread: @unchecked Sendable {
    private let start = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private let stopping = Atomic<Bool>(false)
    private let count = Atomic<Int>(0)
    private let job: (Int) -> Void
    private var thread = pthread_t()

    /// The CPU the thread pins itself to, if any.
    private let cpu: Int?

    /// `job(count)` runs on the helper each time `begin(count)` is called; with `cpu` the thread
    /// first pins itself to that CPU (when the machine has it).
    init(cpu: Int? = nil, _ job: @escaping (Int) -> Void) {
        self.job = job
        self.cpu = cpu
        let box = Unmanaged.passRetained(self)
        let result = pthread_create(&thread, nil, { argument in
            let helper = Unmanaged<HelperThread>.fromOpaque(argument!).takeRetainedValue()
            helper.loop()
            return nil
        }, box.toOpaque())
        precondition(result == 0, "pthread_create failed")
    }

    private func loop() {
        if let cpu { _ = pinCurrentThread(to: cpu) }
        while true {
            start.wait()
            if stopping.load(ordering: .acquiring) { return }
            job(count.load(ordering: .acquiring))
            finished.signal()
        }
    }

    /// Starts the job with `count`; returns at once.
    func begin(_ count: Int) {
        self.count.store(count, ordering: .releasing)
        start.signal()
    }

    /// Waits for the job started by `begin`.
    func wait() {
        finished.wait()
    }

    /// Ends the thread and joins it.
    func stop() {
        stopping.store(true, ordering: .releasing)
        start.signal()
        pthread_join(thread, nil)
    }
}

/// Spins briefly, then yields the core: two threads spinning on two shared cores would otherwise
/// burn a whole scheduler quantum each time the other side is preempted.
@inline(__always)
func backOff(_ attempts: inout Int) {
    attempts += 1
    if attempts & 127 == 0 { sched_yield() }
}

// sched_setaffinity(2) is not in the Glibc module (it needs _GNU_SOURCE).
private typealias SetAffinity = @convention(c) (pid_t, Int, UnsafeRawPointer) -> Int32
private let setAffinity = dlsym(nil, "sched_setaffinity").map { unsafeBitCast($0, to: SetAffinity.self) }

/// Pins the calling thread to `cpu`; false when there is no such CPU or the call failed.
@discardableResult
func pinCurrentThread(to cpu: Int) -> Bool {
    guard let setAffinity, cpu >= 0, cpu < sysconf(Int32(_SC_NPROCESSORS_ONLN)), cpu < 1024 else { return false }
    return withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 16) { mask in
        mask.initialize(repeating: 0)
        mask[cpu / 64] = 1 << UInt64(cpu % 64)
        return setAffinity(0, 16 * MemoryLayout<UInt64>.size, UnsafeRawPointer(mask.baseAddress!)) == 0
    }
}
