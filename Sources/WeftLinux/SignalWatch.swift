import Dispatch
import Glibc
import Synchronization

/// The one way Weft's commands handle SIGINT, SIGTERM, SIGHUP (and any other catchable signal):
/// a process-wide C handler only records the signal and rings an eventfd, and every watch of
/// that signal sees it as ordinary code on a Dispatch queue (not in signal context, where almost
/// nothing is safe). A loop can also just poll `received`.
///
/// The handler is installed with sigaction before `init` returns, so a signal sent right after
/// it is never lost (Dispatch's own signal sources install theirs asynchronously, and until then
/// the signal is ignored), and a signal raised by the process itself is seen too. Cancelling, or
/// releasing the watch, gives a signal its default action back once no other watch wants it.
///
/// `@unchecked Sendable`: `numbers` and `handler` are set once in `init`; `last` is atomic.
public final class SignalWatch: @unchecked Sendable {
    private let numbers: [Int32]
    private let handler: (@Sendable (Int32) -> Void)?
    private let last = Atomic<Int32>(0)
    private let cancelled = Atomic<Bool>(false)

    /// Watches `signals` (each in 1...63); `handler` (optional) runs on one serial queue shared
    /// by all watches, once per arrival (arrivals between two runs of the queue may merge).
    public init(_ signals: [Int32], handler: (@Sendable (Int32) -> Void)? = nil) throws(SystemError) {
        precondition(signals.allSatisfy { (1..<64).contains($0) }, "signal numbers are 1...63")
        numbers = signals
        self.handler = handler
        try SignalHub.shared().add(self)
    }

    deinit {
        cancel()
    }

    /// The last signal received, nil before any.
    public var received: Int32? {
        let number = last.load(ordering: .acquiring)
        return number == 0 ? nil : number
    }

    /// Stops watching; a signal no other watch wants gets its default action back. Idempotent.
    public func cancel() {
        if cancelled.exchange(true, ordering: .acquiringAndReleasing) { return }
        try? SignalHub.shared().remove(self)
    }

    fileprivate var watched: [Int32] { numbers }

    fileprivate func deliver(_ number: Int32) {
        guard numbers.contains(number), !cancelled.load(ordering: .acquiring) else { return }
        last.store(number, ordering: .releasing)
        handler?(number)
    }

    /// "SIGINT", "SIGTERM", "SIGHUP" or "signal N".
    public static func name(_ number: Int32) -> String {
        switch number {
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        case SIGHUP: "SIGHUP"
        default: "signal \(number)"
        }
    }
}

// What the C handler may touch: lock-free atomics and a descriptor (write(2) is
// async-signal-safe). Both are initialised before the first handler is installed.
private let arrivedSignals = Atomic<UInt64>(0)
private let bellDescriptor = Atomic<Int32>(-1)

private func recordSignal(_ number: Int32) {
    let savedErrno = errno
    arrivedSignals.bitwiseOr(UInt64(1) << UInt64(number), ordering: .releasing)
    var one: UInt64 = 1
    _ = write(bellDescriptor.load(ordering: .acquiring), &one, 8)
    errno = savedErrno
}

/// Owns the process-wide part: the eventfd the handler rings, the Dispatch source that reads
/// it, and which watches want which signal.
private final class SignalHub: @unchecked Sendable {
    private static let instance = Mutex<SignalHub?>(nil)

    static func shared() throws(SystemError) -> SignalHub {
        try instance.withLock { (hub: inout SignalHub?) throws(SystemError) -> SignalHub in
            if let hub { return hub }
            let made = try SignalHub()
            hub = made
            return made
        }
    }

    private let bell: EventFD
    private let source: any DispatchSourceRead
    private let queue = DispatchQueue(label: "weft.signals")
    private struct WeakWatch { weak var watch: SignalWatch? }
    private let watches = Mutex<[ObjectIdentifier: WeakWatch]>([:])

    private init() throws(SystemError) {
        bell = try EventFD()
        bellDescriptor.store(bell.fileDescriptor, ordering: .releasing)
        source = DispatchSource.makeReadSource(fileDescriptor: bell.fileDescriptor, queue: queue)
        source.setEventHandler { [self] in dispatchArrivals() }
        source.resume()
    }

    // The dispositions are set under the lock, so a remove that gives a signal its default
    // action back cannot overtake an add that wants it on another thread.
    func add(_ watch: SignalWatch) {
        watches.withLock { all in
            all[ObjectIdentifier(watch)] = WeakWatch(watch: watch)
            for number in watch.watched { signal(number) { recordSignal($0) } }
        }
        var handled = sigset_t()
        sigemptyset(&handled)
        for number in watch.watched { sigaddset(&handled, number) }
        // A parent may have started us with these blocked (a test runner's Process does): they
        // would then never arrive.
        sigprocmask(SIG_UNBLOCK, &handled, nil)
    }

    func remove(_ watch: SignalWatch) {
        watches.withLock { all in
            all[ObjectIdentifier(watch)] = nil
            let stillWanted = Set(all.values.compactMap(\.watch).flatMap(\.watched))
            for number in watch.watched where !stillWanted.contains(number) { signal(number, SIG_DFL) }
        }
    }

    private func dispatchArrivals() {
        bell.drain()
        let arrived = arrivedSignals.exchange(0, ordering: .acquiring)
        guard arrived != 0 else { return }
        let current = watches.withLock { $0.values.compactMap(\.watch) }
        for number in Int32(1)..<64 where arrived & (UInt64(1) << UInt64(number)) != 0 {
            for watch in current { watch.deliver(number) }
        }
    }
}
