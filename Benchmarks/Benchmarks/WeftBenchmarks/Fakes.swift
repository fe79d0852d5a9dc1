import Dispatch
import Glibc
import Synchronization
import WeftCore
import WeftDataPath
import WeftLinux

/// Counts packets that left the data path (sent to the fake socket or written to the fake TUN)
/// and signals the benchmark thread each time another `burst` of them has come out.
final class Completion: @unchecked Sendable {
    private let done = Atomic<Int>(0)
    private let burst: Int
    private let semaphore = DispatchSemaphore(value: 0)

    init(burst: Int) {
        self.burst = burst
    }

    /// Called by data-path threads: `count` more packets came out.
    @inline(__always)
    func add(_ count: Int) {
        let now = done.add(count, ordering: .acquiringAndReleasing).newValue
        for _ in 0..<(now / burst - (now - count) / burst) { semaphore.signal() }
    }

    /// Blocks until one more burst has come out; false after `seconds` without it (a packet was
    /// dropped or lost: the benchmark must stop rather than hang).
    func wait(seconds: Int = 10) -> Bool {
        semaphore.wait(timeout: .now() + .seconds(seconds)) == .success
    }

    var count: Int { done.load(ordering: .acquiring) }
}

/// Makes a descriptor readable while packets are on offer, so a data-path thread can block in
/// poll(2) on it exactly as it does on a TUN or a socket.
final class Offer: @unchecked Sendable {
    private let pending = Atomic<Int>(0)
    let readiness: EventFD

    init() throws {
        readiness = try EventFD()
    }

    /// Benchmark thread: `count` more packets are waiting.
    func add(_ count: Int) {
        pending.add(count, ordering: .releasing)
        readiness.signal()
    }

    /// Data-path thread: takes every packet on offer now.
    @inline(__always)
    func takeAll() -> Int {
        pending.exchange(0, ordering: .acquiring)
    }

    /// Data-path thread, before sleeping: clears readiness. A later `add` signals again, and
    /// one between this and the next `takeAll` is seen by that `takeAll`.
    func clear() {
        readiness.drain()
    }
}

/// An in-memory TUN with `TunDevice`'s semantics: `read` copies one packet into the caller's slot
/// or returns nil when none is waiting (EAGAIN), `waitReadable` polls like the real one, `write`
/// takes one whole packet. Reads cycle through `packets`, which start with a virtio-net header
/// when `vnetHeaderSize` is 10 (a TUN with offloads); writes are counted.
///
/// One thread reads (the TUN reader), any thread may write.
final class FakeTunnel: PacketTunnel, @unchecked Sendable {
    let vnetHeaderSize: Int
    private let packets: PacketSet?
    private let completion: Completion
    let offer: Offer
    /// Reader-thread state: packets taken from the offer but not read yet, and the next packet.
    private var available = 0
    private var next = 0

    init(packets: PacketSet?, vnetHeaderSize: Int = 0, completion: Completion) throws {
        self.packets = packets
        self.vnetHeaderSize = vnetHeaderSize
        self.completion = completion
        offer = try Offer()
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        if available == 0 {
            available = offer.takeAll()
            if available == 0 { return nil }
        }
        guard let packets else { preconditionFailure("this fake TUN has no packets to read") }
        available -= 1
        let packet = packets.packet(next)
        next = next + 1 == packets.count ? 0 : next + 1
        // As the kernel does: as much as fits, the packet's length returned.
        let count = min(packet.count, buffer.count)
        buffer.baseAddress!.copyMemory(from: packet.baseAddress!, byteCount: count)
        return packet.count
    }

    func write(_ packet: UnsafeRawBufferPointer) throws -> Bool {
        completion.add(1)
        return true
    }

    func write(vectors: UnsafeBufferPointer<iovec>) throws -> Bool {
        completion.add(1)
        return true
    }

    func waitReadable(orWakeup wakeup: EventFD) throws -> Poll.Readiness {
        let readiness = try Poll.waitReadable(offer.readiness.fileDescriptor, orWakeup: wakeup)
        if readiness == .readable { offer.clear() }
        return readiness
    }
}

/// An in-memory UDP socket with `UDPSocket`'s batch semantics: `receive` blocks until at least
/// one datagram is on offer, then fills as many entries as are waiting, up to `maxCount`, copying
/// each datagram into the entry's slot and recording its length and sender (recvmmsg with
/// MSG_WAITFORONE); `send` takes the whole batch (sendmmsg) and counts it; after `shutdown`
/// `receive` returns 0.
///
/// One thread receives, any number send.
final class FakeTransport: DatagramTransport, @unchecked Sendable {
    private let datagrams: PacketSet?
    /// The outer source of datagram i.
    private let senders: [IPv4Address]
    private let port: UInt16
    private let completion: Completion
    let offer: Offer
    private let shutdownEvent: EventFD
    private let isShutDown = Atomic<Bool>(false)
    /// Receiver-thread state.
    private var available = 0
    private var next = 0

    init(datagrams: PacketSet?, senders: [IPv4Address], port: UInt16, completion: Completion) throws {
        precondition(datagrams == nil || datagrams!.count == senders.count)
        self.datagrams = datagrams
        self.senders = senders
        self.port = port
        self.completion = completion
        offer = try Offer()
        shutdownEvent = try EventFD()
    }

    var segmentationOffloadFailed: Bool { false }

    func receive(into batch: DatagramBatch, maxCount: Int) throws -> Int {
        while true {
            if isShutDown.load(ordering: .acquiring) {
                batch.count = 0
                return 0
            }
            if available == 0 { available = offer.takeAll() }
            if available > 0 {
                guard let datagrams else { preconditionFailure("this fake socket has no datagrams to receive") }
                let count = min(available, maxCount, batch.capacity)
                for entry in 0..<count {
                    let datagram = datagrams.packet(next)
                    let buffer = batch.receiveBuffer(entry)
                    buffer.baseAddress!.copyMemory(from: datagram.baseAddress!, byteCount: min(datagram.count, buffer.count))
                    batch.setReceived(entry, length: datagram.count, from: senders[next], port: port)
                    next = next + 1 == datagrams.count ? 0 : next + 1
                }
                available -= count
                batch.count = count
                return count
            }
            if try Poll.waitReadable(offer.readiness.fileDescriptor, orWakeup: shutdownEvent) == .readable {
                offer.clear()
            }
        }
    }

    func send(_ batch: DatagramBatch, count: Int) throws -> (sent: Int, failed: Int) {
        completion.add(count)
        return (count, 0)
    }

    func shutdown() {
        isShutDown.store(true, ordering: .releasing)
        shutdownEvent.signal()
    }
}
