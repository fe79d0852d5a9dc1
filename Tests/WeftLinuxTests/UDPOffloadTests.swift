import Glibc
import Testing
import WeftCore
@testable import WeftLinux

/// UDP GSO (UDP_SEGMENT per message) and GRO (UDP_GRO) on loopback.
@Suite struct UDPOffloadTests {
    let loopback = IPv4Address("127.0.0.1")!

    /// The test pattern: byte k of the 5300-byte GSO payload.
    static func patternByte(_ k: Int) -> UInt8 { UInt8(truncatingIfNeeded: k &* 7 &+ k / 256) }

    /// Owns a 5300-byte payload split over three iovecs (1500 + 2500 + 1300 bytes), so the
    /// segment boundaries (every 1000 bytes) fall inside iovecs, not on their edges.
    final class GatheredPayload {
        static let total = 5300
        let bytes: UnsafeMutableRawBufferPointer
        let vectors: UnsafeMutablePointer<iovec>
        init() {
            bytes = .allocate(byteCount: Self.total, alignment: 16)
            for k in 0..<Self.total { bytes[k] = UDPOffloadTests.patternByte(k) }
            vectors = .allocate(capacity: 3)
            let base = bytes.baseAddress!
            vectors[0] = iovec(iov_base: base, iov_len: 1500)
            vectors[1] = iovec(iov_base: base + 1500, iov_len: 2500)
            vectors[2] = iovec(iov_base: base + 4000, iov_len: 1300)
        }
        var expected: [UInt8] { Array(bytes) }
        deinit { bytes.deallocate(); vectors.deallocate() }
    }

    /// 64 KiB receive slots, as the data path's pool provides.
    final class Slots {
        let slots: [UnsafeMutableRawBufferPointer]
        init(count: Int, size: Int = 65536) {
            slots = (0..<count).map { _ in .allocate(byteCount: size, alignment: 16) }
        }
        deinit { slots.forEach { $0.deallocate() } }
    }

    /// A receiver whose receive gives up after 2 s (SO_RCVTIMEO), so a lost datagram fails the
    /// test instead of hanging it.
    func makeReceiver() throws -> UDPSocket {
        let socket = try UDPSocket(bindTo: loopback, port: 0)
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        let rc = setsockopt(socket.fileDescriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout,
                            socklen_t(MemoryLayout<timeval>.size))
        try #require(rc == 0)
        return socket
    }

    struct Entry: Equatable {
        var bytes: [UInt8]
        var segmentSize: Int?
    }

    /// Receives entries until `totalBytes` bytes arrived (or a receive times out).
    func receive(_ socket: UDPSocket, totalBytes: Int, slotSize: Int = 65536) throws -> [Entry] {
        let slots = Slots(count: 8, size: slotSize)
        let batch = DatagramBatch(capacity: 8)
        for i in 0..<8 { batch.setReceiveBuffer(i, slots.slots[i]) }
        var entries: [Entry] = []
        var total = 0
        while total < totalBytes {
            let n = try socket.receive(into: batch, maxCount: 8)
            if n == 0 { break }   // timed out
            for i in 0..<n {
                #expect(!batch.isTruncated(i))
                let length = batch.length(i)
                entries.append(Entry(bytes: Array(slots.slots[i][..<length]), segmentSize: batch.segmentSize(i)))
                total += length
            }
        }
        return entries
    }

    @Test func gsoIsSupported() {
        #expect(UDPSocket.supportsGSO)
    }

    @Test func gsoSendArrivesAsSixDatagramsWithoutGRO() throws {
        try #require(UDPSocket.supportsGSO)
        let receiver = try makeReceiver()
        let sender = try UDPSocket(bindTo: loopback, port: 0)
        defer { receiver.close(); sender.close() }
        let payload = GatheredPayload()
        let batch = DatagramBatch(capacity: 1)
        batch.setSend(0, vectors: payload.vectors, count: 3, to: loopback, port: try receiver.localPort,
                      segmentSize: 1000)
        #expect(batch.hasSegmentSize(0))
        #expect(try sender.send(batch, count: 1) == (sent: 1, failed: 0))
        #expect(!sender.gsoFailedWithEIO)

        let entries = try receive(receiver, totalBytes: GatheredPayload.total)
        #expect(entries.map(\.bytes.count) == [1000, 1000, 1000, 1000, 1000, 300])
        #expect(entries.allSatisfy { $0.segmentSize == nil })
        #expect(entries.flatMap(\.bytes) == payload.expected)
    }

