import Foundation
import Testing
import WeftTestSupport
import WeftCore
@testable import WeftCapture

/// Hand-made captures, written with PcapWriter, judged by the decoder and by `weft capture --verify`.
@Suite struct OfflineCaptureTests {
    static let header = PacketHeader(seconds: 1_700_000_000, microseconds: 5, capturedLength: 0, wireLength: 0)

    /// Writes `frames` (bytes, wire length) as an Ethernet pcap.
    func write(_ frames: [([UInt8], Int)], to path: String, linkType: Int32 = LinkType.ethernet) throws {
        let writer = try PcapWriter(path: path, linkType: linkType)
        for (bytes, wire) in frames {
            writer.write(bytes, header: PacketHeader(seconds: 1_700_000_000, microseconds: 5, capturedLength: bytes.count, wireLength: wire))
        }
        writer.close()
    }

    func good(_ count: Int) -> [([UInt8], Int)] {
        (0..<count).map { let frame = Frames.datagram(Frames.inner($0)); return (frame, frame.count) }
    }

    /// One of each bad kind, plus one datagram on another port.
    func bad() -> [([UInt8], Int)] {
        var badChecksum = Frames.inner(7)
        badChecksum[10] ^= 0xFF
        let full = Frames.datagram(Frames.inner(8))
        let ipv6Payload: [UInt8] = [0x60] + [UInt8](repeating: 0, count: 47)
        return [
            (Frames.datagram(Frames.inner(1), sourcePort: 40_000, destinationPort: 8285), 0),
            (Frames.datagram(Frames.inner(2) + Frames.inner(3)), 0),
            (Frames.datagram(badChecksum), 0),
            (Array(full.prefix(60)), full.count),
            (Frames.datagram(ipv6Payload), 0),
            (Frames.datagram(Frames.inner(9), sourcePort: 53, destinationPort: 53), 0),
        ].map { ($0.0, max($0.1, $0.0.count)) }
    }

    @Test("verdicts: valid, wrong ports, two packets in one datagram, bad checksum, cut by snaplen, IPv6 payload, other port")
    func verdictCounts() throws {
        let directory = try temporaryDirectory("verdicts")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try write(good(3) + bad(), to: directory + "/bad.pcap")
        let report = try FlannelCapture.verify(file: directory + "/bad.pcap")
        #expect(report[.valid] == 3)
        #expect(report[.portMismatch] == 1)
        #expect(report[.lengthMismatch] == 1)
        #expect(report[.badInnerChecksum] == 1)
        #expect(report[.truncated] == 1)
        #expect(report[.notIPv4Payload] == 1)
        #expect(report[.otherPort] == 1)
        #expect(report.total == 9 && report.violations == 5 && !report.isValid)

        try write(good(4), to: directory + "/good.pcap")
        let goodReport = try FlannelCapture.verify(file: directory + "/good.pcap")
        #expect(goodReport[.valid] == 4 && goodReport.isValid)
    }

    @Test("the decoder reads RAW, LINUX_SLL and Ethernet frames, with the inner fields")
    func linkTypes() throws {
        let inner = Frames.inner(0)
        let ethernet = Frames.datagram(inner)
        let ip = Array(ethernet.dropFirst(14))
        let sll: [UInt8] = [0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00] + ip
        for (frame, linkType) in [(ethernet, LinkType.ethernet), (ip, LinkType.raw), (ip, LinkType.linktypeRaw), (sll, LinkType.linuxSLL)] {
            let datagram = frame.withUnsafeBytes { FlannelDecoder.decode($0, wireLength: frame.count, linkType: linkType, port: 8285) }
            #expect(datagram.verdict == .valid, "link type \(linkType)")
            #expect(datagram.outerSource == IPv4Address(198, 18, 0, 1) && datagram.outerDestination == IPv4Address(198, 18, 0, 2))
            #expect(datagram.innerSource == IPv4Address(10, 244, 1, 2) && datagram.innerDestination == IPv4Address(10, 244, 2, 2))
            #expect(datagram.innerTTL == 64 && datagram.innerProtocol == 1 && datagram.innerTotalLength == inner.count)
            #expect(datagram.innerRange.map { Array(frame[$0]) } == inner)
        }
        // Not IPv4 at all, and cut inside the link header.
        let arp: [UInt8] = Array(ethernet[0..<12]) + [0x08, 0x06] + [UInt8](repeating: 0, count: 28)
        #expect(arp.withUnsafeBytes { FlannelDecoder.decode($0, wireLength: arp.count, linkType: LinkType.ethernet, port: 8285) }.verdict == .notUDP)
        let stub: [UInt8] = [1, 2, 3]
        #expect(stub.withUnsafeBytes { FlannelDecoder.decode($0, wireLength: 100, linkType: LinkType.ethernet, port: 8285) }.verdict == .truncated)
    }

