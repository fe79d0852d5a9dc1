import Dispatch
import Synchronization

/// Wakes one sleeping thread when there is work for it, without a syscall when it is awake.
///
/// Idle threads must block rather than spin: on two shared cores a spinning consumer starves the
/// producer, and one it wakes waits a scheduler tick for the core. The sleeper announces itself with `sleeping` before its last
/// look at the work, so a producer that pushes in between always sees the flag and signals.
final class Doorbell: @unchecked Sendable {
    private let sleeping = Atomic<Bool>(false)
    private let semaphore = DispatchSemaphore(value: 0)

    /// Called by the producer after publishing work.
    func ring() {
        if sleeping.exchange(false, ordering: .sequentiallyConsistent) {
            semaphore.signal()
        }
    }

    /// Blocks until `ring()`, unless `hasWork` already reports work (or a stop request).
    func sleep(unless hasWork: () -> Bool) {
        sleeping.store(true, ordering: .sequentiallyConsistent)
        if hasWork() {
            // If a producer already took the flag it has signalled or is about to: consume that
            // signal so the semaphore count stays at zero.
            if !sleeping.exchange(false, ordering: .sequentiallyConsistent) {
                semaphore.wait()
            }
            return
        }
        semaphore.wait()
    }
}
