import Glibc
import Synchronization
import WeftCore
import WeftDataPath
import WeftLinux

/// One datagram for the fake socket to receive: its bytes and outer source, and for a UDP_GRO
/// run the size of each datagram in it.
public struct InjectedDatagram: Sendable {
    public var bytes: [UInt8]
    public var sender: IPv4Address
    public var port: UInt16
    public var segmentSize: Int?

    public init(_ bytes: [UInt8], from sender: IPv4Address, port: UInt16 = 8285, segmentSize: Int? = nil) {
        self.bytes = bytes
        self.sender = sender
        self.port = port
        self.segmentSize = segmentSize
    }
}

/// One send entry as sendmmsg would have sent it: its gathered bytes, destination and, for a
/// UDP_SEGMENT send, the segment size.
public struct SentDatagram: Equatable, Sendable {
    public var bytes: [UInt8]
    public var destination: IPv4Address
    public var port: UInt16
    public var segmentSize: Int?

    /// The datagrams on the wire: the bytes cut at `segmentSize`, as the kernel's GSO does.
    public var datagrams: [[UInt8]] {
        guard let segmentSize, segmentSize > 0 else { return [bytes] }
        return stride(from: 0, to: bytes.count, by: segmentSize).map {
            Array(bytes[$0..<min(bytes.count, $0 + segmentSize)])
        }
    }
}

/// An in-memory UDP socket with `UDPSocket`'s batch semantics: `receiveAvailable` fills as many
/// entries as datagrams are waiting, up to `maxCount`, copying each datagram into the entry's
/// slot and recording its length, sender and GRO segment size (recvmmsg with MSG_DONTWAIT), and
/// its readiness descriptor is polled like the real one's; `send` takes a batch (sendmmsg);
/// after `shutdown` `receiveAvailable` returns 0.
///
/// Like `FakeTunnel`, datagrams come from `inject` (tests) or round and round from a
/// `PacketSet` (benchmarks), and sends are recorded (tests) or counted (benchmarks). A test can
/// refuse UDP_SEGMENT sends as a NIC without checksum offload does (EIO), make the socket fail,
/// or hold sends so the queues in front of them fill.
///
/// One thread receives, any number send.
public final class FakeTransport: DatagramTransport, @unchecked Sendable {
    /// Readable while datagrams are waiting.
    public let offer: Offer
    private let repeating: PacketSet?
    /// The outer source of repeating datagram i.
    private let senders: [IPv4Address]
    private let port: UInt16
    private let completion: Completion?
    private let isShutDown = Atomic<Bool>(false)
    private let gsoFailed = Atomic<Bool>(false)
    private let sendGate = Gate()
    private let state = Mutex(State())
    /// Receiver-thread state for the repeating source.
    private var available = 0
    private var next = 0

    /// What a send does with each entry.
    public enum SendOutcome: Sendable {
        /// Every entry is sent (and recorded).
        case accept
        /// Entries with a UDP_SEGMENT size fail, and `segmentationOffloadFailed` turns true: a
        /// device that cannot checksum for GSO (EIO). Plain entries are sent.
        case refuseSegmentation
        /// Every entry fails (e.g. no route to the peer); the socket stays usable.
        case failEntries
        /// The socket is unusable: `send` throws this errno.
        case fail(Int32)
    }

    private struct State {
        var injected: [InjectedDatagram] = []
        var nextInjected = 0
        var sent: [SentDatagram] = []
        var sendCalls = 0
        var receiveError: Int32?
        var sendOutcome = SendOutcome.accept
    }

    /// A socket for tests: receives what `inject` queued, records what is sent.
    public init() throws {
        repeating = nil
        senders = []
        port = 0
        completion = nil
        offer = try Offer()
    }

    /// A socket for benchmarks: receives `datagrams` round and round, `offer.add(n)` at a time,
    /// datagram i from `senders[i]`:`port`; send entries are counted into `completion`.
    public init(repeating datagrams: PacketSet?, senders: [IPv4Address], port: UInt16, completion: Completion) throws {
        precondition(datagrams == nil || datagrams!.count == senders.count)
        repeating = datagrams
        self.senders = senders
        self.port = port
        self.completion = completion
        offer = try Offer()
    }

    // MARK: test controls

    /// Queues datagrams for the receiver, in order.
    public func inject(_ datagrams: [InjectedDatagram]) {
        precondition(repeating == nil, "this fake socket receives a packet set")
        state.withLock { $0.injected += datagrams }
        offer.readiness.signal()
    }

    /// Every entry sent so far, in order.
    public var sent: [SentDatagram] { state.withLock { $0.sent } }

    /// Every datagram on the wire so far: entries cut at their segment size.
    public var sentDatagrams: [SentDatagram] {
        sent.flatMap { entry in
            entry.datagrams.map { SentDatagram(bytes: $0, destination: entry.destination, port: entry.port, segmentSize: nil) }
        }
    }

