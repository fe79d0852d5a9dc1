import Synchronization

/// Counters of one thread: only that thread writes (relaxed atomic adds, no contention), anyone may read.
public final class CounterShard: @unchecked Sendable {
    private static let packetsBase = 0
    private static let bytesBase = packetsBase + Direction.allCases.count
    private static let dropsBase = bytesBase + Direction.allCases.count
    private static let icmpIndex = dropsBase + Direction.allCases.count * DropReason.allCases.count
    static let cellCount = icmpIndex + 1

    /// Own allocation aligned to 128 bytes so two threads' shards never share a cache line.
    private let cells: UnsafeMutablePointer<Atomic<Int>>

    init() {
        let byteCount = (CounterShard.cellCount * MemoryLayout<Atomic<Int>>.stride + 127) & ~127
        let raw = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 128)
        cells = raw.bindMemory(to: Atomic<Int>.self, capacity: CounterShard.cellCount)
        for index in 0..<CounterShard.cellCount {
            (cells + index).initialize(to: Atomic(0))
        }
    }

    deinit {
        cells.deinitialize(count: CounterShard.cellCount)
        UnsafeMutableRawPointer(cells).deallocate()
    }

    @inline(__always)
    private func add(_ amount: Int, at index: Int) {
        // A single writer makes load-then-store exact, and it avoids a locked read-modify-write per packet.
        let cell = cells + index
        cell.pointee.store(cell.pointee.load(ordering: .relaxed) &+ amount, ordering: .relaxed)
    }

    private func value(at index: Int) -> Int {
        cells[index].load(ordering: .relaxed)
    }

    /// Counts packets forwarded in `direction` and their bytes.
    public func countForwarded(_ direction: Direction, packets: Int = 1, bytes: Int) {
        add(packets, at: CounterShard.packetsBase + direction.rawValue)
        add(bytes, at: CounterShard.bytesBase + direction.rawValue)
    }

    /// Counts packets dropped in `direction` for `reason`.
    public func countDrop(_ direction: Direction, _ reason: DropReason, packets: Int = 1) {
        add(packets, at: CounterShard.dropIndex(direction, reason))
    }

    /// Counts one generated ICMP error.
    public func countICMPSent() {
        add(1, at: CounterShard.icmpIndex)
    }

    private static func dropIndex(_ direction: Direction, _ reason: DropReason) -> Int {
        dropsBase + direction.rawValue * DropReason.allCases.count + reason.rawValue
    }

    func addTo(_ snapshot: inout CounterSnapshot) {
        for direction in Direction.allCases {
            snapshot.packets[direction, default: 0] += value(at: CounterShard.packetsBase + direction.rawValue)
            snapshot.bytes[direction, default: 0] += value(at: CounterShard.bytesBase + direction.rawValue)
            for reason in DropReason.allCases {
                let count = value(at: CounterShard.dropIndex(direction, reason))
                if count != 0 {
                    snapshot.drops[direction, default: [:]][reason, default: 0] += count
                }
            }
        }
        snapshot.icmpSent += value(at: CounterShard.icmpIndex)
    }
}

/// All counter shards of a forwarder.
public final class Counters: Sendable {
    private let shards = Mutex<[CounterShard]>([])

    /// No shards yet.
    public init() {}

    /// A new shard for one thread; registering takes a lock, so call it at thread start, not per packet.
    public func makeShard() -> CounterShard {
        let shard = CounterShard()
        shards.withLock { $0.append(shard) }
        return shard
    }

    /// Sums all shards.
    public func snapshot() -> CounterSnapshot {
        let current = shards.withLock { $0 }
        var snapshot = CounterSnapshot()
        for shard in current {
            shard.addTo(&snapshot)
        }
        return snapshot
    }
}

/// Totals at one moment.
public struct CounterSnapshot: Equatable, Sendable {
    /// Forwarded packets per direction (both directions always present).
    public var packets: [Direction: Int]
    /// Forwarded bytes per direction (both directions always present).
    public var bytes: [Direction: Int]
    /// Drops per direction and reason; only non-zero entries.
    public var drops: [Direction: [DropReason: Int]]
    /// Generated ICMP errors.
    public var icmpSent: Int