    @Test("a non-pcap file, a truncated pcap and an unknown link type give clear errors")
    func badFiles() throws {
        let directory = try temporaryDirectory("badfiles")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Data("hello, this is not a capture\n".utf8).write(to: URL(fileURLWithPath: directory + "/text.pcap"))
        #expect(throws: PcapError.self) { try FlannelCapture.verify(file: directory + "/text.pcap") }
        do { _ = try FlannelCapture.verify(file: directory + "/text.pcap") } catch {
            #expect("\(error)".contains("not a pcap file"), "\(error)")
        }
        try write(good(3), to: directory + "/good.pcap")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: directory + "/good.pcap"))
        try bytes.prefix(bytes.count - 10).write(to: URL(fileURLWithPath: directory + "/cut.pcap"))
        try bytes.prefix(10).write(to: URL(fileURLWithPath: directory + "/stub.pcap"))
        for name in ["cut", "stub"] {
            do {
                _ = try FlannelCapture.verify(file: directory + "/\(name).pcap")
                Issue.record("\(name).pcap read without error")
            } catch {
                #expect("\(error)".contains("truncated"), "\(error)")
            }
        }
        try write([([1, 2, 3, 4], 4)], to: directory + "/wifi.pcap", linkType: 105)
        do {
            _ = try FlannelCapture.verify(file: directory + "/wifi.pcap")
            Issue.record("unknown link type read without error")
        } catch {
            #expect("\(error)".contains("not supported"), "\(error)")
        }
        #expect(throws: PcapError.self) { try FlannelCapture.verify(file: directory + "/missing.pcap") }
        do { _ = try FlannelCapture.verify(file: directory + "/missing.pcap") } catch {
            let text = "\(error)"
            #expect(text.components(separatedBy: "missing.pcap").count == 2, "the path once: \(text)")
            #expect(text.contains("No such file"), "\(text)")
        }
    }

    @Test("weft capture --verify passes a good file, fails a bad one with one line, and prints JSON")
    func verifyCommand() throws {
        try #require(TestEnvironment.hasWeft, "no weft binary at \(TestEnvironment.weftBinary): run swift build first")
        let directory = try temporaryDirectory("cli")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try write(good(3), to: directory + "/good.pcap")
        try write(good(3) + bad(), to: directory + "/bad.pcap")
        let weft = TestEnvironment.weftBinary

        let pass = try run([weft, "capture", "--verify", directory + "/good.pcap"])
        #expect(pass.status == 0 && pass.output.contains("valid 3") && pass.output.contains("violations 0"), "\(pass)")

        let fail = try run([weft, "capture", "--verify", directory + "/bad.pcap", "--json"])
        #expect(fail.status != 0, "\(fail)")
        let object = try JSONSerialization.jsonObject(with: Data(fail.output.utf8)) as? [String: Int]
        #expect(object?["valid"] == 3 && object?["portMismatch"] == 1 && object?["lengthMismatch"] == 1, "\(fail)")
        #expect(object?["badInnerChecksum"] == 1 && object?["truncated"] == 1 && object?["violations"] == 5, "\(fail)")
        #expect(fail.errorOutput.split(separator: "\n").count == 1 && fail.errorOutput.hasPrefix("weft: "), "\(fail)")

        let read = try run([weft, "capture", "--read", directory + "/bad.pcap"])
        #expect(read.status == 0, "\(read)")
        let lines = read.output.split(separator: "\n")
        #expect(lines.count == 9, "\(read)")
        #expect(lines.first?.contains("198.18.0.1:8285 > 198.18.0.2:8285 ICMP 10.244.1.2 > 10.244.2.2") == true, "\(read)")
        #expect(lines.first?.hasSuffix("ttl 64 valid") == true, "\(read)")

        try Data("not a capture".utf8).write(to: URL(fileURLWithPath: directory + "/text.pcap"))
        for arguments in [["--verify", directory + "/text.pcap"], ["--read", directory + "/missing.pcap"], ["--read", directory + "/x", "--verify", directory + "/y"],
                          ["--verify", directory + "/bad.pcap", "--write-inner", directory + "/i.pcap"], ["--read", directory + "/bad.pcap", "--count", "2"]] {
            let result = try run([weft, "capture"] + arguments)
            #expect(result.status != 0, "\(result.transcript)")
            #expect(result.errorOutput.split(separator: "\n").count == 1 && result.errorOutput.hasPrefix("weft: "), "\(result.transcript)")
        }
    }

    @Test("tcpdump -r reads the outer and inner files Weft writes: counts and addresses match")
    func tcpdumpReadsWeftFiles() throws {
        try #require(TestEnvironment.hasTcpdump, "tcpdump is not installed")
        let directory = try temporaryDirectory("tcpdump")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try write(good(5), to: directory + "/outer.pcap")
        #expect(try FlannelCapture.decapsulate(file: directory + "/outer.pcap", to: directory + "/inner.pcap")[.valid] == 5)

        let outer = try run(["tcpdump", "-nn", "-r", directory + "/outer.pcap"])
        let outerLines = outer.output.split(separator: "\n")
        #expect(outer.status == 0 && outerLines.count == 5, "\(outer)")
        #expect(outerLines.allSatisfy { $0.contains("IP 198.18.0.1.8285 > 198.18.0.2.8285: UDP, length 84") }, "\(outer)")

        let decoded = try run(["tcpdump", "-nn", "-r", directory + "/inner.pcap"])
        let innerLines = decoded.output.split(separator: "\n")
        #expect(decoded.status == 0 && innerLines.count == 5, "\(decoded)")
        #expect(decoded.errorOutput.contains("RAW"), "\(decoded)")
        for (index, line) in innerLines.enumerated() {
            #expect(line.contains("IP 10.244.1.2 > 10.244.2.\(2 + index): ICMP echo request"), "\(line)")
        }
    }

    @Test("a GSO/GRO super-frame over the MTU counts as the datagrams it is cut into; under the MTU it is two packets in one datagram")
    func superFrames() throws {
        let payload = Frames.inner(0, size: 1400) + Frames.inner(1, size: 1400) + Frames.inner(2, size: 600)
        let frame = Frames.datagram(payload)
        let datagram = frame.withUnsafeBytes { FlannelDecoder.decode($0, wireLength: frame.count, linkType: LinkType.ethernet, port: 8285) }
        #expect(datagram.verdict == .valid && datagram.segments == 3 && datagram.segmentSize == 1400)
        #expect(datagram.innerPacketRanges.map { Array(frame[$0]) } == [Frames.inner(0, size: 1400), Frames.inner(1, size: 1400), Frames.inner(2, size: 600)])
        // With a jumbo MTU the same frame is one datagram holding three packets: a violation.
        let jumbo = frame.withUnsafeBytes { FlannelDecoder.decode($0, wireLength: frame.count, linkType: LinkType.ethernet, port: 8285, mtu: 9000) }
        #expect(jumbo.verdict == .lengthMismatch)
        // Segments of unequal size, or a broken one, are no super-frame a kernel makes.
        for bad in [Frames.inner(0, size: 1000) + Frames.inner(1, size: 1400), Frames.inner(0, size: 1400) + [UInt8](repeating: 0x45, count: 1400)] {
            let badFrame = Frames.datagram(bad)
            let verdict = badFrame.withUnsafeBytes { FlannelDecoder.decode($0, wireLength: badFrame.count, linkType: LinkType.ethernet, port: 8285).verdict }
            #expect(verdict == .lengthMismatch)
        }
        let directory = try temporaryDirectory("superframes")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try write([(frame, frame.count)] + good(2), to: directory + "/gso.pcap")
        let report = try FlannelCapture.verify(file: directory + "/gso.pcap")
        #expect(report[.valid] == 3 && report.superFrames == 1 && report.validDatagrams == 5 && report.isValid, "\(report)")
        #expect(try !FlannelCapture.verify(file: directory + "/gso.pcap", mtu: 9000).isValid)
        let read = try run([TestEnvironment.weftBinary, "capture", "--read", directory + "/gso.pcap"])
        #expect(read.output.split(separator: "\n").first?.hasSuffix("gso 3x1400 valid") == true, "\(read)")
    }

    @Test("tshark decodes Weft's outer file with -d udp.port==8285,ip, and its inner file, to the same packets")
    func tsharkReadsWeftFiles() throws {
        try #require(findInPath("tshark") != nil, "tshark is not installed (tools/prereqs installs it)")
        let directory = try temporaryDirectory("tshark")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try write(good(4), to: directory + "/outer.pcap")
        let decapsulated = try run([TestEnvironment.weftBinary, "capture", "--read", directory + "/outer.pcap", "--write-inner", directory + "/inner.pcap"])
        #expect(decapsulated.status == 0 && decapsulated.errorOutput.contains("wrote \(directory)/inner.pcap"), "\(decapsulated)")
        let fields = ["-T", "fields", "-E", "occurrence=a", "-e", "ip.src", "-e", "ip.dst", "-e", "icmp.type"]
        let outer = try run(["tshark", "-n", "-r", directory + "/outer.pcap", "-d", "udp.port==8285,ip"] + fields)
        let outerLines = outer.output.split(separator: "\n")
        #expect(outer.status == 0 && outerLines.count == 4, "\(outer)")
        for (index, line) in outerLines.enumerated() {
            #expect(line == "198.18.0.1,10.244.1.2\t198.18.0.2,10.244.2.\(2 + index)\t8", "outer and decoded inner addresses: \(line)")
        }
        let decoded = try run(["tshark", "-n", "-r", directory + "/inner.pcap"] + fields)
        let innerLines = decoded.output.split(separator: "\n")
        #expect(decoded.status == 0 && innerLines.count == 4, "\(decoded)")
        for (index, line) in innerLines.enumerated() {
            #expect(line == "10.244.1.2\t10.244.2.\(2 + index)\t8", "\(line)")
        }
    }
}
