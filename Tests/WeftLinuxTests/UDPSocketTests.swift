import Dispatch
import Glibc
import Testing
import WeftCore
@testable import WeftLinux

/// Buffers for a batch, freed by the test.
private final class Buffers {
    let slots: [UnsafeMutableRawBufferPointer]
    init(count: Int, size: Int) {
        slots = (0..<count).map { _ in .allocate(byteCount: size, alignment: 16) }
    }
    deinit { slots.forEach { $0.deallocate() } }
}

private final class Box<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

@Suite struct UDPSocketTests {
    let loopback = IPv4Address("127.0.0.1")!

    @Test func batchOf32RoundTripsInOneSend() throws {
        let receiver = try UDPSocket(bindTo: loopback, port: 0)
        let sender = try UDPSocket(bindTo: loopback, port: 0)
        defer { receiver.close(); sender.close() }
        let receiverPort = try receiver.localPort
        let senderPort = try sender.localPort
        #expect(receiverPort != 0 && senderPort != 0)

        let outgoing = Buffers(count: 32, size: 2048)
        let sendBatch = DatagramBatch(capacity: 32)
        for i in 0..<32 {
            let size = 1 + i * 61   // 1 ... 1892 bytes
            for j in 0..<size { outgoing.slots[i][j] = UInt8(truncatingIfNeeded: i &* 31 &+ j) }
            sendBatch.setSend(i, UnsafeRawBufferPointer(rebasing: outgoing.slots[i][..<size]), to: loopback, port: receiverPort)
        }
        let result = try sender.send(sendBatch, count: 32)
        #expect(result.sent == 32 && result.failed == 0)

        let incoming = Buffers(count: 32, size: 2048)
        let receiveBatch = DatagramBatch(capacity: 32)
        for i in 0..<32 { receiveBatch.setReceiveBuffer(i, incoming.slots[i]) }
        var received: [[UInt8]] = []
        while received.count < 32 {
            let n = try receiver.receive(into: receiveBatch, maxCount: 32)
            #expect(n > 0 && receiveBatch.count == n)
            for i in 0..<n {
                #expect(!receiveBatch.isTruncated(i))
                let from = receiveBatch.sender(i)
                #expect(from.address == loopback && from.port == senderPort)
                received.append(Array(incoming.slots[i][..<receiveBatch.length(i)]))
            }
        }
        for i in 0..<32 {
            let size = 1 + i * 61
            #expect(received[i] == (0..<size).map { UInt8(truncatingIfNeeded: i &* 31 &+ $0) })
        }
    }

    @Test func oversizedDatagramIsReportedTruncatedWithRealLength() throws {
        let receiver = try UDPSocket(bindTo: loopback, port: 0)
        let sender = try UDPSocket(bindTo: loopback, port: 0)
        defer { receiver.close(); sender.close() }
        let big = Buffers(count: 2, size: 3000)
        big.slots[0].initializeMemory(as: UInt8.self, repeating: 0xAB)
        big.slots[1].initializeMemory(as: UInt8.self, repeating: 0xCD)
        let sendBatch = DatagramBatch(capacity: 2)
        sendBatch.setSend(0, UnsafeRawBufferPointer(big.slots[0]), to: loopback, port: try receiver.localPort)
        sendBatch.setSend(1, UnsafeRawBufferPointer(rebasing: big.slots[1][..<500]), to: loopback, port: try receiver.localPort)
        #expect(try sender.send(sendBatch, count: 2) == (sent: 2, failed: 0))

        let small = Buffers(count: 2, size: 1000)
        let batch = DatagramBatch(capacity: 2)
        batch.setReceiveBuffer(0, small.slots[0])
        batch.setReceiveBuffer(1, small.slots[1])
        var seen = 0
        var lengths: [Int] = []
        var truncated: [Bool] = []
        while seen < 2 {
            let n = try receiver.receive(into: batch, maxCount: 2 - seen)
            for i in 0..<n {
                lengths.append(batch.length(i))
                truncated.append(batch.isTruncated(i))
            }
            seen += n
        }
        #expect(lengths == [3000, 500])
        #expect(truncated == [true, false])
    }

