import Dispatch
import Glibc
import Synchronization
import WeftCore
import WeftLinux

/// Counts by verdict over a capture.
public struct Report: Sendable, Equatable, CustomStringConvertible {
    /// Frames by verdict, indexed by `Verdict.allCases` order (no hashing per packet).
    private var tally = [Int](repeating: 0, count: Verdict.allCases.count)
    /// Frames by verdict.
    public var counts: [Verdict: Int] {
        Dictionary(uniqueKeysWithValues: Verdict.allCases.enumerated().map { ($0.element, tally[$0.offset]) })
    }
    /// GSO/GRO super-frames among the valid frames, and the datagrams all valid frames stand for.
    public var superFrames = 0
    public var validDatagrams = 0
    public var linkType: Int32 = 0

    public init() {}

    /// The counts over `frames`.
    public init(_ frames: [Frame]) {
        for frame in frames { add(frame.datagram) }
    }

    public subscript(verdict: Verdict) -> Int { tally[verdict.index] }
    /// Packets seen, of any verdict.
    public var total: Int { tally.reduce(0, +) }
    /// Datagrams on the port that break the wire format.
    public var violations: Int { Verdict.allCases.filter(\.isViolation).reduce(0) { $0 + self[$1] } }
    public var isValid: Bool { violations == 0 }

    public mutating func add(_ datagram: FlannelDatagram) {
        tally[datagram.verdict.index] += 1
        guard datagram.verdict == .valid else { return }
        validDatagrams += datagram.segments
        if datagram.segmentSize != nil { superFrames += 1 }
    }

    /// `packets 5 valid 3 portMismatch 1 … violations 2 superFrames 0 validDatagrams 3`: every
    /// verdict, in a fixed order.
    public var description: String {
        (["packets \(total)"] + Verdict.allCases.map { "\($0.rawValue) \(self[$0])" }
            + ["violations \(violations)", "superFrames \(superFrames)", "validDatagrams \(validDatagrams)"])
            .joined(separator: " ")
    }

    /// One JSON object: {"packets":N,"violations":N,"superFrames":N,"validDatagrams":N,"valid":N,...}.
    public var json: String {
        let fields = ["\"packets\":\(total)", "\"violations\":\(violations)", "\"superFrames\":\(superFrames)",
                      "\"validDatagrams\":\(validDatagrams)"]
            + Verdict.allCases.map { "\"\($0.rawValue)\":\(self[$0])" }
        return "{" + fields.joined(separator: ",") + "}"
    }
}

/// One captured frame, copied, with its decoding.
public struct Frame: Sendable, Equatable {
    public var header: PacketHeader
    public var bytes: [UInt8]
    public var datagram: FlannelDatagram

    /// The decapsulated inner packet, for `.valid` datagrams.
    public var innerPacket: ArraySlice<UInt8>? { datagram.innerRange.map { bytes[$0] } }
}

/// The library API: verify files and capture live, with the same decoding as `weft capture`.
public enum FlannelCapture {
    /// Decodes every packet of `file`; throws for a non-pcap, truncated or unsupported file.
    /// `mtu`: the captured link's MTU (see `FlannelDecoder.decode`).
    public static func verify(file: String, port: UInt16 = 8285, mtu: Int = FlannelDecoder.defaultMTU) throws -> Report {
        let reader = try PcapReader(path: file)
        var report = Report()
        report.linkType = reader.linkType
        while try reader.next({ header, bytes in
            report.add(FlannelDecoder.decode(bytes, wireLength: header.wireLength, linkType: reader.linkType, port: port, mtu: mtu))
        }) {}
        return report
    }

