import ArgumentParser
import Glibc
import WeftCapture
import WeftLinux

/// `weft capture`: capture flannel-udp traffic live, read a pcap, or verify one.
struct CaptureCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capture",
        abstract: "Capture, read or verify flannel-udp traffic with libpcap.",
        discussion: """
            One line per packet on stdout: time, outer source:port > destination:port, the inner \
            protocol and addresses, lengths (len = on the wire, payload = UDP payload, inner = inner \
            total length), inner TTL, and a verdict: valid, portMismatch, notIPv4Payload, \
            badInnerChecksum, lengthMismatch, truncated (violations), or notUDP, otherPort \
            (other traffic).

            --write keeps the outer frames with the interface's link type; --write-inner keeps the \
            decapsulated inner IPv4 packets (LINKTYPE_RAW), so any pcap tool shows pod-to-pod \
            traffic. While writing files, counts go to stderr every second. Ctrl-C closes the \
            files cleanly. Live capture needs root or CAP_NET_RAW.

            A capture taps the stack before GSO cuts a send into datagrams and after GRO merges \
            received ones, so a UDP datagram longer than the link's MTU is judged as the \
            datagrams it stands for (shown as "gso NxSIZE"): each one IPv4 packet of SIZE bytes, \
            the last possibly shorter.

            --verify exits non-zero when any datagram on the port breaks the wire format.

            Examples:
              weft capture --iface eth0 --write outer.pcap --write-inner inner.pcap
              weft capture --iface flannel0 --filter icmp --count 10
              weft capture --read outer.pcap
              weft capture --read outer.pcap --write-inner inner.pcap
              weft capture --verify outer.pcap --json
            """
    )

    @Option(help: ArgumentHelp("Interface to capture on (live).", valueName: "name"))
    var iface: String?

    @Option(help: ArgumentHelp("Read a pcap file and print its packets.", valueName: "file"))
    var read: String?

    @Option(help: ArgumentHelp("Check that every datagram on the port in a pcap file is valid flannel-udp.", valueName: "file"))
    var verify: String?

    @Option(help: ArgumentHelp("flannel's UDP port.", valueName: "port"))
    var port: UInt16 = 8285

    @Option(help: ArgumentHelp("Kernel BPF filter (pcap syntax). Default: udp port <port>.", valueName: "expr"))
    var filter: String?

    @Option(help: ArgumentHelp("Stop after this many packets.", valueName: "n"))
    var count: Int?

    @Option(help: ArgumentHelp("Stop after this many seconds.", valueName: "seconds"))
    var duration: Double?

    @Option(name: .customLong("write"), help: ArgumentHelp("Write the captured frames to this pcap file.", valueName: "outer.pcap"))
    var writeOuter: String?

    @Option(name: .customLong("write-inner"), help: ArgumentHelp("Write the decapsulated inner IPv4 packets to this pcap file (LINKTYPE_RAW); live, or from a file with --read.", valueName: "inner.pcap"))
    var writeInner: String?

    @Option(help: ArgumentHelp("With --read or --verify: the captured link's MTU. A longer UDP datagram on the port is taken as a GSO/GRO super-frame and judged as the datagrams it is cut into (live captures use the interface's MTU).", valueName: "bytes"))
    var mtu: Int = FlannelDecoder.defaultMTU

    @Flag(help: "With --verify: print the counts as one JSON object.")
    var json = false

    func validate() throws {
        let modes = [iface, read, verify].compactMap { $0 }.count
        guard modes == 1 else { throw ValidationError("give exactly one of --iface, --read, --verify") }
        if iface == nil, filter != nil || count != nil || duration != nil || writeOuter != nil {
            throw ValidationError("--filter, --count, --duration and --write need --iface")
        }
        if writeInner != nil, verify != nil { throw ValidationError("--write-inner goes with --iface or --read") }
        if json, verify == nil { throw ValidationError("--json needs --verify") }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        if let duration, !(duration > 0) { throw ValidationError("--duration must be positive seconds") }
        if port == 0 { throw ValidationError("--port must be 1 to 65535") }
        if !(68...65_535).contains(mtu) { throw ValidationError("--mtu must be 68 to 65535") }
    }

    func run() throws {
        if let read { try readFile(read) } else if let verify { try verifyFile(verify) } else if let iface { try live(iface) }
    }

    private func readFile(_ path: String) throws {
        let reader: PcapReader
        do { reader = try PcapReader(path: path) } catch { throw RunError("\(error)") }
        let inner: PcapWriter?
        do { inner = try writeInner.map { try PcapWriter(path: $0, linkType: LinkType.raw, snapLength: 262_144) } } catch { throw RunError("\(error)") }
        defer {
            inner?.close()
            fflush(packetOutput)
        }
        var report = Report()
        do {
            while try reader.next({ header, bytes in
                let datagram = FlannelDecoder.decode(bytes, wireLength: header.wireLength, linkType: reader.linkType, port: port, mtu: mtu)
                report.add(datagram)
                inner?.writeInnerPackets(of: datagram, in: bytes, header: header)
                printPacketLine(describe(header, datagram))
            }) {}
        } catch {
            throw RunError("\(error) (after \(report.total) packets)")
        }
        printError("\(path): link type \(linkTypeName(reader.linkType)): \(report)" + (writeInner.map { "; wrote \($0)" } ?? ""))
    }

    private func verifyFile(_ path: String) throws {
        let report: Report
        do { report = try FlannelCapture.verify(file: path, port: port, mtu: mtu) } catch { throw RunError("\(error)") }
        printLine(json ? report.json : "\(path): \(report)")
        if !report.isValid {
            let onPort = report.total - report[.notUDP] - report[.otherPort]
            throw RunError("\(path): \(report.violations) of \(onPort) datagrams on port \(port) break the flannel-udp wire format")
        }
    }

    private func live(_ interface: String) throws {
        let session: CaptureSession
        do {
            session = try CaptureSession(interface: interface, port: port, filter: filter, writeOuter: writeOuter, writeInner: writeInner)
        } catch { throw RunError("\(error)") }
        // The capture loop looks at it at least every 100 ms.
        let signals: SignalWatch
        do { signals = try SignalWatch([SIGINT, SIGTERM]) } catch { throw RunError("\(error)") }
        defer { signals.cancel() }
        let writing = writeOuter != nil || writeInner != nil
        printError("capturing on \(interface) (link type \(linkTypeName(session.capture.linkType)), filter '\(filter ?? "udp port \(port)")')")
        var lastCounts = MonotonicClock.seconds()
        defer { fflush(packetOutput) }
        func showCounts() {
            guard writing, MonotonicClock.seconds() - lastCounts >= 1 else { return }
            lastCounts = MonotonicClock.seconds()
            session.flush()
            printError("captured \(session.report.total): valid \(session.report[.valid]), violations \(session.report.violations)")
        }
        do {
            try session.run(count: count, duration: duration, shouldStop: { signals.received != nil },
                            idle: { fflush(packetOutput); showCounts() }) { header, _, datagram in
                printPacketLine(describe(header, datagram))
                showCounts()
            }
        } catch {
            session.close()
            throw RunError("\(error)")
        }
        let statistics = session.capture.statistics
        session.close()
        var summary = "captured \(session.report.total) (\(session.report))"
        if let statistics { summary += "; kernel: recv=\(statistics.received) drop=\(statistics.dropped)" }
        if let writeOuter { summary += "; wrote \(writeOuter)" }
        if let writeInner { summary += "; wrote \(writeInner)" }
        printError(summary)
    }
}

/// One packet's line through stdio: buffered when stdout is a file or a pipe (one write per
/// buffer, not per packet, so a busy capture costs the forwarder less CPU), line-buffered on a
/// terminal. The capture loop flushes whenever it goes idle.
private func printPacketLine(_ text: String) {
    fputs(text, packetOutput)
    fputc(0x0A, packetOutput)
}

/// A stdio stream on standard output of our own; only the capture loop's thread uses it.
nonisolated(unsafe) private let packetOutput: UnsafeMutablePointer<FILE> = fdopen(1, "w")
