import Testing
import WeftDataPathTesting
import WeftCore
@testable import WeftBench

@Suite struct SequenceTrackerTests {
    private func tracker(_ sequences: [UInt64], window: Int = 1 << 20) -> SequenceTracker {
        let tracker = SequenceTracker(window: window)
        sequences.forEach(tracker.record)
        return tracker
    }

    @Test func inOrderStreamLosesNothing() {
        let t = tracker(Array(0..<1000))
        #expect(t.received == 1000 && t.duplicates == 0 && t.reordered == 0 && t.stale == 0)
        #expect(t.next == 1000 && t.missing == 0 && t.lost(sent: 1000) == 0)
    }

    @Test func gapsAreLostUnlessTheyArriveLater() {
        let t = tracker([0, 1, 4, 5, 9])
        #expect(t.received == 5 && t.missing == 5)          // 2, 3, 6, 7, 8
        #expect(t.lost(sent: 10) == 5)
        #expect(t.lost(sent: 12) == 7)                      // 10 and 11 never came either
        t.record(3)
        t.record(7)
        #expect(t.received == 7 && t.reordered == 2 && t.duplicates == 0)
        #expect(t.lost(sent: 10) == 3)
    }

    @Test func firstDatagramsMissingCountAsLost() {
        let t = tracker([3, 4])
        #expect(t.received == 2 && t.missing == 3 && t.lost(sent: 5) == 3 && t.reordered == 0)
    }

    @Test func reorderedDatagramsCountOnceEach() {
        let t = tracker([0, 2, 1, 5, 4, 3, 6])
        #expect(t.received == 7 && t.reordered == 3 && t.duplicates == 0 && t.lost(sent: 7) == 0)
    }

    @Test func duplicatesAreNotReceivedTwice() {
        let t = tracker([0, 1, 1, 2, 0, 2, 2])
        #expect(t.received == 3 && t.duplicates == 4 && t.reordered == 0 && t.lost(sent: 3) == 0)
    }

    @Test func aLateArrivalAndItsDuplicate() {
        let t = tracker([0, 2, 1, 1])
        #expect(t.received == 3 && t.reordered == 1 && t.duplicates == 1)
    }

    @Test func receivedNeverExceedsSent() {
        let t = tracker([0, 0, 0, 1, 1, 2])
        #expect(t.received <= 3 && t.lost(sent: 3) == 0 && t.lost(sent: 2) == 0)
    }

    /// The bitmap is a ring of `window` bits: after the numbers go round it several times, an old
    /// position must not look "seen" for the new number that maps onto it.
    @Test func windowWrapsWithoutFalseDuplicates() {
        let t = SequenceTracker(window: 64)
        #expect(t.window == 64)
        for s in UInt64(0)..<200 where s % 3 != 0 { t.record(s) }   // every third one missing
        let missingBefore = t.missing
        #expect(t.received == 133 && missingBefore == 67)
        t.record(197)    // seen already: a duplicate
        t.record(195)    // 195 % 3 == 0: never seen, still inside the window (200 - 195 <= 64): reordered
        #expect(t.duplicates == 1 && t.reordered == 1 && t.missing == missingBefore - 1)
        // Far behind the window: cannot be placed, counted as stale only.
        t.record(3)
        #expect(t.stale == 1 && t.received == 134)
        // A jump larger than the window clears it: nothing below is taken as seen.
        t.record(10_000)
        t.record(9_990)
        #expect(t.reordered == 2 && t.duplicates == 1)
        t.record(9_990)
        #expect(t.duplicates == 2)
    }

    @Test func windowRoundsUpToAPowerOfTwo() {
        #expect(SequenceTracker(window: 100).window == 128)
        #expect(SequenceTracker(window: 1).window == 64)
        #expect(SequenceTracker().window == 1 << 20)
    }

    /// Brute force: random arrivals with loss, reordering and duplication, against a set.
    @Test func matchesABruteForceModel() {
        var generator = SplitMix64(seed: 42)
        for round in 0..<20 {
            let sent = UInt64(500 + round * 37)
            var arrivals: [UInt64] = []
            for s in 0..<sent {
                let roll = generator.next() % 100
                if roll < 10 { continue }                              // lost
                arrivals.append(s)
                if roll > 95 { arrivals.append(s) }                    // duplicated
            }
            for i in arrivals.indices where generator.next() % 10 == 0 {   // local reordering
                let j = min(arrivals.count - 1, i + Int(generator.next() % 8))
                arrivals.swapAt(i, j)
            }
            let t = SequenceTracker(window: 256)
            var seen = Set<UInt64>()
            var highest: UInt64?
            var duplicates: UInt64 = 0
            var reordered: UInt64 = 0
            for s in arrivals {
                t.record(s)
                if seen.contains(s) { duplicates += 1; continue }
                if let h = highest, s < h { reordered += 1 }
                seen.insert(s)
                highest = max(highest ?? s, s)
            }
            #expect(t.received == UInt64(seen.count))
            #expect(t.duplicates == duplicates)
            #expect(t.reordered == reordered)
            #expect(t.lost(sent: sent) == sent - UInt64(seen.count))
            #expect(t.stale == 0)
        }
    }
}

