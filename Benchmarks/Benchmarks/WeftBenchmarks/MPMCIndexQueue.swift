import Synchronization

// The baseline that SPSCIndexRing was chosen over: the data path gives each worker its own
// queue with one producer, so it needs no multi-producer queue. Kept here, with its benchmarks,
// so the choice can be measured again.

/// Bounded lock-free multi-producer multi-consumer queue of slot indices (Vyukov's bounded MPMC queue: per-cell
/// sequence numbers). Operations never wait: a full push or empty pop fails at once. A push can also fail, and a pop
/// return nil, while another thread is preempted halfway through an operation on the same cell, so callers must treat
/// failure as "try later", never as proof of fullness or emptiness.
final class MPMCIndexQueue: @unchecked Sendable {
    /// Room between the two positions (as SPSCIndexRing's head and tail).
    private static let lineSpacing = 128
    /// Number of cells (the requested capacity rounded up to a power of two).
    let capacity: Int
    private let mask: Int
    /// Per cell: equal to the position when the cell is free for that push, position + 1 when it holds that push's value.
    private let sequences: UnsafeMutablePointer<Atomic<Int>>
    private let values: UnsafeMutablePointer<Int32>
    /// Enqueue position at offset 0, dequeue position one cache-line pair further, so producers and consumers do not
    /// invalidate each other's line.
    private let positions: UnsafeMutableRawPointer

    /// An empty queue holding up to `capacity` (rounded up to a power of two) values.
    init(capacity: Int) {
        self.capacity = max(1, 1 << (Int.bitWidth - (capacity - 1).leadingZeroBitCount))
        mask = self.capacity - 1
        sequences = .allocate(capacity: self.capacity)
        for cell in 0..<self.capacity {
            (sequences + cell).initialize(to: Atomic(cell))
        }
        values = .allocate(capacity: self.capacity)
        values.initialize(repeating: 0, count: self.capacity)
        positions = .allocate(byteCount: 2 * Self.lineSpacing, alignment: Self.lineSpacing)
        positions.bindMemory(to: Atomic<Int>.self, capacity: 1).initialize(to: Atomic(0))
        (positions + Self.lineSpacing).bindMemory(to: Atomic<Int>.self, capacity: 1).initialize(to: Atomic(0))
    }

    deinit {
        sequences.deinitialize(count: capacity)
        sequences.deallocate()
        values.deallocate()
        enqueuePosition.deinitialize(count: 1)
        dequeuePosition.deinitialize(count: 1)
        positions.deallocate()
    }

    private var enqueuePosition: UnsafeMutablePointer<Atomic<Int>> {
        positions.assumingMemoryBound(to: Atomic<Int>.self)
    }

    private var dequeuePosition: UnsafeMutablePointer<Atomic<Int>> {
        (positions + Self.lineSpacing).assumingMemoryBound(to: Atomic<Int>.self)
    }

    /// Adds `value`; false when the queue is full.
    func push(_ value: Int32) -> Bool {
        var position = enqueuePosition.pointee.load(ordering: .relaxed)
        while true {
            let cell = position & mask
            let sequence = sequences[cell].load(ordering: .acquiring)
            let lag = sequence &- position
            if lag == 0 {
                let (claimed, seen) = enqueuePosition.pointee.weakCompareExchange(
                    expected: position, desired: position &+ 1, ordering: .relaxed)
                if claimed {
                    values[cell] = value
                    sequences[cell].store(position &+ 1, ordering: .releasing)
                    return true
                }
                position = seen
            } else if lag < 0 {
                return false
            } else {
                position = enqueuePosition.pointee.load(ordering: .relaxed)
            }
        }
    }

    /// Removes the oldest value; nil when the queue is empty.
    func pop() -> Int32? {
        var position = dequeuePosition.pointee.load(ordering: .relaxed)
        while true {
            let cell = position & mask
            let sequence = sequences[cell].load(ordering: .acquiring)
            let lag = sequence &- (position &+ 1)
            if lag == 0 {
                let (claimed, seen) = dequeuePosition.pointee.weakCompareExchange(
                    expected: position, desired: position &+ 1, ordering: .relaxed)
                if claimed {
                    let value = values[cell]
                    sequences[cell].store(position &+ mask &+ 1, ordering: .releasing)
                    return value
                }
                position = seen
            } else if lag < 0 {
                return nil
            } else {
                position = dequeuePosition.pointee.load(ordering: .relaxed)
            }
        }
    }

    /// Values queued now; approximate while other threads push or pop.
    var approximateCount: Int {
        let dequeued = dequeuePosition.pointee.load(ordering: .relaxed)
        let enqueued = enqueuePosition.pointee.load(ordering: .relaxed)
        return max(0, min(capacity, enqueued &- dequeued))
    }
}