    @Test func groReceiveCoalescesAGSOSend() throws {
        try #require(UDPSocket.supportsGSO)
        let receiver = try makeReceiver()
        try receiver.enableGRO()
        let sender = try UDPSocket(bindTo: loopback, port: 0)
        defer { receiver.close(); sender.close() }
        let port = try receiver.localPort
        let payload = GatheredPayload()
        let batch = DatagramBatch(capacity: 1)
        batch.setSend(0, vectors: payload.vectors, count: 3, to: loopback, port: port, segmentSize: 1000)
        #expect(try sender.send(batch, count: 1) == (sent: 1, failed: 0))

        let entries = try receive(receiver, totalBytes: GatheredPayload.total)
        // Content first: whatever the kernel coalesced, the bytes arrive whole and in order.
        #expect(entries.flatMap(\.bytes) == payload.expected)
        #expect(entries.allSatisfy { $0.segmentSize == nil || $0.segmentSize == 1000 })
        // On loopback a GSO send reaches a GRO socket as one buffer (the skb stays a GSO skb);
        // observed on 6.18: one entry of 5300 bytes with segment size 1000.
        #expect(entries.contains { $0.segmentSize == 1000 && $0.bytes.count > 1000 })
        for entry in entries where entry.segmentSize != nil {
            // Every segment but the last is exactly segmentSize bytes: splitting works.
            let segments = stride(from: 0, to: entry.bytes.count, by: 1000).map { min(1000, entry.bytes.count - $0) }
            #expect(segments.dropLast().allSatisfy { $0 == 1000 })
        }

        // A plain datagram afterwards, received into the same kind of batch: no GRO cmsg.
        let plain = UnsafeMutableRawBufferPointer.allocate(byteCount: 700, alignment: 1)
        defer { plain.deallocate() }
        plain.initializeMemory(as: UInt8.self, repeating: 0x5A)
        let plainBatch = DatagramBatch(capacity: 1)
        plainBatch.setSend(0, UnsafeRawBufferPointer(plain), to: loopback, port: port)
        #expect(try sender.send(plainBatch, count: 1) == (sent: 1, failed: 0))
        let after = try receive(receiver, totalBytes: 700)
        #expect(after == [Entry(bytes: [UInt8](repeating: 0x5A, count: 700), segmentSize: nil)])
    }

    @Test func groReceiveBatchIsReusableAcrossReceives() throws {
        // The same batch receives a coalesced buffer and then a plain datagram: the control
        // length is reset before each recvmmsg, so no stale segment size is reported.
        try #require(UDPSocket.supportsGSO)
        let receiver = try makeReceiver()
        try receiver.enableGRO()
        let sender = try UDPSocket(bindTo: loopback, port: 0)
        defer { receiver.close(); sender.close() }
        let port = try receiver.localPort
        let payload = GatheredPayload()
        let slots = Slots(count: 1)
        let receiveBatch = DatagramBatch(capacity: 1)
        receiveBatch.setReceiveBuffer(0, slots.slots[0])
        let sendBatch = DatagramBatch(capacity: 1)

        sendBatch.setSend(0, vectors: payload.vectors, count: 3, to: loopback, port: port, segmentSize: 1000)
        #expect(try sender.send(sendBatch, count: 1) == (sent: 1, failed: 0))
        var got = 0
        var sizes: Set<Int?> = []
        while got < GatheredPayload.total {
            let n = try receiver.receive(into: receiveBatch, maxCount: 1)
            try #require(n == 1)
            got += receiveBatch.length(0)
            sizes.insert(receiveBatch.segmentSize(0))
        }
        #expect(sizes.isSubset(of: [nil, 1000]))

        sendBatch.setSend(0, UnsafeRawBufferPointer(rebasing: payload.bytes[..<40]), to: loopback, port: port)
        #expect(try sender.send(sendBatch, count: 1) == (sent: 1, failed: 0))
        #expect(try receiver.receive(into: receiveBatch, maxCount: 1) == 1)
        #expect(receiveBatch.length(0) == 40)
        #expect(receiveBatch.segmentSize(0) == nil)
    }

