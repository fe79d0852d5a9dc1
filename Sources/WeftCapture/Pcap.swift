import CPcap
import Glibc
import WeftLinux
import Synchronization

/// A libpcap failure, as one line.
public struct PcapError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One packet's pcap record header: time and lengths.
public struct PacketHeader: Sendable, Equatable {
    public var seconds: Int
    public var microseconds: Int
    public var capturedLength: Int
    public var wireLength: Int

    public init(seconds: Int, microseconds: Int, capturedLength: Int, wireLength: Int) {
        self.seconds = seconds
        self.microseconds = microseconds
        self.capturedLength = capturedLength
        self.wireLength = wireLength
    }

    /// The current time, for packets written as they are seen.
    public static func now(capturedLength: Int, wireLength: Int) -> PacketHeader {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return PacketHeader(seconds: time.tv_sec, microseconds: time.tv_nsec / 1000, capturedLength: capturedLength, wireLength: wireLength)
    }
}

/// A libpcap error buffer's text.
func errorText(_ buffer: [CChar]) -> String {
    buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

/// A name for a link type, e.g. "EN10MB" or "RAW".
public func linkTypeName(_ linkType: Int32) -> String {
    if let name = pcap_datalink_val_to_name(linkType) { return String(cString: name) }
    return "\(linkType)"
}

/// Writes a pcap file of packets the program holds: `pcap_open_dead` + `pcap_dump_open`. No privileges.
public final class PcapWriter {
    private var handle: OpaquePointer?
    private var dumper: OpaquePointer?
    public let path: String
    public let linkType: Int32
    public private(set) var packets = 0

    /// `linkType` is a DLT value: `LinkType.raw` (12) writes LINKTYPE_RAW files of bare IPv4 packets.
    public init(path: String, linkType: Int32, snapLength: Int32 = 262_144) throws {
        self.path = path
        self.linkType = linkType
        guard let handle = pcap_open_dead(linkType, snapLength) else {
            throw PcapError("\(path): cannot open a pcap writer for link type \(linkTypeName(linkType))")
        }
        guard let dumper = pcap_dump_open(handle, path) else {
            let message = String(cString: pcap_geterr(handle))
            pcap_close(handle)
            throw PcapError("\(path): cannot write: \(message)")
        }
        self.handle = handle
        self.dumper = dumper
    }

    /// Appends one record; `bytes` are the captured bytes (at most the snap length).
    public func write(_ bytes: UnsafeRawBufferPointer, header: PacketHeader) {
        guard let dumper, let base = bytes.baseAddress else { return }
        var record = pcap_pkthdr(
            ts: timeval(tv_sec: header.seconds, tv_usec: header.microseconds),
            caplen: bpf_u_int32(bytes.count), len: bpf_u_int32(max(header.wireLength, bytes.count)))
        pcap_dump(UnsafeMutableRawPointer(dumper).assumingMemoryBound(to: UInt8.self), &record,
                  base.assumingMemoryBound(to: UInt8.self))
        packets += 1
    }

    /// Appends one record from an array.
    public func write(_ bytes: [UInt8], header: PacketHeader) {
        bytes.withUnsafeBytes { write($0, header: header) }
    }

    /// Pushes buffered records to the file.
    public func flush() {
        if let dumper { pcap_dump_flush(dumper) }
    }

    /// Flushes and closes; further writes are ignored.
    public func close() {
        if let dumper { pcap_dump_close(dumper) }
        if let handle { pcap_close(handle) }
        dumper = nil
        handle = nil
    }

    deinit { close() }
}

/// Reads a pcap (or pcapng) file with `pcap_open_offline`.
public final class PcapReader {
    private var handle: OpaquePointer?
    public let path: String
    public let linkType: Int32
    public let snapLength: Int32

    /// Throws a clear error for a missing, non-pcap or truncated file, and for a link type Weft
    /// cannot decode.
    public init(path: String, requireSupportedLinkType: Bool = true) throws {
        self.path = path
        var errors = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
        guard let handle = pcap_open_offline(path, &errors) else {
            let message = errorText(errors)
            if message.contains("unknown file format") || message.contains("bad dump file format") {
                throw PcapError("\(path): not a pcap file (\(message))")
            }
            // libpcap's message for a file it cannot open already starts with the path.
            throw PcapError(message.hasPrefix(path) ? message : "\(path): \(message)")
        }
        self.handle = handle
        linkType = pcap_datalink(handle)
        snapLength = pcap_snapshot(handle)
        if requireSupportedLinkType, !LinkType.isSupported(linkType) {
            pcap_close(handle)
            self.handle = nil
            throw PcapError("\(path): link type \(linkTypeName(linkType)) (\(linkType)) is not supported; Weft decodes \(LinkType.supportedNames)")
        }
    }

    /// Calls `body` with the next packet; false at the end of the file. Throws on a truncated
    /// or damaged record.
    public func next(_ body: (PacketHeader, UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
        guard let handle else { return false }
        var header: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<UInt8>?
        let status = pcap_next_ex(handle, &header, &data)
        switch status {
        case 1:
            guard let header, let data else { return true }
            let record = header.pointee
            let packet = PacketHeader(seconds: Int(record.ts.tv_sec), microseconds: Int(record.ts.tv_usec),
                                      capturedLength: Int(record.caplen), wireLength: Int(record.len))
            try body(packet, UnsafeRawBufferPointer(start: data, count: Int(record.caplen)))
            return true
        case PCAP_ERROR_BREAK:
            return false
        default:
            throw PcapError("\(path): \(String(cString: pcap_geterr(handle)))")
        }
    }

    public func close() {
        if let handle { pcap_close(handle) }
        handle = nil
    }

    deinit { close() }
}

/// Kernel counters of a live capture.
public struct CaptureStatistics: Sendable, Equatable {
    public var received: Int
    public var dropped: Int
    public var interfaceDropped: Int
}

/// A live capture: `pcap_create`, snap length, promiscuous off, 100 ms blocks, non-blocking,
/// activate, then a kernel BPF filter. Needs root or CAP_NET_RAW.
public final class LiveCapture: @unchecked Sendable {
    private var handle: OpaquePointer?
    public let interface: String
    public let linkType: Int32
    public let snapLength: Int32
    /// The interface's MTU, to tell GSO/GRO super-frames from datagrams.
    public let mtu: Int
    private let stopFlag = Atomic<Bool>(false)

    /// `namespace`: the path of a network namespace (`/run/netns/NAME`) to open the capture in;
    /// the capture stays there while this thread returns to its own.
    public init(interface: String, filter: String, snapLength: Int32 = 262_144, namespace: String? = nil) throws {
        self.interface = interface
        self.snapLength = snapLength
        func open() throws -> (OpaquePointer, Int) {
            let handle = try Self.activate(interface, filter: filter, snapLength: snapLength)
            // "any" and other pseudo devices have no MTU of their own: assume Ethernet's.
            return (handle, (try? NetworkInterface.named(interface).mtu) ?? FlannelDecoder.defaultMTU)
        }
        let (handle, mtu) = try namespace.map { path in try NetworkNamespace.withEntered(path: path, open) } ?? open()
        self.handle = handle
        self.mtu = mtu
        linkType = pcap_datalink(handle)
    }

    /// An active, filtered, non-blocking pcap handle on `interface`.
    private static func activate(_ interface: String, filter: String, snapLength: Int32) throws -> OpaquePointer {
        var errors = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
        guard let handle = pcap_create(interface, &errors) else {
            throw PcapError("capture on \(interface): \(errorText(errors))")
        }
        pcap_set_snaplen(handle, snapLength)
        pcap_set_promisc(handle, 0)
        // Not immediate mode: the kernel hands over blocks of packets, at the latest every 100 ms,
        // instead of waking us for every packet, which cost a busy forwarder a quarter of its
        // throughput on two cores. A 16 MiB ring rides out the gaps.
        pcap_set_timeout(handle, 100)
        pcap_set_buffer_size(handle, 16 << 20)
        let status = pcap_activate(handle)
        if status < 0 {
            var message = String(cString: pcap_geterr(handle))
            if message.isEmpty { message = String(cString: pcap_statustostr(status)) }
            if status == PCAP_ERROR_PERM_DENIED { message += " (capture needs root or CAP_NET_RAW)" }
            pcap_close(handle)
            throw PcapError("capture on \(interface): \(message)")
        }
        var program = bpf_program()
        guard pcap_compile(handle, &program, filter, 1, PCAP_NETMASK_UNKNOWN) == 0 else {
            let message = String(cString: pcap_geterr(handle))
            pcap_close(handle)
            throw PcapError("filter '\(filter)': \(message)")
        }
        defer { pcap_freecode(&program) }
        guard pcap_setfilter(handle, &program) == 0 else {
            let message = String(cString: pcap_geterr(handle))
            pcap_close(handle)
            throw PcapError("filter '\(filter)': \(message)")
        }
        // libpcap's own read timeout does not always return to the caller on an idle interface
        // (seen with Debian's 1.10 in immediate mode), so reads are non-blocking and `run` waits
        // in poll(2) with its own timeout.
        guard pcap_setnonblock(handle, 1, &errors) == 0, pcap_get_selectable_fd(handle) >= 0 else {
            pcap_close(handle)
            throw PcapError("capture on \(interface): \(errorText(errors))")
        }
        return handle
    }

    /// Asks `run` to return once it has drained what arrived before (about 250 ms); safe from any thread.
    public func stop() { stopFlag.store(true, ordering: .relaxed) }

    /// Hands packets to `body` until `stop()`, `shouldStop()` returns true, or `body` returns false.
    /// `idle` is called on each timeout with no packet.
    public func run(shouldStop: () -> Bool = { false }, idle: () -> Void = {},
                    _ body: (PacketHeader, UnsafeRawBufferPointer) throws -> Bool) throws {
        guard let handle else { return }
        // Packets wait in a block the kernel hands over within 100 ms, so a stop drains for
        // 250 ms before returning: what crossed the wire before the stop is not lost.
        var drainUntil: UInt64?
        while true {
            if drainUntil == nil, stopFlag.load(ordering: .relaxed) || shouldStop() {
                drainUntil = MonotonicClock.nanoseconds() + 250_000_000
            }
            if let drainUntil, MonotonicClock.nanoseconds() >= drainUntil { return }
            var header: UnsafeMutablePointer<pcap_pkthdr>?
            var data: UnsafePointer<UInt8>?
            let status = pcap_next_ex(handle, &header, &data)
            if status == 1, let header, let data {
                let record = header.pointee
                let packet = PacketHeader(seconds: Int(record.ts.tv_sec), microseconds: Int(record.ts.tv_usec),
                                          capturedLength: Int(record.caplen), wireLength: Int(record.len))
                if try !body(packet, UnsafeRawBufferPointer(start: data, count: Int(record.caplen))) { return }
            } else if status == 0 {
                // Nothing queued: sleep until a packet arrives, a signal interrupts, or 50 ms pass.
                var waiting = pollfd(fd: pcap_get_selectable_fd(handle), events: Int16(POLLIN), revents: 0)
                if poll(&waiting, 1, 50) == 0, drainUntil == nil { idle() }
            } else if status == PCAP_ERROR_BREAK {
                return
            } else {
                throw PcapError("capture on \(interface): \(String(cString: pcap_geterr(handle)))")
            }
        }
    }

    /// The kernel's counters so far.
    public var statistics: CaptureStatistics? {
        guard let handle else { return nil }
        var stats = pcap_stat()
        guard pcap_stats(handle, &stats) == 0 else { return nil }
        return CaptureStatistics(received: Int(stats.ps_recv), dropped: Int(stats.ps_drop), interfaceDropped: Int(stats.ps_ifdrop))
    }

    public func close() {
        if let handle { pcap_close(handle) }
        handle = nil
    }

    deinit { close() }
}
