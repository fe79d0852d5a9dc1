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

