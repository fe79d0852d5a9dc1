import Glibc
import Testing
import WeftCore
@testable import WeftLinux

/// `UDPSocket.openGroup`: the kernel picks each datagram's socket by the inner addresses of the
/// flannel payload, so every lane of a node sees whole flows. Real sockets on loopback.
@Suite struct SocketGroupTests {
    let loopback = IPv4Address("127.0.0.1")!

    /// 20 bytes shaped like an inner IPv4 header: only the addresses matter to the steering.
    private func innerHeader(source: IPv4Address, destination: IPv4Address, sequence: UInt8) -> [UInt8] {
        var bytes: [UInt8] = [0x45, 0, 0, 20, 0, sequence, 0, 0, 64, 17, 0, 0]
        for address in [source, destination] {
            bytes += [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: address.rawValue >> $0) }
        }
        return bytes
    }

    /// A free port for the group: the kernel's choice for a throwaway socket.
    private func freePort() throws -> UInt16 {
        let probe = try UDPSocket(bindTo: loopback, port: 0)
        defer { probe.close() }
        return try probe.localPort
    }

    /// Which socket of `group` received each datagram, by its sequence byte.
    private func receiveAll(_ group: [UDPSocket], expecting count: Int) throws -> [UInt8: Int] {
        let wakeup = try EventFD()
        defer { wakeup.close() }
        let buffers = (0..<64).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8) }
        defer { buffers.forEach { $0.deallocate() } }
        let batch = DatagramBatch(capacity: 64)
        for (i, buffer) in buffers.enumerated() { batch.setReceiveBuffer(i, buffer) }
        var landedOn: [UInt8: Int] = [:]
        var idleRounds = 0
        while landedOn.count < count && idleRounds < 20 {
            var any = false
            for (index, socket) in group.enumerated()
            where try Poll.waitReadable(socket.fileDescriptor, orWakeup: wakeup, timeoutMilliseconds: 50) == .readable {
                let n = try socket.receive(into: batch, maxCount: 64)
                for i in 0..<n where batch.length(i) >= 20 {
                    landedOn[buffers[i][5]] = index
                    any = true
                }
            }
            idleRounds = any ? 0 : idleRounds + 1
        }
        return landedOn
    }

    @Test func eachInnerFlowReachesOneSocketAndFlowsSpreadOverTheGroup() throws {
        let port = try freePort()
        let group = try UDPSocket.openGroup(bindTo: loopback, port: port, count: 2)
        let sender = try UDPSocket(bindTo: loopback, port: 0)
        defer { group.forEach { $0.close() }; sender.close() }
        #expect(group.count == 2)
        #expect(try group.map { try $0.localPort } == [port, port], "one address and port for the whole group")

        // 40 flows between pods of two nodes, 5 datagrams each, and every flow's reverse.
        var flowOfSequence: [UInt8: Int] = [:]
        var datagrams: [[UInt8]] = []
        for flow in 0..<20 {
            let a = IPv4Address(10, 244, 1, UInt8(2 + flow))
            let b = IPv4Address(10, 244, 2, UInt8(2 + flow * 7 % 50))
            for (direction, (source, destination)) in [(a, b), (b, a)].enumerated() {
                for _ in 0..<5 {
                    let sequence = UInt8(datagrams.count)
                    flowOfSequence[sequence] = 2 * flow + direction
                    datagrams.append(innerHeader(source: source, destination: destination, sequence: sequence))
                }
            }
        }
        let batch = DatagramBatch(capacity: datagrams.count)
        let storage = datagrams.map { bytes -> UnsafeMutableRawBufferPointer in
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 8)
            buffer.copyBytes(from: bytes)
            return buffer
        }
        defer { storage.forEach { $0.deallocate() } }
        for (i, buffer) in storage.enumerated() { batch.setSend(i, UnsafeRawBufferPointer(buffer), to: loopback, port: port) }
        #expect(try sender.send(batch, count: datagrams.count) == (datagrams.count, 0))

        let landedOn = try receiveAll(group, expecting: datagrams.count)
        try #require(landedOn.count == datagrams.count, "every datagram reaches the group")
        var socketOfFlow: [Int: Set<Int>] = [:]
        for (sequence, socket) in landedOn { socketOfFlow[flowOfSequence[sequence]! / 2, default: []].insert(socket) }
        for (flow, sockets) in socketOfFlow {
            #expect(sockets.count == 1, "flow \(flow) and its reverse reach one socket, not \(sockets.sorted())")
        }
        #expect(Set(landedOn.values) == [0, 1], "the flows spread over both sockets")
    }

    @Test func aDatagramTooShortForAnInnerHeaderStillArrives() throws {
        let port = try freePort()
        let group = try UDPSocket.openGroup(bindTo: loopback, port: port, count: 3)
        let sender = try UDPSocket(bindTo: loopback, port: 0)
        defer { group.forEach { $0.close() }; sender.close() }
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: 6, alignment: 8)
        defer { bytes.deallocate() }
        bytes.copyBytes(from: [1, 2, 3, 4, 5, 6] as [UInt8])
        let batch = DatagramBatch(capacity: 1)
        batch.setSend(0, UnsafeRawBufferPointer(bytes), to: loopback, port: port)
        #expect(try sender.send(batch, count: 1) == (1, 0))
        let wakeup = try EventFD()
        defer { wakeup.close() }
        // The program's out-of-range load selects socket 0.
        #expect(try Poll.waitReadable(group[0].fileDescriptor, orWakeup: wakeup, timeoutMilliseconds: 2000) == .readable)
    }

    @Test func aSecondGroupOnTheSamePortIsRefused() throws {
        let port = try freePort()
        let group = try UDPSocket.openGroup(bindTo: loopback, port: port, count: 2)
        defer { group.forEach { $0.close() } }
        #expect(throws: SystemError.self) { _ = try UDPSocket(bindTo: loopback, port: port) }
    }
}