    @Test func refusedEntriesAreCountedNotThrown() throws {
        let sender = try UDPSocket(bindTo: loopback, port: 0)
        let receiver = try UDPSocket(bindTo: loopback, port: 0)
        defer { sender.close(); receiver.close() }
        let huge = UnsafeMutableRawBufferPointer.allocate(byteCount: 70_000, alignment: 1)
        defer { huge.deallocate() }
        huge.initializeMemory(as: UInt8.self, repeating: 0)
        let batch = DatagramBatch(capacity: 3)
        let port = try receiver.localPort
        batch.setSend(0, UnsafeRawBufferPointer(rebasing: huge[..<10]), to: loopback, port: port)
        batch.setSend(1, UnsafeRawBufferPointer(huge), to: loopback, port: port)   // > 65507: EMSGSIZE
        batch.setSend(2, UnsafeRawBufferPointer(rebasing: huge[..<20]), to: loopback, port: port)
        #expect(try sender.send(batch, count: 3) == (sent: 2, failed: 1))
    }

    @Test func shutdownUnblocksABlockedReceiver() throws {
        let receiver = try UDPSocket(bindTo: loopback, port: 0)
        defer { receiver.close() }
        let buffers = Buffers(count: 4, size: 1500)
        let batch = DatagramBatch(capacity: 4)
        for i in 0..<4 { batch.setReceiveBuffer(i, buffers.slots[i]) }
        let outcome = Box<Result<Int, SystemError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let started = DispatchSemaphore(value: 0)
        Thread.detach {
            started.signal()
            outcome.value = Result { () throws(SystemError) in try receiver.receive(into: batch, maxCount: 4) }
            done.signal()
        }
        started.wait()
        usleep(100_000)   // let it block in recvmmsg
        let start = DispatchTime.now()
        receiver.shutdown()
        #expect(done.wait(timeout: .now() + 1) == .success)
        #expect(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds < 1_000_000_000)
        #expect(try outcome.value?.get() == 0)
        // Later receives return 0 at once.
        #expect(try receiver.receive(into: batch, maxCount: 4) == 0)
        _ = buffers
    }

    @Test func emptyDatagramIsADatagramNotEndOfStream() throws {
        let receiver = try UDPSocket(bindTo: loopback, port: 0)
        let sender = try UDPSocket(bindTo: loopback, port: 0)
        defer { receiver.close(); sender.close() }
        let buffers = Buffers(count: 1, size: 64)
        let out = DatagramBatch(capacity: 1)
        out.setSend(0, UnsafeRawBufferPointer(rebasing: buffers.slots[0][..<0]), to: loopback, port: try receiver.localPort)
        #expect(try sender.send(out, count: 1) == (sent: 1, failed: 0))
        let batch = DatagramBatch(capacity: 1)
        batch.setReceiveBuffer(0, buffers.slots[0])
        #expect(try receiver.receive(into: batch, maxCount: 1) == 1)
        #expect(batch.length(0) == 0)
        #expect(batch.sender(0).port == (try sender.localPort))
    }

    @Test func buffersAreRaised() throws {
        let socket = try UDPSocket(bindTo: loopback, port: 0)
        defer { socket.close() }
        let sizes = try socket.bufferSizes
        // As root the FORCE options apply (the kernel reports twice the value).
        if getuid() == 0 {
            #expect(sizes.receive >= Int(UDPSocket.bufferSize) && sizes.send >= Int(UDPSocket.bufferSize))
        }
    }
}

/// A plain pthread, so a test can block a thread without starving Swift concurrency.
enum Thread {
    static func detach(_ body: @escaping @Sendable () -> Void) {
        final class Context { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
        var thread = pthread_t()
        let context = Unmanaged.passRetained(Context(body)).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            let context = Unmanaged<Context>.fromOpaque(raw!).takeRetainedValue()
            context.body()
            return nil
        }, context)
        precondition(rc == 0, "pthread_create failed")
        pthread_detach(thread)
    }
}
