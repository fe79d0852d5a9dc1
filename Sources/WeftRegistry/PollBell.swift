import Synchronization

/// Wakes a file registry's watchers before their poll interval is up (`FileRegistry.pollNow`).
///
/// Rings are counted, so a ring that comes while a watcher is reading the log (after it looked
/// at the count, before it waits) still cuts its next wait short: nothing rung is missed.
final class PollBell: Sendable {
    private struct State {
        var rings = 0
        var nextWaiter = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var cancelledBeforeWaiting: Set<Int> = []
    }

    private let state = Mutex(State())

    var rings: Int { state.withLock { $0.rings } }

    func ring() {
        let waiting = state.withLock { state in
            state.rings += 1
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiting { waiter.resume() }
    }

    /// Returns after `seconds`, or at once if the bell rang since `seen` (a value of `rings`),
    /// or when it rings, or when the task is cancelled.
    func wait(seconds: Double, unlessRungSince seen: Int) async {
        if rings != seen { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: .seconds(seconds)) }
            group.addTask { await self.nextRing(after: seen) }
            await group.next()
            group.cancelAll()
        }
    }

    private func nextRing(after seen: Int) async {
        let id = state.withLock { state -> Int in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.cancelledBeforeWaiting.remove(id) != nil || state.rings != seen { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiting = state.withLock { state -> CheckedContinuation<Void, Never>? in
                if let continuation = state.waiters.removeValue(forKey: id) { return continuation }
                state.cancelledBeforeWaiting.insert(id)
                return nil
            }
            waiting?.resume()
        }
    }
}
