import Dispatch
import Glibc
import Synchronization

/// The one way Weft's commands handle SIGINT, SIGTERM and SIGHUP: the signals are ignored as
/// process signals and delivered through Dispatch instead, so the handler runs as ordinary code
/// on a queue (not in signal context, where almost nothing is safe) and a loop can also just
/// poll `received`. Cancelling, or releasing the watch, restores the default actions.
///
/// `@unchecked Sendable`: the sources are set once in `init`; Dispatch sources may be cancelled
/// from any thread.
public final class SignalWatch: @unchecked Sendable {
    private let sources: [any DispatchSourceSignal]
    private let numbers: [Int32]
    private let last = Atomic<Int32>(0)

    /// Watches `signals`; `handler` (optional) runs on a private serial queue for each one.
    public init(_ signals: [Int32], handler: (@Sendable (Int32) -> Void)? = nil) {
        let queue = DispatchQueue(label: "weft.signals")
        numbers = signals
        var sources: [any DispatchSourceSignal] = []
        for number in signals {
            // The default action would end the process before Dispatch sees the signal.
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            sources.append(source)
        }
        self.sources = sources
        for (number, source) in zip(signals, sources) {
            source.setEventHandler { [weak self] in
                self?.last.store(number, ordering: .releasing)
                handler?(number)
            }
            source.resume()
        }
    }

    deinit {
        cancel()
    }

    /// The last signal received, nil before any.
    public var received: Int32? {
        let number = last.load(ordering: .acquiring)
        return number == 0 ? nil : number
    }

    /// Stops watching and gives the signals their default actions back.
    public func cancel() {
        for source in sources where !source.isCancelled { source.cancel() }
        for number in numbers { signal(number, SIG_DFL) }
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