    @Test func reusedEntrySendsOnePlainDatagramAfterGSO() throws {
        try #require(UDPSocket.supportsGSO)
        let receiver = try makeReceiver()
        let sender = try UDPSocket(bindTo: loopback, port: 0)
        defer { receiver.close(); sender.close() }
        let port = try receiver.localPort
        let payload = GatheredPayload()
        let batch = DatagramBatch(capacity: 1)
        batch.setSend(0, vectors: payload.vectors, count: 3, to: loopback, port: port, segmentSize: 1000)
        #expect(try sender.send(batch, count: 1) == (sent: 1, failed: 0))
        #expect(try receive(receiver, totalBytes: GatheredPayload.total).count == 6)

        // Same entry, plain setSend of 3000 bytes: one datagram, not three segments.
        batch.setSend(0, UnsafeRawBufferPointer(rebasing: payload.bytes[..<3000]), to: loopback, port: port)
        #expect(!batch.hasSegmentSize(0))
        #expect(batch.messages[0].msg_hdr.msg_control == nil && batch.messages[0].msg_hdr.msg_controllen == 0)
        #expect(batch.messages[0].msg_hdr.msg_iovlen == 1)
        #expect(try sender.send(batch, count: 1) == (sent: 1, failed: 0))
        let entries = try receive(receiver, totalBytes: 3000)
        #expect(entries.map(\.bytes.count) == [3000])
        #expect(entries.first?.bytes == Array(payload.expected[..<3000]))

        // And vectored without a segment size: one datagram of all 5300 bytes.
        batch.setSend(0, vectors: payload.vectors, count: 3, to: loopback, port: port, segmentSize: nil)
        #expect(!batch.hasSegmentSize(0))
        #expect(try sender.send(batch, count: 1) == (sent: 1, failed: 0))
        let whole = try receive(receiver, totalBytes: GatheredPayload.total)
        #expect(whole.map(\.bytes.count) == [GatheredPayload.total])
        #expect(whole.first?.bytes == payload.expected)
    }

    @Test func gsoEntryBeyondKernelLimitsIsCountedNotThrown() throws {
        try #require(UDPSocket.supportsGSO)
        let receiver = try makeReceiver()
        let sender = try UDPSocket(bindTo: loopback, port: 0)
        defer { receiver.close(); sender.close() }
        let port = try receiver.localPort
        let payload = GatheredPayload()
        let big = UnsafeMutableRawBufferPointer.allocate(byteCount: 20_000, alignment: 16)
        defer { big.deallocate() }
        big.initializeMemory(as: UInt8.self, repeating: 1)
        let bigVector = UnsafeMutablePointer<iovec>.allocate(capacity: 1)
        defer { bigVector.deallocate() }
        bigVector.initialize(to: iovec(iov_base: big.baseAddress, iov_len: big.count))
        let batch = DatagramBatch(capacity: 3)
        batch.setSend(0, UnsafeRawBufferPointer(rebasing: payload.bytes[..<10]), to: loopback, port: port)
        // 200 segments of 100 bytes: more than UDP_MAX_SEGMENTS (64, or 128 on recent kernels).
        batch.setSend(1, vectors: bigVector, count: 1, to: loopback, port: port, segmentSize: 100)
        batch.setSend(2, UnsafeRawBufferPointer(rebasing: payload.bytes[..<20]), to: loopback, port: port)
        #expect(try sender.send(batch, count: 3) == (sent: 2, failed: 1))
        #expect(!sender.gsoFailedWithEIO)
        let entries = try receive(receiver, totalBytes: 30)
        #expect(entries.map(\.bytes.count) == [10, 20])
    }
}