    /// sendmmsg calls so far.
    public var sendCalls: Int { state.withLock { $0.sendCalls } }

    /// Waits until at least `count` datagrams are on the wire; returns them (fewer on timeout).
    public func waitForSentDatagrams(_ count: Int, timeout: Duration = .seconds(5)) -> [SentDatagram] {
        _ = waitUntil(timeout: timeout) { sentDatagrams.count >= count }
        return sentDatagrams
    }

    /// Injected datagrams the receiver has not taken yet.
    public var unreceived: Int { state.withLock { $0.injected.count - $0.nextInjected } }

    public func setSendOutcome(_ outcome: SendOutcome) {
        state.withLock { $0.sendOutcome = outcome }
    }

    /// From now on every receive throws `errno`.
    public func failReceives(errno: Int32) {
        state.withLock { $0.receiveError = errno }
        offer.readiness.signal()
    }

    /// Sends block until `resumeSends` (a socket whose send buffer is full).
    public func holdSends() { sendGate.close() }
    public func resumeSends() { sendGate.open() }

    // MARK: DatagramTransport

    public var segmentationOffloadFailed: Bool { gsoFailed.load(ordering: .acquiring) }

    public var readinessDescriptor: Int32 { offer.readiness.fileDescriptor }

    public func readinessObserved() { offer.clear() }

    public func receiveAvailable(into batch: DatagramBatch, maxCount: Int) throws -> Int {
        let limit = min(maxCount, batch.capacity)
        guard !isShutDown.load(ordering: .acquiring) else {
            batch.count = 0
            return 0
        }
        let count = try repeating == nil ? receiveInjected(into: batch, limit: limit) : receiveRepeating(into: batch, limit: limit)
        batch.count = count
        return count
    }

    private func receiveRepeating(into batch: DatagramBatch, limit: Int) -> Int {
        guard let repeating else { return 0 }
        if available == 0 { available = offer.takeAll() }
        let count = min(available, limit)
        for entry in 0..<count {
            Self.copy(repeating.packet(next), into: batch, entry: entry, from: senders[next], port: port, segmentSize: nil)
            next = next + 1 == repeating.count ? 0 : next + 1
        }
        available -= count
        return count
    }

    private func receiveInjected(into batch: DatagramBatch, limit: Int) throws -> Int {
        try state.withLock { state in
            if let errno = state.receiveError { throw SystemError(errno: errno, operation: "recvmmsg fake socket") }
            let count = min(limit, state.injected.count - state.nextInjected)
            for entry in 0..<count {
                let datagram = state.injected[state.nextInjected + entry]
                datagram.bytes.withUnsafeBytes {
                    Self.copy($0, into: batch, entry: entry, from: datagram.sender, port: datagram.port, segmentSize: datagram.segmentSize)
                }
            }
            state.nextInjected += count
            return count
        }
    }

    private static func copy(_ datagram: UnsafeRawBufferPointer, into batch: DatagramBatch, entry: Int,
                             from sender: IPv4Address, port: UInt16, segmentSize: Int?) {
        let buffer = batch.receiveBuffer(entry)
        let count = min(datagram.count, buffer.count)
        if count > 0 { buffer.baseAddress!.copyMemory(from: datagram.baseAddress!, byteCount: count) }
        batch.setReceived(entry, length: datagram.count, from: sender, port: port, segmentSize: segmentSize)
    }

    public func send(_ batch: DatagramBatch, count: Int) throws -> (sent: Int, failed: Int) {
        sendGate.pass()
        if let completion {
            completion.add(count)
            return (count, 0)
        }
        var entries: [SentDatagram] = []
        for i in 0..<count {
            let destination = batch.sender(i)
            entries.append(SentDatagram(bytes: gather(batch.sendVectors(i)), destination: destination.address,
                                        port: destination.port, segmentSize: batch.sendSegmentSize(i)))
        }
        return try state.withLock { state in
            state.sendCalls += 1
            switch state.sendOutcome {
            case .accept:
                state.sent += entries
                return (count, 0)
            case .refuseSegmentation:
                let plain = entries.filter { $0.segmentSize == nil }
                if plain.count < entries.count { gsoFailed.store(true, ordering: .releasing) }
                state.sent += plain
                return (plain.count, entries.count - plain.count)
            case .failEntries:
                return (0, count)
            case .fail(let errno):
                throw SystemError(errno: errno, operation: "sendmmsg fake socket")
            }
        }
    }

    /// Whether `shutdown()` was called: a test can wait for a stop to have begun.
    public var wasShutDown: Bool { isShutDown.load(ordering: .acquiring) }

    public func shutdown() {
        isShutDown.store(true, ordering: .releasing)
    }
}
