import Foundation
import Testing
@testable import WeftBench
import WeftCore

/// A datagram of `size` bytes with `header`.
private func datagram(_ header: BenchDatagram.Header, size: Int = 64) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: size)
    bytes.withUnsafeMutableBytes { BenchDatagram.write(header, to: $0.baseAddress!) }
    return bytes
}

@Suite struct BenchDatagramTests {
    @Test func headerBytesAreFixed() {
        let bytes = datagram(.init(test: 0x0102_0304, kind: .echoRequest, sequence: 0x1122_3344_5566_7788, sentAt: 0xAABB), size: 32)
        #expect(bytes == [0x57, 0x46, 0x42, 0x54, 1, 2, 3, 4, 3, 0, 0, 0, 0, 0, 0, 0,
                          0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0, 0, 0, 0, 0, 0, 0xAA, 0xBB])
    }

    @Test func parseRoundTripsAndRejectsForeignBytes() {
        let header = BenchDatagram.Header(test: 7, kind: .rate, sequence: 99)
        var bytes = datagram(header)
        bytes.withUnsafeBytes { #expect(BenchDatagram.parse($0) == header) }
        bytes.withUnsafeBytes { #expect(BenchDatagram.parse(UnsafeRawBufferPointer(rebasing: $0[..<31])) == nil) }
        bytes[8] = 9    // unknown kind
        bytes.withUnsafeBytes { #expect(BenchDatagram.parse($0) == nil) }
        bytes[8] = 1
        bytes[0] = 0    // other magic
        bytes.withUnsafeBytes { #expect(BenchDatagram.parse($0) == nil) }
    }

    @Test func sequenceAndKindAreRewrittenInPlace() {
        var bytes = datagram(.init(test: 5, kind: .rateWarmUp, sequence: 1, sentAt: 3))
        bytes.withUnsafeMutableBytes {
            BenchDatagram.setSequence(1234, at: $0.baseAddress!)
            BenchDatagram.setKind(.rate, at: $0.baseAddress!)
        }
        bytes.withUnsafeBytes { #expect(BenchDatagram.parse($0) == .init(test: 5, kind: .rate, sequence: 1234, sentAt: 3)) }
    }
}

@Suite struct DatagramSinkTests {
    private func feed(_ sink: DatagramSink, _ bytes: [UInt8]) -> ([UInt8], DatagramSink.Action) {
        var copy = bytes
        let action = copy.withUnsafeMutableBytes { sink.consume($0, now: 1) }
        return (copy, action)
    }

    @Test func countsOnlyThisTestsRateDatagrams() {
        let sink = DatagramSink(test: 42)
        for s in [0, 1, 3] as [UInt64] { _ = feed(sink, datagram(.init(test: 42, kind: .rate, sequence: s))) }
        // An older test's datagrams (a previous client's tail still queued) and warm-up ones.
        for s in [2, 4, 5] as [UInt64] { _ = feed(sink, datagram(.init(test: 41, kind: .rate, sequence: s))) }
        _ = feed(sink, datagram(.init(test: 42, kind: .rateWarmUp, sequence: 2)))
        _ = feed(sink, [1, 2, 3])
        _ = feed(sink, [UInt8](repeating: 0xFF, count: 64))
        #expect(sink.tracker.received == 3 && sink.tracker.lost(sent: 4) == 1)
        #expect(sink.warmUp == 1 && sink.ignored == 5 && sink.echoed == 0)
    }

    @Test func echoRequestsBecomeRepliesInPlace() {
        let sink = DatagramSink(test: 9)
        let request = datagram(.init(test: 9, kind: .echoRequest, sequence: 17, sentAt: 555), size: 100)
        let (reply, action) = feed(sink, request)
        #expect(action == .echo && sink.echoed == 1)
        #expect(reply.count == 100)
        reply.withUnsafeBytes { #expect(BenchDatagram.parse($0) == .init(test: 9, kind: .echoReply, sequence: 17, sentAt: 555)) }
        // Another test's request, and a reply sent to the server, are not echoed.
        #expect(feed(sink, datagram(.init(test: 8, kind: .echoRequest, sequence: 1))).1 == .none)
        #expect(feed(sink, datagram(.init(test: 9, kind: .echoReply, sequence: 1))).1 == .none)
        #expect(sink.echoed == 1 && sink.tracker.received == 0)
    }
}

@Suite struct ControlMessageTests {
    @Test func linesRoundTrip() {
        let hello = ControlMessage("hello", [("version", "1"), ("mode", "udp"), ("duration", "0.5")])
        #expect(hello.description == "hello version=1 mode=udp duration=0.5")
        let parsed = ControlMessage(line: hello.description)
        #expect(parsed == hello)
        #expect(parsed?["mode"] == "udp" && parsed?.number("duration") == 0.5 && parsed?.integer("version") == 1)
        #expect(parsed?["missing"] == nil && parsed?.integer("mode") == nil)
    }

    @Test func errorLinesCarryText() {
        let error = ControlMessage.error("busy: another test\nis running")
        #expect(error.description == "error busy: another test is running")
        #expect(ControlMessage(line: error.description)?.text == "busy: another test is running")
    }

    @Test func garbageIsRejected() {
        #expect(ControlMessage(line: "") == nil)
        #expect(ControlMessage(line: "hello mode") == nil)
        #expect(ControlMessage(line: "hello =udp") == nil)
        #expect(ControlMessage(line: "ok duration=nan")?.number("duration") == nil)
    }

    @Test func helloLimitsAreChecked() throws {
        func request(_ line: String) throws(BenchError) -> TestRequest { try TestRequest(ControlMessage(line: line)!) }
        let good = try request("hello version=1 mode=udp size=64 streams=1 duration=10 warmup=1")
        #expect(good.mode == .udp && good.size == 64 && good.duration == 10)
        #expect(throws: BenchError.self) { try request("hello version=2 mode=udp size=64 streams=1 duration=10 warmup=1") }
        #expect(throws: BenchError.self) { try request("hello version=1 mode=sctp size=64 streams=1 duration=10 warmup=1") }
        #expect(throws: BenchError.self) { try request("hello version=1 mode=udp size=63 streams=1 duration=10 warmup=1") }
        #expect(throws: BenchError.self) { try request("hello version=1 mode=udp size=1473 streams=1 duration=10 warmup=1") }
        #expect(throws: BenchError.self) { try request("hello version=1 mode=tcp size=65536 streams=0 duration=10 warmup=1") }
        #expect(throws: BenchError.self) { try request("hello version=1 mode=udp size=64 streams=1 duration=0 warmup=1") }
        #expect(throws: BenchError.self) { try request("hello version=1 mode=udp size=64 streams=1 duration=10") }
    }
}

@Suite struct FormattingTests {
    @Test func jsonNumbersAreValidJSON() throws {
        #expect(jsonNumber(10) == "10.0")
        #expect(jsonNumber(812.4) == "812.4")
        #expect(jsonNumber(0.0004) == "0.0")
        #expect(jsonNumber(1.23456) == "1.235")
        #expect(jsonNumber(166_192.16149) == "166192.161")
        #expect(jsonNumber(.nan) == "0.0" && jsonNumber(.infinity) == "0.0")
        for value in [0.0, 1e-9, 3.5, 9.51e9, 1e15] {
            let parsed = try JSONSerialization.jsonObject(with: Data("[\(jsonNumber(value))]".utf8)) as? [Double]
            #expect(parsed != nil)
        }
    }

    @Test func fixedDecimals() {
        #expect(fixed(2, 2) == "2.00")
        #expect(fixed(0.05, 1) == "0.1")
        #expect(fixed(-1.25, 1) == "-1.3" || fixed(-1.25, 1) == "-1.2")
        #expect(fixed(7.0, 0) == "7")
        #expect(rate(9.51e9) == "9.51 Gbit/s" && rate(85.1e6) == "85.1 Mbit/s" && rate(640) == "0.6 kbit/s")
    }

    @Test func optionsAreValidated() {
        let server = IPv4Address(127, 0, 0, 1)
        #expect(BenchOptions(server: server).size == 1472)
        #expect(BenchOptions(server: server, mode: .latency).size == 64)
        #expect(BenchOptions(server: server, mode: .tcp).size == 128 << 10)
        #expect(throws: Never.self) { try BenchOptions(server: server, size: 64).validate() }
        #expect(throws: BenchError.self) { try BenchOptions(server: server, size: 63).validate() }
        #expect(throws: BenchError.self) { try BenchOptions(server: server, size: 1473).validate() }
        #expect(throws: BenchError.self) { try BenchOptions(server: server, mode: .latency, size: 2000).validate() }
        #expect(throws: BenchError.self) { try BenchOptions(server: server, mode: .tcp, streams: 0).validate() }
        #expect(throws: BenchError.self) { try BenchOptions(server: server, streams: 2).validate() }
        #expect(throws: BenchError.self) { try BenchOptions(server: server, duration: 0).validate() }
        #expect(throws: BenchError.self) { try BenchOptions(server: server, duration: -1).validate() }
        #expect(throws: BenchError.self) { try BenchOptions(server: server, duration: .nan).validate() }
        #expect(throws: BenchError.self) { try BenchOptions(server: server, warmup: -1).validate() }
        #expect(throws: BenchError.self) { try BenchOptions(server: server, port: 0).validate() }
    }
}