    /// All zero.
    public init() {
        self.init(packets: [:], bytes: [:], drops: [:], icmpSent: 0)
    }

    /// Explicit totals; missing directions count as zero.
    public init(packets: [Direction: Int], bytes: [Direction: Int], drops: [Direction: [DropReason: Int]], icmpSent: Int) {
        self.packets = packets
        self.bytes = bytes
        for direction in Direction.allCases {
            self.packets[direction, default: 0] += 0
            self.bytes[direction, default: 0] += 0
        }
        self.drops = drops
        self.icmpSent = icmpSent
    }

    /// Drops for `reason` in both directions.
    public func drops(_ reason: DropReason) -> Int {
        drops.values.reduce(0) { $0 + ($1[reason] ?? 0) }
    }

    /// One line, e.g. "tun→udp 1200 pkts 1.5 MB, udp→tun 1190 pkts 1.4 MB, icmp 3, drops: tun→udp no-route 2, udp→tun unknown-peer 5"
    public var summaryLine: String {
        var parts: [String] = []
        for direction in Direction.allCases {
            parts.append("\(direction) \(packets[direction] ?? 0) pkts \(CounterSnapshot.formatBytes(bytes[direction] ?? 0))")
        }
        parts.append("icmp \(icmpSent)")
        var dropParts: [String] = []
        for direction in Direction.allCases {
            for reason in DropReason.allCases {
                if let count = drops[direction]?[reason], count != 0 {
                    dropParts.append("\(direction) \(reason) \(count)")
                }
            }
        }
        let dropText = dropParts.isEmpty ? "drops: none" : "drops: " + dropParts.joined(separator: ", ")
        return (parts + [dropText]).joined(separator: ", ")
    }

    /// What moved since `earlier`, `seconds` before: "tun→udp +1200 pkts (120.0/s) 1.5 MB,
    /// udp→tun +1190 pkts (119.0/s) 1.4 MB, icmp +0, drops: udp→tun unknown-peer +5"; nil when
    /// nothing did.
    public func changes(since earlier: CounterSnapshot, seconds: Double) -> String? {
        var parts: [String] = [], moved = false
        for direction in Direction.allCases {
            let packetDelta = (packets[direction] ?? 0) - (earlier.packets[direction] ?? 0)
            let byteDelta = (bytes[direction] ?? 0) - (earlier.bytes[direction] ?? 0)
            moved = moved || packetDelta != 0
            // Tenths, since a trickle (a ping every few seconds) is what a debugging operator looks for.
            let tenths = seconds > 0 ? Int((Double(packetDelta) * 10 / seconds).rounded()) : 0
            parts.append("\(direction) +\(packetDelta) pkts (\(tenths / 10).\(tenths % 10)/s) \(CounterSnapshot.formatBytes(byteDelta))")
        }
        parts.append("icmp +\(icmpSent - earlier.icmpSent)")
        moved = moved || icmpSent != earlier.icmpSent
        var dropParts: [String] = []
        for direction in Direction.allCases {
            for reason in DropReason.allCases {
                let delta = (drops[direction]?[reason] ?? 0) - (earlier.drops[direction]?[reason] ?? 0)
                if delta != 0 { dropParts.append("\(direction) \(reason) +\(delta)") }
            }
        }
        guard moved || !dropParts.isEmpty else { return nil }
        return (parts + [dropParts.isEmpty ? "drops: none" : "drops: " + dropParts.joined(separator: ", ")]).joined(separator: ", ")
    }

    /// SI units with one decimal ("1.5 MB"), written by hand because WeftCore has no Foundation.
    static func formatBytes(_ count: Int) -> String {
        let units: [(String, Int)] = [("TB", 1_000_000_000_000), ("GB", 1_000_000_000), ("MB", 1_000_000), ("kB", 1_000)]
        for (name, size) in units where count >= size {
            let tenths = (count * 10 + size / 2) / size
            return "\(tenths / 10).\(tenths % 10) \(name)"
        }
        return "\(count) B"
    }
}
