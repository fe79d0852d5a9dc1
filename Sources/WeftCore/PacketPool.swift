import Synchronization

/// Room between two hot atomics; 128 rather than 64 because adjacent-line prefetch pulls lines in pairs.
let cacheLinePairSize = 128

/// One preallocated region of fixed-size slots; slots are handed between threads by index.
public final class PacketPool: @unchecked Sendable {
    /// A slot's index, small enough for the index rings.
    public typealias Slot = Int32

    /// Number of slots.
    public let slotCount: Int
    /// Usable bytes per slot.
    public let slotSize: Int
    /// Distance between slots: slotSize rounded up to 64 so every slot starts on its own cache line.
    private let slotStride: Int
    private let region: UnsafeMutableRawPointer
    private let freeSlots: FreeSlotStack

    /// One allocation, 64-byte aligned; all slots free.
    public init(slotCount: Int, slotSize: Int) {
        precondition(slotCount > 0 && slotCount < Int(Int32.max), "slot count \(slotCount) is out of range")
        precondition(slotSize > 0, "slot size must be positive")
        self.slotCount = slotCount
        self.slotSize = slotSize
        slotStride = (slotSize + 63) & ~63
        region = .allocate(byteCount: slotCount * slotStride, alignment: 64)
        freeSlots = FreeSlotStack(slotCount: slotCount)
    }

    deinit {
        region.deallocate()
    }

    /// slotSize bytes of `slot`.
    @inlinable
    public func buffer(_ slot: Slot) -> UnsafeMutableRawBufferPointer {
        precondition(slot >= 0 && Int(slot) < slotCount, "slot \(slot) is outside the pool")
        return UnsafeMutableRawBufferPointer(start: slotStart(Int(slot)), count: slotSize)
    }

    @usableFromInline
    func slotStart(_ slot: Int) -> UnsafeMutableRawPointer {
        region + slot * slotStride
    }

    /// Takes a free slot without waiting; nil when all are in use.
    public func allocate() -> Slot? {
        freeSlots.pop()
    }

    /// Returns a slot taken with `allocate`.
    public func release(_ slot: Slot) {
        precondition(slot >= 0 && Int(slot) < slotCount, "slot \(slot) is outside the pool")
        freeSlots.push(slot)
    }

    /// Free slots now; approximate while other threads allocate or release.
    public var freeCount: Int { freeSlots.approximateCount }
}

/// Lock-free LIFO of free slot indices (Treiber stack with a version tag against ABA).
///
/// Not the MPMC queue: Vyukov's queue can refuse a push while a preempted thread sits mid-pop on the target cell,
/// and a refused release would lose the slot. Here each slot has its own link, so a push always succeeds. LIFO also
/// hands out the most recently used, cache-warm slot first.
final class FreeSlotStack: @unchecked Sendable {
    private static let empty: UInt32 = UInt32.max

    /// Top slot in the low 32 bits (`empty` when none), a version counter in the high 32 bits that changes on every
    /// push and pop, so a pop that read a stale link fails its compare-exchange instead of corrupting the stack.
    private let head: UnsafeMutablePointer<Atomic<UInt64>>
    /// Per slot, the slot below it; atomic because a losing pop may read a link while its owner rewrites it.
    private let links: UnsafeMutablePointer<Atomic<UInt32>>
    /// On its own cache line pair, away from `head`, because it is only a statistic.
    private let freeCounter: UnsafeMutablePointer<Atomic<Int>>
    private let lines: UnsafeMutableRawPointer
    private let slotCount: Int

    init(slotCount: Int) {
        self.slotCount = slotCount
        lines = .allocate(byteCount: 2 * cacheLinePairSize, alignment: cacheLinePairSize)
        head = lines.bindMemory(to: Atomic<UInt64>.self, capacity: 1)
        freeCounter = (lines + cacheLinePairSize).bindMemory(to: Atomic<Int>.self, capacity: 1)
        links = .allocate(capacity: slotCount)
        // Slot 0 on top, each slot linked to the next.
        for slot in 0..<slotCount {
            (links + slot).initialize(to: Atomic(slot + 1 < slotCount ? UInt32(slot + 1) : FreeSlotStack.empty))
        }
        head.initialize(to: Atomic(0))
        freeCounter.initialize(to: Atomic(slotCount))
    }

    deinit {
        links.deinitialize(count: slotCount)
        links.deallocate()
        head.deinitialize(count: 1)
        freeCounter.deinitialize(count: 1)
        lines.deallocate()
    }

    func push(_ slot: Int32) {
        var old = head.pointee.load(ordering: .relaxed)
        while true {
            links[Int(slot)].store(UInt32(truncatingIfNeeded: old), ordering: .relaxed)
            let new = (old >> 32 &+ 1) << 32 | UInt64(UInt32(slot))
            let (exchanged, seen) = head.pointee.weakCompareExchange(
                expected: old, desired: new, successOrdering: .releasing, failureOrdering: .relaxed)
            if exchanged { break }
            old = seen
        }
        freeCounter.pointee.add(1, ordering: .relaxed)
    }

    func pop() -> Int32? {
        var old = head.pointee.load(ordering: .acquiring)
        while true {
            let top = UInt32(truncatingIfNeeded: old)
            if top == FreeSlotStack.empty { return nil }
            let below = links[Int(top)].load(ordering: .relaxed)
            let new = (old >> 32 &+ 1) << 32 | UInt64(below)
            let (exchanged, seen) = head.pointee.weakCompareExchange(
                expected: old, desired: new, successOrdering: .acquiring, failureOrdering: .acquiring)
            if exchanged {
                freeCounter.pointee.subtract(1, ordering: .relaxed)
                return Int32(top)
            }
            old = seen
        }
    }

    var approximateCount: Int {
        max(0, min(slotCount, freeCounter.pointee.load(ordering: .relaxed)))
    }
}
