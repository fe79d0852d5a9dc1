/// What the server does with each UDP datagram during one test: counts rate datagrams of this
/// test in its `SequenceTracker`, drops warm-up datagrams uncounted, turns echo requests into
/// replies in place, and ignores everything else (other tests' leftovers, foreign traffic).
/// No system calls, no allocation per datagram: the receive loop feeds it and the tests call
/// it directly.
public final class DatagramSink {
    public enum Action: Equatable, Sendable {
        case none
        /// Send the (modified) buffer back to its sender.
        case echo
    }

    public let test: UInt32
    public let tracker: SequenceTracker
    /// Warm-up datagrams of this test.
    public private(set) var warmUp: UInt64 = 0
    /// Echo requests of this test turned into replies.
    public private(set) var echoed: UInt64 = 0
    /// Datagrams of another test, or not bench datagrams at all.
    public private(set) var ignored: UInt64 = 0
    /// When the last datagram of this test arrived (CLOCK_MONOTONIC ns), 0 before any.
    public private(set) var lastArrival: UInt64 = 0

    public init(test: UInt32, window: Int = 1 << 20) {
        self.test = test
        tracker = SequenceTracker(window: window)
    }

    @inline(__always)
    public func consume(_ bytes: UnsafeMutableRawBufferPointer, now: UInt64 = 0) -> Action {
        guard let header = BenchDatagram.parse(UnsafeRawBufferPointer(bytes)), header.test == test else {
            ignored += 1
            return .none
        }
        lastArrival = now
        switch header.kind {
        case .rate:
            tracker.record(header.sequence)
            return .none
        case .rateWarmUp:
            warmUp += 1
            return .none
        case .echoRequest:
            BenchDatagram.setKind(.echoReply, at: bytes.baseAddress!)
            echoed += 1
            return .echo
        case .echoReply:
            ignored += 1
            return .none
        }
    }
}
