/// Counts what arrived of a numbered stream of datagrams (sequence 0, 1, 2, …): distinct
/// datagrams received, duplicates, and datagrams reordered (arriving after a higher sequence
/// number). What never arrived is `lost(sent:)`: the gaps below the highest number seen plus
/// the tail the client sent after it.
///
/// A bitmap remembers the last `window` sequence numbers (a ring, `window` bits, allocated
/// once), so a late datagram is told apart from a duplicate. A datagram more than `window`
/// numbers behind the highest seen cannot be told apart and is counted as `stale` only (neither
/// received nor duplicate), which keeps `received` at most the number sent. `record` does no
/// allocation.
///
/// Not thread-safe: one receiving thread owns it.
public final class SequenceTracker {
    /// Distinct sequence numbers seen.
    public private(set) var received: UInt64 = 0
    /// Datagrams whose sequence number was already seen.
    public private(set) var duplicates: UInt64 = 0
    /// Datagrams (counted in `received`) that arrived after one with a higher sequence number.
    public private(set) var reordered: UInt64 = 0
    /// Datagrams more than `window` behind the highest: not counted anywhere else.
    public private(set) var stale: UInt64 = 0
    /// One past the highest sequence number seen (0 before the first).
    public private(set) var next: UInt64 = 0
    /// How many recent sequence numbers the bitmap remembers (a power of two, at least 64).
    public let window: UInt64

    private let bits: UnsafeMutablePointer<UInt64>
    private let mask: UInt64

    /// `window` is rounded up to a power of two of at least 64. The default, 2^20 numbers
    /// (128 KiB), covers far more reordering than any path produces.
    public init(window: Int = 1 << 20) {
        var size: UInt64 = 64
        while size < UInt64(max(window, 64)) { size <<= 1 }
        self.window = size
        mask = size - 1
        bits = .allocate(capacity: Int(size / 64))
        bits.initialize(repeating: 0, count: Int(size / 64))
    }

    deinit {
        bits.deallocate()
    }

    /// Sequence numbers below the highest seen that have not arrived (yet).
    public var missing: UInt64 { next - received }

    /// Of `sent` datagrams numbered 0..<sent, how many never arrived.
    public func lost(sent: UInt64) -> UInt64 {
        sent > received ? sent - received : 0
    }

    @inline(__always)
    public func record(_ sequence: UInt64) {
        if sequence >= next {
            // Positions next...sequence enter the window: clear what older numbers left there.
            let entering = sequence - next + 1
            if entering >= window {
                bits.update(repeating: 0, count: Int(window / 64))
            } else {
                clear(from: next, count: entering)
            }
            next = sequence &+ 1
            set(sequence)
            received += 1
        } else if next - sequence > window {
            stale += 1
        } else if isSet(sequence) {
            duplicates += 1
        } else {
            set(sequence)
            received += 1
            reordered += 1
        }
    }

    @inline(__always)
    private func isSet(_ sequence: UInt64) -> Bool {
        let bit = sequence & mask
        return bits[Int(bit >> 6)] & (1 << (bit & 63)) != 0
    }

    @inline(__always)
    private func set(_ sequence: UInt64) {
        let bit = sequence & mask
        bits[Int(bit >> 6)] |= 1 << (bit & 63)
    }

    /// Clears `count` (< window) consecutive positions starting at `start`'s, wrapping around.
    @inline(__always)
    private func clear(from start: UInt64, count: UInt64) {
        var position = start & mask
        var remaining = count
        while remaining > 0 {
            let offset = position & 63
            let n = min(remaining, 64 - offset)
            let ones: UInt64 = n == 64 ? ~0 : ((1 << n) - 1) << offset
            bits[Int(position >> 6)] &= ~ones
            position = (position + n) & mask
            remaining -= n
        }
    }
}
