import WeftCore
import WeftDataPathTesting
import Glibc
import Synchronization


/// Runs `body(index)` on `count` real threads and waits for all of them.
func runOnThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    var threads: [pthread_t] = []
    for index in 0..<count {
        let box = Unmanaged.passRetained(ThreadBody { body(index) })
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { argument in
            let body = Unmanaged<ThreadBody>.fromOpaque(argument!).takeRetainedValue()
            body.run()
            return nil
        }, box.toOpaque())
        precondition(result == 0, "pthread_create failed")
        threads.append(thread)
    }
    for thread in threads {
        pthread_join(thread, nil)
    }
}

final class ThreadBody: @unchecked Sendable {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

/// An atomic Int that escaping thread closures can share (Atomic itself cannot be captured: it is ~Copyable).
final class SharedInt: Sendable {
    let atomic: Atomic<Int>
    init(_ value: Int = 0) { atomic = Atomic(value) }
    func add(_ amount: Int) { atomic.add(amount, ordering: .relaxed) }
    var value: Int { atomic.load(ordering: .acquiring) }
    func store(_ value: Int) { atomic.store(value, ordering: .releasing) }
}

/// One atomic flag per index, for ownership checks.
final class SharedFlags: @unchecked Sendable {
    let flags: UnsafeMutablePointer<Atomic<Bool>>
    let count: Int
    init(count: Int) {
        self.count = count
        flags = .allocate(capacity: count)
        for index in 0..<count { (flags + index).initialize(to: Atomic(false)) }
    }
    deinit {
        flags.deinitialize(count: count)
        flags.deallocate()
    }
    /// Sets the flag; returns its previous value.
    func set(_ index: Int) -> Bool { flags[index].exchange(true, ordering: .acquiringAndReleasing) }
    /// Clears the flag; returns its previous value.
    func clear(_ index: Int) -> Bool { flags[index].exchange(false, ordering: .acquiringAndReleasing) }
}