    /// Writes the decapsulated inner packets of every valid datagram in `file` to `innerFile`
    /// (LINKTYPE_RAW) and returns the counts.
    @discardableResult
    public static func decapsulate(file: String, to innerFile: String, port: UInt16 = 8285,
                                   mtu: Int = FlannelDecoder.defaultMTU) throws -> Report {
        let reader = try PcapReader(path: file)
        let inner = try PcapWriter(path: innerFile, linkType: LinkType.raw, snapLength: 262_144)
        defer { inner.close() }
        var report = Report()
        report.linkType = reader.linkType
        while try reader.next({ header, bytes in
            let datagram = FlannelDecoder.decode(bytes, wireLength: header.wireLength, linkType: reader.linkType, port: port, mtu: mtu)
            report.add(datagram)
            inner.writeInnerPackets(of: datagram, in: bytes, header: header)
        }) {}
        return report
    }

    /// Reads and decodes every packet of `file`.
    public static func read(file: String, port: UInt16 = 8285, mtu: Int = FlannelDecoder.defaultMTU) throws -> [Frame] {
        let reader = try PcapReader(path: file)
        var frames: [Frame] = []
        while try reader.next({ header, bytes in
            let datagram = FlannelDecoder.decode(bytes, wireLength: header.wireLength, linkType: reader.linkType, port: port, mtu: mtu)
            frames.append(Frame(header: header, bytes: Array(bytes), datagram: datagram))
        }) {}
        return frames
    }

    /// Captures on `interface` (filter `udp port <port>` unless given) until `count` packets or
    /// `duration` seconds, whichever comes first; writes the outer and inner pcaps when paths are given.
    public static func capture(interface: String, port: UInt16 = 8285, filter: String? = nil, namespace: String? = nil,
                               count: Int? = nil, duration: Double? = nil, writeOuter: String? = nil,
                               writeInner: String? = nil) throws -> [Frame] {
        try BackgroundCapture(interface: interface, port: port, filter: filter, namespace: namespace, count: count,
                              duration: duration, writeOuter: writeOuter, writeInner: writeInner).wait()
    }
}

/// A live capture on a thread of its own: capturing when `init` returns, so a caller can start
/// traffic right after, then `wait()` for the frames. What the integration tests use.
public final class BackgroundCapture: @unchecked Sendable {
    private let session: CaptureSession
    private let done = DispatchSemaphore(value: 0)
    private let state = Mutex<(frames: [Frame], error: (any Error)?)>(([], nil))

    /// Stops after `count` packets or `duration` seconds (default 10), whichever comes first.
    public init(interface: String, port: UInt16 = 8285, filter: String? = nil, namespace: String? = nil,
                count: Int? = nil, duration: Double? = 10, writeOuter: String? = nil, writeInner: String? = nil) throws {
        let session = try CaptureSession(interface: interface, port: port, filter: filter, namespace: namespace,
                                         writeOuter: writeOuter, writeInner: writeInner)
        self.session = session
        // The thread holds `self` until the capture ends.
        DispatchQueue.global().async { [self] in
            do {
                try session.run(count: count, duration: duration) { header, bytes, datagram in
                    let frame = Frame(header: header, bytes: Array(bytes), datagram: datagram)
                    state.withLock { $0.frames.append(frame) }
                }
            } catch {
                state.withLock { $0.error = error }
            }
            session.close()
            done.signal()
        }
    }

    /// Ends the capture early (within 100 ms); `wait()` then returns what it has.
    public func stop() { session.stop() }

    /// Blocks until the capture ends; its frames, or the error that ended it.
    public func wait() throws -> [Frame] {
        done.wait()
        done.signal()
        return try state.withLock { state in
            if let error = state.error { throw error }
            return state.frames
        }
    }
}

/// A live capture with its output files: what `weft capture --iface` runs.
public final class CaptureSession: @unchecked Sendable {
    public let capture: LiveCapture
    public let port: UInt16
    public let outer: PcapWriter?
    public let inner: PcapWriter?
    public private(set) var report = Report()

    public init(interface: String, port: UInt16 = 8285, filter: String? = nil, namespace: String? = nil,
                writeOuter: String? = nil, writeInner: String? = nil) throws {
        let capture = try LiveCapture(interface: interface, filter: filter ?? "udp port \(port)", namespace: namespace)
        self.capture = capture
        self.port = port
        outer = try writeOuter.map { try PcapWriter(path: $0, linkType: capture.linkType, snapLength: capture.snapLength) }
        inner = try writeInner.map { try PcapWriter(path: $0, linkType: LinkType.raw, snapLength: capture.snapLength) }
    }

