import Synchronization

/// Room between two hot atomics; 128 rather than 64 because adjacent-line prefetch pulls lines in pairs.
let cacheLinePairSize = 128

/// Smallest power of two >= `value` (and >= 1), so ring positions map to cells with a mask.
func roundedUpToPowerOfTwo(_ value: Int) -> Int {
    precondition(value > 0 && value <= 1 << 30, "ring capacity \(value) is out of range")
    var capacity = 1
    while capacity < value { capacity <<= 1 }
    return capacity
}

/// Bounded lock-free multi-producer multi-consumer queue of slot indices (Vyukov's bounded MPMC queue: per-cell
/// sequence numbers). Operations never wait: a full push or empty pop fails at once. A push can also fail, and a pop
/// return nil, while another thread is preempted halfway through an operation on the same cell, so callers must treat
/// failure as "try later", never as proof of fullness or emptiness.
public final class MPMCIndexQueue: @unchecked Sendable {
    /// Number of cells (the requested capacity rounded up to a power of two).
    public let capacity: Int
    private let mask: Int
    /// Per cell: equal to the position when the cell is free for that push, position + 1 when it holds that push's value.
    private let sequences: UnsafeMutablePointer<Atomic<Int>>
    private let values: UnsafeMutablePointer<Int32>
    /// Enqueue position at offset 0, dequeue position one cache-line pair further, so producers and consumers do not
    /// invalidate each other's line.
    private let positions: UnsafeMutableRawPointer

    /// An empty queue holding up to `capacity` (rounded up to a power of two) values.
    public init(capacity: Int) {
        self.capacity = roundedUpToPowerOfTwo(capacity)
        mask = self.capacity - 1
        sequences = .allocate(capacity: self.capacity)
        for cell in 0..<self.capacity {
            (sequences + cell).initialize(to: Atomic(cell))
        }
        values = .allocate(capacity: self.capacity)
        values.initialize(repeating: 0, count: self.capacity)
        positions = .allocate(byteCount: 2 * cacheLinePairSize, alignment: cacheLinePairSize)
        positions.bindMemory(to: Atomic<Int>.self, capacity: 1).initialize(to: Atomic(0))
        (positions + cacheLinePairSize).bindMemory(to: Atomic<Int>.self, capacity: 1).initialize(to: Atomic(0))
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
        (positions + cacheLinePairSize).assumingMemoryBound(to: Atomic<Int>.self)
    }

    /// Adds `value`; false when the queue is full.
    public func push(_ value: Int32) -> Bool {
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
    public func pop() -> Int32? {
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
    public var approximateCount: Int {
        let dequeued = dequeuePosition.pointee.load(ordering: .relaxed)
        let enqueued = enqueuePosition.pointee.load(ordering: .relaxed)
        return max(0, min(capacity, enqueued &- dequeued))
    }
}

/// Bounded lock-free single-producer single-consumer ring of slot indices; head and tail on separate cache lines.
/// Used to hand packets from the TUN reader to one worker. Exactly one thread may push and one may pop.
public final class SPSCIndexRing: @unchecked Sendable {
    /// Number of cells (the requested capacity rounded up to a power of two).
    public let capacity: Int
    private let mask: Int
    private let values: UnsafeMutablePointer<Int32>
    /// Producer line: tail (atomic) and the producer's last-seen head; consumer line: head and its last-seen tail.
    /// The cached copies let each side touch the other's line only when the ring looks full or empty.
    private let lines: UnsafeMutableRawPointer

    /// An empty ring holding up to `capacity` (rounded up to a power of two) values.
    public init(capacity: Int) {
        self.capacity = roundedUpToPowerOfTwo(capacity)
        mask = self.capacity - 1
        values = .allocate(capacity: self.capacity)
        values.initialize(repeating: 0, count: self.capacity)
        lines = .allocate(byteCount: 2 * cacheLinePairSize, alignment: cacheLinePairSize)
        lines.bindMemory(to: Atomic<Int>.self, capacity: 1).initialize(to: Atomic(0))
        (lines + cacheLinePairSize).bindMemory(to: Atomic<Int>.self, capacity: 1).initialize(to: Atomic(0))
        (lines + 8).bindMemory(to: Int.self, capacity: 1).initialize(to: 0)
        (lines + cacheLinePairSize + 8).bindMemory(to: Int.self, capacity: 1).initialize(to: 0)
    }

    deinit {
        tail.deinitialize(count: 1)
        head.deinitialize(count: 1)
        values.deallocate()
        lines.deallocate()
    }

    private var tail: UnsafeMutablePointer<Atomic<Int>> { lines.assumingMemoryBound(to: Atomic<Int>.self) }
    private var producerCachedHead: UnsafeMutablePointer<Int> { (lines + 8).assumingMemoryBound(to: Int.self) }
    private var head: UnsafeMutablePointer<Atomic<Int>> {
        (lines + cacheLinePairSize).assumingMemoryBound(to: Atomic<Int>.self)
    }
    private var consumerCachedTail: UnsafeMutablePointer<Int> {
        (lines + cacheLinePairSize + 8).assumingMemoryBound(to: Int.self)
    }

    /// Producer only: adds `value`; false when full.
    public func push(_ value: Int32) -> Bool {
        let position = tail.pointee.load(ordering: .relaxed)
        if position &- producerCachedHead.pointee >= capacity {
            producerCachedHead.pointee = head.pointee.load(ordering: .acquiring)
            if position &- producerCachedHead.pointee >= capacity { return false }
        }
        values[position & mask] = value
        tail.pointee.store(position &+ 1, ordering: .releasing)
        return true
    }

    /// Consumer only: removes the oldest value; nil when empty.
    public func pop() -> Int32? {
        let position = head.pointee.load(ordering: .relaxed)
        if position == consumerCachedTail.pointee {
            consumerCachedTail.pointee = tail.pointee.load(ordering: .acquiring)
            if position == consumerCachedTail.pointee { return nil }
        }
        let value = values[position & mask]
        head.pointee.store(position &+ 1, ordering: .releasing)
        return value
    }

    /// True when nothing is queued; exact only when called by the producer or consumer with the other idle.
    public var isEmpty: Bool { count == 0 }

    /// Values queued now; approximate while the other side is active.
    public var count: Int {
        let consumed = head.pointee.load(ordering: .acquiring)
        let produced = tail.pointee.load(ordering: .acquiring)
        return max(0, produced &- consumed)
    }
}

