import Glibc
import Synchronization
import Testing
import WeftDataPathTesting
import WeftCore

@Suite struct PacketPoolTests {
    @Test func allocatesEverySlotOnceThenRunsOut() {
        let pool = PacketPool(slotCount: 100, slotSize: 1500)
        #expect(pool.freeCount == 100)
        var slots: [PacketPool.Slot] = []
        while let slot = pool.allocate() { slots.append(slot) }
        #expect(slots.count == 100)
        #expect(Set(slots).count == 100)
        #expect(pool.allocate() == nil)
        #expect(pool.freeCount == 0)
        pool.release(slots[42])
        #expect(pool.freeCount == 1)
        #expect(pool.allocate() == slots[42])
        #expect(pool.allocate() == nil)
        for slot in slots { pool.release(slot) }
        #expect(pool.freeCount == 100)
    }

    @Test func buffersAreAlignedAndDisjoint() {
        let pool = PacketPool(slotCount: 16, slotSize: 1500)
        var ranges: [(Int, Int)] = []
        for slot in 0..<PacketPool.Slot(16) {
            let buffer = pool.buffer(slot)
            #expect(buffer.count == 1500)
            let start = Int(bitPattern: buffer.baseAddress!)
            #expect(start % 64 == 0)
            ranges.append((start, start + buffer.count))
            buffer.initializeMemory(as: UInt8.self, repeating: UInt8(slot))
        }
        ranges.sort { $0.0 < $1.0 }
        for index in 1..<ranges.count { #expect(ranges[index - 1].1 <= ranges[index].0) }
        for slot in 0..<PacketPool.Slot(16) {
            #expect(pool.buffer(slot).allSatisfy { $0 == UInt8(slot) })
        }
    }

    @Test func concurrentAllocateAndReleaseNeverShareASlot() {
        let slotCount = 64
        let pool = PacketPool(slotCount: slotCount, slotSize: 64)
        let owned = SharedFlags(count: slotCount)
        let errors = SharedInt()
        runOnThreads(4) { thread in
            var generator = SplitMix64(seed: UInt64(thread))
            var held: [PacketPool.Slot] = []
            held.reserveCapacity(slotCount)
            for _ in 0..<100_000 {
                if held.isEmpty || (held.count < 24 && Bool.random(using: &generator)) {
                    guard let slot = pool.allocate() else { continue }
                    if owned.set(Int(slot)) { errors.add(1) }
                    pool.buffer(slot).storeBytes(of: Int32(thread), as: Int32.self)
                    held.append(slot)
                } else {
                    let slot = held.removeLast()
                    if pool.buffer(slot).load(as: Int32.self) != Int32(thread) { errors.add(1) }
                    if !owned.clear(Int(slot)) { errors.add(1) }
                    pool.release(slot)
                }
            }
            for slot in held {
                if !owned.clear(Int(slot)) { errors.add(1) }
                pool.release(slot)
            }
        }
        #expect(errors.value == 0)
        #expect(pool.freeCount == slotCount)
    }
}