    /// Runs until `count` packets, `duration` seconds, `stop()` or `shouldStop()`.
    public func run(count: Int? = nil, duration: Double? = nil, shouldStop: () -> Bool = { false }, idle: () -> Void = {},
                    _ body: (PacketHeader, UnsafeRawBufferPointer, FlannelDatagram) throws -> Void) throws {
        let deadline = duration.map { MonotonicClock.seconds() + $0 }
        var seen = 0
        try capture.run(shouldStop: { shouldStop() || (deadline.map { MonotonicClock.seconds() >= $0 } ?? false) }, idle: idle) { header, bytes in
            let datagram = FlannelDecoder.decode(bytes, wireLength: header.wireLength, linkType: capture.linkType, port: port, mtu: capture.mtu)
            report.add(datagram)
            outer?.write(bytes, header: header)
            inner?.writeInnerPackets(of: datagram, in: bytes, header: header)
            try body(header, bytes, datagram)
            seen += 1
            return count.map { seen < $0 } ?? true
        }
    }

    public func stop() { capture.stop() }

    /// Flushes both files (for a live view of them).
    public func flush() {
        outer?.flush()
        inner?.flush()
    }

    /// Closes the files and the capture.
    public func close() {
        outer?.close()
        inner?.close()
        capture.close()
    }
}

/// The one-line description of a packet, as `weft capture` prints it:
/// `10:11:01.123456 198.18.0.2:8285 > 198.18.0.1:8285 ICMP 10.244.1.2 > 10.244.2.2 len 112/84 ttl 63 valid`.
public func describe(_ header: PacketHeader, _ datagram: FlannelDatagram) -> String {
    var seconds = time_t(header.seconds)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
    var micro = String(header.microseconds)
    micro = String(repeating: "0", count: max(0, 6 - micro.count)) + micro
    var line = "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(micro)"
    if let source = datagram.outerSource, let destination = datagram.outerDestination {
        let sourcePort = datagram.sourcePort.map { ":\($0)" } ?? ""
        let destinationPort = datagram.destinationPort.map { ":\($0)" } ?? ""
        line += " \(source)\(sourcePort) > \(destination)\(destinationPort)"
        // Not flannel-udp (a pod's own packet on the TUN, say): name its protocol instead.
        if let proto = datagram.outerProtocol, proto != 17 { line += " " + protocolName(proto) }
    } else {
        line += " -"
    }
    if let innerSource = datagram.innerSource, let innerDestination = datagram.innerDestination, let proto = datagram.innerProtocol {
        line += " \(protocolName(proto)) \(innerSource) > \(innerDestination)"
    }
    line += " len \(header.wireLength)"
    if let payload = datagram.payloadLength { line += " payload \(payload)" }
    if let innerLength = datagram.innerTotalLength { line += " inner \(innerLength)" }
    if let ttl = datagram.innerTTL { line += " ttl \(ttl)" }
    if let size = datagram.segmentSize { line += " gso \(datagram.segments)x\(size)" }
    line += " " + datagram.verdict.rawValue
    return line
}

/// "ICMP", "TCP", "UDP" or "proto N".
public func protocolName(_ number: UInt8) -> String {
    switch number {
    case 1: "ICMP"
    case 6: "TCP"
    case 17: "UDP"
    default: "proto \(number)"
    }
}

extension PcapWriter {
    /// Writes the inner packets of a valid datagram, each as one record with the frame's time: a
    /// super-frame's datagrams each become one inner packet, as the peer receives them.
    public func writeInnerPackets(of datagram: FlannelDatagram, in frame: UnsafeRawBufferPointer, header: PacketHeader) {
        for range in datagram.innerPacketRanges {
            let packet = UnsafeRawBufferPointer(rebasing: frame[range])
            write(packet, header: PacketHeader(seconds: header.seconds, microseconds: header.microseconds,
                                               capturedLength: packet.count, wireLength: packet.count))
        }
    }
}
