import Benchmark
import WeftCore

/// State made in a benchmark's setup and torn down in its teardown (which gets no setup state).
final class Fixture<Value>: @unchecked Sendable {
    var value: Value?
}

func packetPoolBenchmarks() {
    // One thread, batches of 64 as the data path takes them: the cost of the operations alone.
    let oneThread = configuration(scalingFactor: .kilo)

    Benchmark("PacketPool-allocate-release-1-thread", configuration: oneThread) { benchmark, pool in
        withUnsafeTemporaryAllocation(of: PacketPool.Slot.self, capacity: 64) { slots in
            var taken = 0
            for _ in benchmark.scaledIterations {
                slots[taken] = pool.allocate()!
                taken += 1
                if taken == 64 {
                    for slot in slots { pool.release(slot) }
                    taken = 0
                }
            }
            for index in 0..<taken { pool.release(slots[index]) }
        }
    } setup: {
        PacketPool(slotCount: 1024 + 64, slotSize: 2048)
    }
}
