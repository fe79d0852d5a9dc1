import Glibc
import Synchronization
import WeftCore
import WeftDataPath
import WeftLinux

/// An in-memory TUN with `TunDevice`'s semantics: `read` copies one packet into the caller's slot
/// (as much as fits, the packet's length returned) or returns nil when none is waiting (EAGAIN),
/// its readiness descriptor is polled like the real one's, `write` takes one whole packet.
///
/// Packets come from one of two sources: for tests, packets `inject`ed one by one, read in order;
/// for benchmarks, a `PacketSet` read round and round, `offer.add(n)` packets at a time, without
/// allocating. Packets written are recorded (tests) or only counted into `completion`
/// (benchmarks). A test can make reads throw and writes fail or block.
///
/// One thread reads (a lane's), any thread may write.
public final class FakeTunnel: PacketTunnel, @unchecked Sendable {
    public let vnetHeaderSize: Int
    public let acceptsUDPSuperPackets: Bool
    /// Readable while packets are waiting.
    public let offer: Offer
    private let repeating: PacketSet?
    private let completion: Completion?
    private let recordsWrites: Bool
    private let writeGate = Gate()
    private let state = Mutex(State())

    /// What a write does.
    public enum WriteOutcome: Sendable {
        /// Taken (and recorded).
        case accept
        /// The device would block: `write` returns false, as the real TUN on EAGAIN.
        case wouldBlock
        /// The device is gone: `write` throws this errno.
        case fail(Int32)
    }

    private struct State {
        var injected: [[UInt8]] = []
        var nextInjected = 0
        var written: [[UInt8]] = []
        var readError: Int32?
        var writeOutcome = WriteOutcome.accept
    }

    /// Reader-thread state for the repeating source.
    private var available = 0
    private var next = 0

    /// A TUN for tests: reads return what `inject` queued, writes are recorded.
    /// `vnetHeaderSize` 10 is a TUN with offloads (IFF_VNET_HDR): every packet read or written
    /// starts with a virtio-net header.
    /// `acceptsUDPSuperPackets` is a kernel that takes UDP super-packets (Linux 6.2+).
    public init(vnetHeaderSize: Int = 0, acceptsUDPSuperPackets: Bool = false) throws {
        self.vnetHeaderSize = vnetHeaderSize
        self.acceptsUDPSuperPackets = acceptsUDPSuperPackets
        repeating = nil
        completion = nil
        recordsWrites = true
        offer = try Offer()
    }

    /// A TUN for benchmarks: reads cycle through `packets`, `offer.add(n)` at a time; writes
    /// are counted into `completion`, not recorded.
    public init(repeating packets: PacketSet?, vnetHeaderSize: Int = 0, completion: Completion) throws {
        self.vnetHeaderSize = vnetHeaderSize
        acceptsUDPSuperPackets = false
        repeating = packets
        self.completion = completion
        recordsWrites = false
        offer = try Offer()
    }

    // MARK: test controls

    /// Queues packets for the sender that reads this TUN, in order (with a virtio header first when
    /// `vnetHeaderSize` is not 0).
    public func inject(_ packets: [[UInt8]]) {
        precondition(repeating == nil, "this fake TUN reads a packet set")
        state.withLock { $0.injected += packets }
        offer.readiness.signal()
    }

    /// Every packet written so far, in order.
    public var written: [[UInt8]] { state.withLock { $0.written } }

    /// Waits until at least `count` packets were written; returns them all (fewer on timeout).
    public func waitForWritten(_ count: Int, timeout: Duration = .seconds(5)) -> [[UInt8]] {
        _ = waitUntil(timeout: timeout) { state.withLock { $0.written.count } >= count }
        return written
    }

    /// Injected packets the reader has not taken yet.
    public var unread: Int { state.withLock { $0.injected.count - $0.nextInjected } }

    /// From now on every read throws `errno` (the device disappeared).
    public func failReads(errno: Int32) {
        state.withLock { $0.readError = errno }
        offer.readiness.signal()
    }

    public func setWriteOutcome(_ outcome: WriteOutcome) {
        state.withLock { $0.writeOutcome = outcome }
    }

    /// Writes block until `resumeWrites` (a TUN whose queue the kernel does not drain).
    public func holdWrites() { writeGate.close() }
    public func resumeWrites() { writeGate.open() }

    // MARK: PacketTunnel

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        if let repeating {
            if available == 0 {
                available = offer.takeAll()
                if available == 0 { return nil }
            }
            available -= 1
            let packet = repeating.packet(next)
            next = next + 1 == repeating.count ? 0 : next + 1
            return Self.copy(packet, into: buffer)
        }
        let packet: [UInt8]? = try state.withLock { state in
            if let errno = state.readError { throw SystemError(errno: errno, operation: "read fake TUN") }
            guard state.nextInjected < state.injected.count else { return nil }
            defer { state.nextInjected += 1 }
            return state.injected[state.nextInjected]
        }
        guard let packet else { return nil }
        return packet.withUnsafeBytes { Self.copy($0, into: buffer) }
    }

    public func write(_ packet: UnsafeRawBufferPointer) throws -> Bool {
        try accept { Array(packet) }
    }

    public func write(vectors: UnsafeBufferPointer<iovec>) throws -> Bool {
        try accept { gather(vectors) }
    }

    public var readinessDescriptor: Int32 { offer.readiness.fileDescriptor }

    public func readinessObserved() { offer.clear() }

    private func accept(_ bytes: () -> [UInt8]) throws -> Bool {
        writeGate.pass()
        guard recordsWrites else {
            completion?.add(1)
            return true
        }
        let packet = bytes()
        return try state.withLock { state in
            switch state.writeOutcome {
            case .accept:
                state.written.append(packet)
                return true
            case .wouldBlock:
                return false
            case .fail(let errno):
                throw SystemError(errno: errno, operation: "write fake TUN")
            }
        }
    }

    /// As the kernel does: as much as fits, the packet's length returned.
    private static func copy(_ packet: UnsafeRawBufferPointer, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let count = min(packet.count, buffer.count)
        if count > 0 { buffer.baseAddress!.copyMemory(from: packet.baseAddress!, byteCount: count) }
        return packet.count
    }
}

/// The bytes a scatter/gather list points at, in order.
func gather(_ vectors: UnsafeBufferPointer<iovec>) -> [UInt8] {
    var bytes: [UInt8] = []
    for vector in vectors where vector.iov_len > 0 {
        bytes += UnsafeRawBufferPointer(start: vector.iov_base, count: vector.iov_len)
    }
    return bytes
}
