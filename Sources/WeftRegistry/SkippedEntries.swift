import Synchronization

/// Registry entries a node skips because they are not valid leases: a value or key that is not
/// flanneld's, or an entry file the file registry cannot read. One count and one log line per
/// skip, for both registries, so /metrics shows that something in the registry is broken and
/// the log says which entry and why. Counted each time a listing or an event carries the entry.
public final class SkippedEntries: Sendable {
    private let skipped = Atomic<Int>(0)
    private let log: @Sendable (String) -> Void

    public init(log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.log = log
    }

    /// Skips made so far.
    public var count: Int { skipped.load(ordering: .relaxed) }

    /// Counts one skip; `message` names the entry and why.
    public func record(_ message: String) {
        skipped.add(1, ordering: .relaxed)
        log(message)
    }
}
