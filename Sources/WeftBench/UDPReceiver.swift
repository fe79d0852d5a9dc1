import Dispatch
import Glibc
import Synchronization
import WeftCore
import WeftLinux

/// The server's UDP side of one test, on its own thread: recvmmsg batches into a
/// `DatagramSink`, echo replies sent back with sendmmsg from the same buffers. Buffers and
/// batches are allocated once per test; the loop itself allocates nothing.
///
/// The control thread calls `finish(expecting:)` when the client says it is done (the thread
/// then drains what is still queued) or `stop()` to abandon the test; both wait for the thread
/// with a bound.
///
/// In a rate test the thread naps for `nap` after each batch that emptied the socket's queue,
/// instead of going straight back to sleep in poll(2): a waiting reader costs the *sender's*
/// CPU a wake-up for every datagram (on the 2-vCPU lab VM that halved the rate the sender could
/// push), while a reader that is not waiting costs it nothing. The 4 MiB receive buffer holds
/// thousands of datagrams, far more than arrive in a millisecond. Echo (latency) tests never
/// nap: they answer at once.
final class UDPReceiver: @unchecked Sendable {
    static let batchCapacity = 256
    static let napMicroseconds: UInt32 = 1000
    /// Larger than any bench datagram (1472), so a foreign jumbo datagram is merely truncated.
    static let bufferSize = 2048
    /// After `finish`: stop when no datagram of the test came for this long…
    static let drainIdleNanoseconds: UInt64 = 200_000_000
    /// …or at the latest after this long.
    static let drainLimitNanoseconds: UInt64 = 2_000_000_000

    let sink: DatagramSink
    private let socket: UDPSocket
    private let wakeup: EventFD
    private let stopping = Atomic<Bool>(false)
    private let finishing = Atomic<Bool>(false)
    private let expected = Atomic<UInt64>(0)
    private let group = DispatchGroup()
    /// Set by the thread when the socket failed; read after it ended.
    private(set) var failure: SystemError?

    private let napsWhenDrained: Bool

    init(socket: UDPSocket, test: UInt32, napsWhenDrained: Bool) throws(BenchError) {
        self.socket = socket
        self.napsWhenDrained = napsWhenDrained
        sink = DatagramSink(test: test)
        do { wakeup = try EventFD() } catch { throw BenchError("cannot create an eventfd: \(error)") }
    }

    func start() {
        DispatchQueue(label: "weft.bench.udp").async(group: group) { self.run() }
    }

    /// The client sent `sent` rate datagrams: take what is still queued (until all arrived, or
    /// none came for 200 ms, or 2 s passed), then end the thread.
    func finish(expecting sent: UInt64) {
        expected.store(sent, ordering: .relaxed)
        finishing.store(true, ordering: .releasing)
        wakeup.signal()
        _ = group.wait(timeout: .now() + .seconds(5))
        wakeup.close()
    }

    /// Ends the thread now.
    func stop() {
        stopping.store(true, ordering: .releasing)
        wakeup.signal()
        _ = group.wait(timeout: .now() + .seconds(5))
        wakeup.close()
    }

    private func run() {
        let capacity = Self.batchCapacity
        let storage = UnsafeMutableRawPointer.allocate(byteCount: capacity * Self.bufferSize, alignment: 64)
        defer { storage.deallocate() }
        let receiveBatch = DatagramBatch(capacity: capacity)
        let echoBatch = DatagramBatch(capacity: capacity)
        for i in 0..<capacity {
            receiveBatch.setReceiveBuffer(i, UnsafeMutableRawBufferPointer(start: storage + i * Self.bufferSize, count: Self.bufferSize))
        }
        var drainStarted: UInt64 = 0
        do {
            while !stopping.load(ordering: .acquiring) {
                let draining = finishing.load(ordering: .acquiring)
                if draining {
                    let now = MonotonicClock.nanoseconds()
                    if drainStarted == 0 { drainStarted = now }
                    if sink.tracker.received >= expected.load(ordering: .relaxed)
                        || now - drainStarted > Self.drainLimitNanoseconds
                        || now - max(sink.lastArrival, drainStarted) > Self.drainIdleNanoseconds {
                        break
                    }
                }
                switch try Poll.waitReadable(socket.fileDescriptor, orWakeup: wakeup, timeoutMilliseconds: draining ? 20 : 200) {
                case .wakeup:
                    wakeup.drain()
                    continue
                case .timeout:
                    continue
                case .readable:
                    break
                }
                let count = try socket.receive(into: receiveBatch, maxCount: capacity)
                let now = MonotonicClock.nanoseconds()
                var echoes = 0
                for i in 0..<count where !receiveBatch.isTruncated(i) {
                    let bytes = UnsafeMutableRawBufferPointer(start: storage + i * Self.bufferSize, count: receiveBatch.length(i))
                    if sink.consume(bytes, now: now) == .echo {
                        let sender = receiveBatch.sender(i)
                        echoBatch.setSend(echoes, UnsafeRawBufferPointer(bytes), to: sender.address, port: sender.port)
                        echoes += 1
                    }
                }
                if echoes > 0 {
                    _ = try socket.send(echoBatch, count: echoes)
                }
                if napsWhenDrained && count < capacity {
                    usleep(Self.napMicroseconds)
                }
            }
        } catch {
            failure = error
        }
    }
}
