import Foundation
import Testing
import WeftLinux
import WeftTestSupport
import WeftCore
@testable import WeftCapture

/// Live captures, each in a throwaway network namespace (`unshare --net`) on its own `lo`: never
/// on this machine's real interfaces. Root only.
@Suite(.serialized, .enabled(if: TestEnvironment.isRoot, "live capture needs root (unshare --net, CAP_NET_RAW): skipped"))
struct NamespaceCaptureTests {
    /// Runs `script` under `unshare --net` with lo up, in `directory`, with send.py in place.
    func inNamespace(_ script: String, directory: String, count: Int) throws -> CommandResult {
        try TestEnvironment.senderScript(count: count).write(toFile: directory + "/send.py", atomically: true, encoding: .utf8)
        // Separate lines: `a && b && c &` would put the cd into the background subshell only.
        return try run(["unshare", "--net", "sh", "-c", "cd '\(directory)' || exit 1\nip link set lo up || exit 1\n" + script], timeout: 30)
    }

    @Test("weft capture on lo sees the datagrams and writes outer and inner pcaps that tcpdump reads")
    func liveCapture() throws {
        try #require(TestEnvironment.hasWeft, "no weft binary at \(TestEnvironment.weftBinary): run swift build first")
        try #require(TestEnvironment.hasTcpdump && TestEnvironment.hasUnshare, "needs tcpdump, unshare and python3")
        let directory = try temporaryDirectory("live")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let weft = TestEnvironment.weftBinary
        let result = try inNamespace("""
            '\(weft)' capture --iface lo --count 5 --duration 15 --write outer.pcap --write-inner inner.pcap 2>capture.err &
            i=0; until grep -q capturing capture.err 2>/dev/null || [ $i -ge 100 ]; do sleep 0.05; i=$((i+1)); done
            python3 send.py
            wait $!; status=$?
            cat capture.err >&2
            exit $status
            """, directory: directory, count: 5)
        #expect(result.status == 0, "\(result.transcript)")
        let lines = result.output.split(separator: "\n")
        #expect(lines.count == 5, "\(result.transcript)")
        #expect(lines.allSatisfy { $0.contains("127.0.0.1:8285 > 127.0.0.1:8285 ICMP 10.244.1.2 > 10.244.2.2") && $0.hasSuffix("ttl 64 valid") }, "\(result.transcript)")
        #expect(result.errorOutput.contains("captured 5"), "\(result.transcript)")

        let report = try FlannelCapture.verify(file: directory + "/outer.pcap")
        #expect(report[.valid] == 5 && report.isValid, "\(report)")
        let outer = try run(["tcpdump", "-nn", "-r", directory + "/outer.pcap"])
        #expect(outer.output.split(separator: "\n").count == 5 && outer.errorOutput.contains("EN10MB"), "\(outer)")
        #expect(outer.output.split(separator: "\n").allSatisfy { $0.contains("IP 127.0.0.1.8285 > 127.0.0.1.8285: UDP, length 84") }, "\(outer)")
        let inner = try run(["tcpdump", "-nn", "-r", directory + "/inner.pcap"])
        #expect(inner.output.split(separator: "\n").count == 5 && inner.errorOutput.contains("RAW"), "\(inner)")
        #expect(inner.output.split(separator: "\n").allSatisfy { $0.contains("IP 10.244.1.2 > 10.244.2.2: ICMP echo request") }, "\(inner)")
    }

    @Test("SIGINT stops a live capture and leaves complete files")
    func interrupt() throws {
        try #require(TestEnvironment.hasWeft && TestEnvironment.hasUnshare, "needs the weft binary, unshare and python3")
        let directory = try temporaryDirectory("sigint")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try inNamespace("""
            '\(TestEnvironment.weftBinary)' capture --iface lo --write outer.pcap --write-inner inner.pcap 2>capture.err &
            pid=$!
            i=0; until grep -q capturing capture.err 2>/dev/null || [ $i -ge 100 ]; do sleep 0.05; i=$((i+1)); done
            python3 send.py
            sleep 0.3
            kill -INT $pid
            wait $pid; status=$?
            cat capture.err >&2
            exit $status
            """, directory: directory, count: 3)
        #expect(result.status == 0, "\(result.transcript)")
        #expect(try FlannelCapture.verify(file: directory + "/outer.pcap")[.valid] == 3)
        let inner = try FlannelCapture.read(file: directory + "/inner.pcap")
        #expect(inner.count == 3)
        #expect(inner.allSatisfy { $0.bytes.withUnsafeBytes { IPv4Header.validate($0) } == nil })
    }

    @Test("Weft reads a file that tcpdump -w wrote on lo")
    func readsTcpdumpFile() throws {
        try #require(TestEnvironment.hasTcpdump && TestEnvironment.hasUnshare, "needs tcpdump, unshare and python3")
        let directory = try temporaryDirectory("tcpdump-w")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try inNamespace("""
            tcpdump -i lo -nn -U -c 4 -w dump.pcap udp port 8285 2>tcpdump.err &
            i=0; until grep -q listening tcpdump.err 2>/dev/null || [ $i -ge 100 ]; do sleep 0.05; i=$((i+1)); done
            python3 send.py
            wait $!; status=$?
            cat tcpdump.err >&2
            exit $status
            """, directory: directory, count: 4)
        #expect(result.status == 0, "\(result.transcript)")
        let frames = try FlannelCapture.read(file: directory + "/dump.pcap")
        #expect(frames.count == 4, "\(result.transcript)")
        #expect(frames.allSatisfy { $0.datagram.verdict == .valid && $0.datagram.innerSource == IPv4Address(10, 244, 1, 2) })
        #expect(try FlannelCapture.verify(file: directory + "/dump.pcap").isValid)
    }
}
