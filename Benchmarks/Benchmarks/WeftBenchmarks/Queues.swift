import Benchmark
import WeftCore

/// State made in a benchmark's setup and torn down in its teardown (which gets no setup state).
final class Fixture<Value>: @unchecked Sendable {
    var value: Value?
}

/// The two index queues, so the handoff benchmark is generic (and specialised) over both.
protocol IndexQueue: AnyObject, Sendable {
    func push(_ value: Int32) -> Bool
    func pop() -> Int32?
}

extension SPSCIndexRing: IndexQueue {}
extension MPMCIndexQueue: IndexQueue {}

/// A producer thread pushing `count` indices into a queue while a consumer thread pops them:
/// the reader→worker handoff of the data path, without the packets. Indices must arrive in order.
///
/// The two threads are pinned to CPUs 0 and 1, so every run measures the cross-core handoff;
/// left to the scheduler they sometimes share one vCPU and take turns, which is several times
/// faster (no cache line crosses cores) and made runs 3x apart.
final class HandoffFixture<Queue: IndexQueue>: @unchecked Sendable {
    let queue: Queue
    let producer: HelperThread
    let consumer: HelperThread

    init(_ queue: Queue) {
        self.queue = queue
        producer = HelperThread(cpu: 1) { count in
            var attempts = 0
            for index in 0..<count {
                while !queue.push(Int32(truncatingIfNeeded: index)) { backOff(&attempts) }
            }
        }
        consumer = HelperThread(cpu: 0) { count in
            var received = 0
            var attempts = 0
            while received < count {
                if let value = queue.pop() {
                    precondition(value == Int32(truncatingIfNeeded: received), "index out of order")
                    received += 1
                } else {
                    backOff(&attempts)
                }
            }
        }
    }

    /// Hands `count` indices over and checks their order.
    func run(_ count: Int) {
        consumer.begin(count)
        producer.begin(count)
        producer.wait()
        consumer.wait()
    }

    func stop() {
        producer.stop()
        consumer.stop()
    }
}

/// The data path's slot cycle across two threads: the producer (the TUN reader) takes a slot from
/// the pool and queues its index; the consumer (a worker) dequeues it and gives the slot back.
/// Pinned to CPUs 1 and 0 as `HandoffFixture`.
final class PoolHandoffFixture: @unchecked Sendable {
    let pool = PacketPool(slotCount: 1024 + 64, slotSize: 2048)
    let ring = SPSCIndexRing(capacity: 1024)
    let producer: HelperThread
    let consumer: HelperThread

    init() {
        producer = HelperThread(cpu: 1) { [pool, ring] count in
            var attempts = 0
            for _ in 0..<count {
                var slot = pool.allocate()
                while slot == nil {
                    backOff(&attempts)
                    slot = pool.allocate()
                }
                // Touch the slot as the reader's read() would.
                pool.buffer(slot!).storeBytes(of: 0x45, as: UInt8.self)
                while !ring.push(slot!) { backOff(&attempts) }
            }
        }
        consumer = HelperThread(cpu: 0) { [pool, ring] count in
            var received = 0
            var attempts = 0
            var check = 0
            while received < count {
                if let slot = ring.pop() {
                    check &+= Int(pool.buffer(slot).load(as: UInt8.self))
                    pool.release(slot)
                    received += 1
                } else {
                    backOff(&attempts)
                }
            }
            precondition(check == 0x45 * count)
        }
    }

    func run(_ count: Int) {
        consumer.begin(count)
        producer.begin(count)
        producer.wait()
        consumer.wait()
    }

    func stop() {
        producer.stop()
        consumer.stop()
    }
}

func queueBenchmarks() {
    // One thread, batches of 64 as the data path moves them: the cost of the operations alone.
    let oneThread = configuration(scalingFactor: .kilo)

    Benchmark("SPSCIndexRing-push-pop-1-thread", configuration: oneThread) { benchmark, ring in
        var sum = 0
        for index in benchmark.scaledIterations {
            _ = ring.push(Int32(truncatingIfNeeded: index))
            if index & 63 == 63 {
                while let value = ring.pop() { sum &+= Int(value) }
            }
        }
        while let value = ring.pop() { sum &+= Int(value) }
        blackHole(sum)
    } setup: {
        SPSCIndexRing(capacity: 1024)
    }

    Benchmark("MPMCIndexQueue-push-pop-1-thread", configuration: oneThread) { benchmark, queue in
        var sum = 0
        for index in benchmark.scaledIterations {
            _ = queue.push(Int32(truncatingIfNeeded: index))
            if index & 63 == 63 {
                while let value = queue.pop() { sum &+= Int(value) }
            }
        }
        while let value = queue.pop() { sum &+= Int(value) }
        blackHole(sum)
    } setup: {
        MPMCIndexQueue(capacity: 1024)
    }

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

    // Two threads, a producer on CPU 1 and a consumer on CPU 0. Each side spins briefly, then
    // yields, when the queue is full or empty.
    let twoThreads = configuration(scalingFactor: .mega, warmupIterations: 2, timeTolerance: threadedTimeTolerance)

    let spsc = Fixture<HandoffFixture<SPSCIndexRing>>()
    Benchmark("SPSCIndexRing-handoff-2-threads", configuration: twoThreads) { benchmark in
        spsc.value!.run(benchmark.scaledIterations.count)
    } setup: {
        spsc.value = HandoffFixture(SPSCIndexRing(capacity: 1024))
    } teardown: {
        spsc.value?.stop()
        spsc.value = nil
    }

    let mpmc = Fixture<HandoffFixture<MPMCIndexQueue>>()
    Benchmark("MPMCIndexQueue-handoff-2-threads", configuration: twoThreads) { benchmark in
        mpmc.value!.run(benchmark.scaledIterations.count)
    } setup: {
        mpmc.value = HandoffFixture(MPMCIndexQueue(capacity: 1024))
    } teardown: {
        mpmc.value?.stop()
        mpmc.value = nil
    }

    let pool = Fixture<PoolHandoffFixture>()
    Benchmark("PacketPool-SPSCIndexRing-slot-cycle-2-threads", configuration: twoThreads) { benchmark in
        pool.value!.run(benchmark.scaledIterations.count)
    } setup: {
        pool.value = PoolHandoffFixture()
    } teardown: {
        pool.value?.stop()
        pool.value = nil
    }
}
