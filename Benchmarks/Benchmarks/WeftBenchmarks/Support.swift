import Dispatch
import Glibc
import Synchronization
import WeftCore


/// Writes a valid IPv4/UDP packet (no options, DF set, correct header checksum, UDP checksum 0)
/// of `20 + 8 + payloadLength` bytes at `base` and returns its length.
@discardableResult
func writeUDPPacket(
    at base: UnsafeMutableRawPointer,
    source: IPv4Address,
    destination: IPv4Address,
    sourcePort: UInt16 = 40000,
    destinationPort: UInt16 = 9,
    ttl: UInt8 = 64,
    payloadLength: Int
) -> Int {
    let total = 28 + payloadLength
    precondition(total <= Int(UInt16.max))
    let header: [UInt8] = [
        0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF),
        0x12, 0x34, 0x40, 0x00,
        ttl, 17, 0, 0,
    ]
    header.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: 12) }
    source.store(networkOrderTo: base + 12)
    destination.store(networkOrderTo: base + 16)
    let checksum = InternetChecksum.checksum(UnsafeRawBufferPointer(start: base, count: 20))
    base.storeBytes(of: checksum.bigEndian, toByteOffset: 10, as: UInt16.self)
    base.storeBytes(of: sourcePort.bigEndian, toByteOffset: 20, as: UInt16.self)
    base.storeBytes(of: destinationPort.bigEndian, toByteOffset: 22, as: UInt16.self)
    base.storeBytes(of: UInt16(8 + payloadLength).bigEndian, toByteOffset: 24, as: UInt16.self)
    base.storeBytes(of: UInt16(0), toByteOffset: 26, as: UInt16.self)
    for index in 0..<payloadLength {
        base.storeBytes(of: UInt8(truncatingIfNeeded: index), toByteOffset: 28 + index, as: UInt8.self)
    }
    return total
}

/// Writes what a TUN with offloads (TSO, TUN_F_CSUM) hands over for a bulk TCP flow: a 10-byte
/// virtio-net header (GSO TCPv4, NEEDS_CSUM, gso_size `segmentSize`) and an IPv4/TCP
/// super-packet of `segments` × `segmentSize` payload bytes with a valid IPv4 header checksum
/// and, as CHECKSUM_PARTIAL leaves it, only the pseudo-header sum in the TCP checksum. Returns
/// the bytes written.
@discardableResult
func writeTCPSuperPacket(
    at base: UnsafeMutableRawPointer,
    source: IPv4Address,
    destination: IPv4Address,
    sourcePort: UInt16,
    segments: Int,
    segmentSize: Int
) -> Int {
    let headerLength = 40
    let total = headerLength + segments * segmentSize
    precondition(total <= Int(UInt16.max))
    VirtioNetHeader(
        flags: VirtioNetHeader.needsChecksum, gsoType: VirtioNetHeader.gsoTCPv4,
        headerLength: UInt16(headerLength), gsoSize: UInt16(segmentSize),
        checksumStart: 20, checksumOffset: 16
    ).store(to: base)
    let ip = base + VirtioNetHeader.size
    let header: [UInt8] = [
        0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF),
        0x12, 0x34, 0x40, 0x00,
        64, 6, 0, 0,
    ]
    header.withUnsafeBytes { ip.copyMemory(from: $0.baseAddress!, byteCount: 12) }
    source.store(networkOrderTo: ip + 12)
    destination.store(networkOrderTo: ip + 16)
    let checksum = InternetChecksum.checksum(UnsafeRawBufferPointer(start: ip, count: 20))
    ip.storeBytes(of: checksum.bigEndian, toByteOffset: 10, as: UInt16.self)
    let tcp = ip + 20
    tcp.storeBytes(of: sourcePort.bigEndian, as: UInt16.self)
    tcp.storeBytes(of: UInt16(5201).bigEndian, toByteOffset: 2, as: UInt16.self)
    tcp.storeBytes(of: UInt32(1_000_000).bigEndian, toByteOffset: 4, as: UInt32.self)
    tcp.storeBytes(of: UInt32(1).bigEndian, toByteOffset: 8, as: UInt32.self)
    tcp.storeBytes(of: UInt8(5 << 4), toByteOffset: 12, as: UInt8.self)
    tcp.storeBytes(of: UInt8(0x18), toByteOffset: 13, as: UInt8.self)  // ACK, PSH
    tcp.storeBytes(of: UInt16(65535).bigEndian, toByteOffset: 14, as: UInt16.self)
    tcp.storeBytes(of: UInt16(0), toByteOffset: 18, as: UInt16.self)
    // Pseudo-header: source, destination, protocol 6, TCP length.
    var pseudo = [UInt8](repeating: 0, count: 12)
    pseudo.withUnsafeMutableBytes { bytes in
        bytes.baseAddress!.copyMemory(from: ip + 12, byteCount: 8)
        bytes[9] = 6
        bytes.storeBytes(of: UInt16(total - 20).bigEndian, toByteOffset: 10, as: UInt16.self)
    }
    let pseudoSum = pseudo.withUnsafeBytes { InternetChecksum.partialSum($0) }
    tcp.storeBytes(of: pseudoSum.bigEndian, toByteOffset: 16, as: UInt16.self)
    for index in 0..<(segments * segmentSize) {
        ip.storeBytes(of: UInt8(truncatingIfNeeded: index &* 7), toByteOffset: headerLength + index, as: UInt8.self)
    }
    return VirtioNetHeader.size + total
}

/// Prebuilt packets in one 64-byte-aligned region, each in its own fixed-size cell.
final class PacketSet: @unchecked Sendable {
    let count: Int
    private let stride: Int
    private let region: UnsafeMutableRawPointer
    private let lengths: UnsafeMutablePointer<Int>

    /// `count` packets of at most `maxLength` bytes, each written by `build(index, cell)`, which
    /// returns the packet's length.
    init(count: Int, maxLength: Int, build: (Int, UnsafeMutableRawPointer) -> Int) {
        self.count = count
        stride = (maxLength + 63) & ~63
        region = .allocate(byteCount: count * stride, alignment: 64)
        region.initializeMemory(as: UInt8.self, repeating: 0, count: count * stride)
        lengths = .allocate(capacity: count)
        for index in 0..<count {
            let length = build(index, region + index * stride)
            precondition(length <= maxLength)
            (lengths + index).initialize(to: length)
        }
    }

    deinit {
        region.deallocate()
        lengths.deallocate()
    }

    @inline(__always)
    func packet(_ index: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: region + index * stride, count: lengths[index])
    }

    @inline(__always)
    func mutablePacket(_ index: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: region + index * stride, count: lengths[index])
    }
}

/// A long-lived helper thread for the handoff benchmarks. Starting a thread per iteration would
/// allocate and be measured; this one is started in setup and given jobs through a semaphore.
final class HelperThread: @unchecked Sendable {
    private let start = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private let stopping = Atomic<Bool>(false)
    private let count = Atomic<Int>(0)
    private let job: (Int) -> Void
    private var thread = pthread_t()

    /// The CPU the thread pins itself to, if any.
    private let cpu: Int?

    /// `job(count)` runs on the helper each time `begin(count)` is called; with `cpu` the thread
    /// first pins itself to that CPU (when the machine has it).
    init(cpu: Int? = nil, _ job: @escaping (Int) -> Void) {
        self.job = job
        self.cpu = cpu
        let box = Unmanaged.passRetained(self)
        let result = pthread_create(&thread, nil, { argument in
            let helper = Unmanaged<HelperThread>.fromOpaque(argument!).takeRetainedValue()
            helper.loop()
            return nil
        }, box.toOpaque())
        precondition(result == 0, "pthread_create failed")
    }

    private func loop() {
        if let cpu { _ = pinCurrentThread(to: cpu) }
        while true {
            start.wait()
            if stopping.load(ordering: .acquiring) { return }
            job(count.load(ordering: .acquiring))
            finished.signal()
        }
    }

    /// Starts the job with `count`; returns at once.
    func begin(_ count: Int) {
        self.count.store(count, ordering: .releasing)
        start.signal()
    }

    /// Waits for the job started by `begin`.
    func wait() {
        finished.wait()
    }

    /// Ends the thread and joins it.
    func stop() {
        stopping.store(true, ordering: .releasing)
        start.signal()
        pthread_join(thread, nil)
    }
}

/// Spins briefly, then yields the core: two threads spinning on two shared cores would otherwise
/// burn a whole scheduler quantum each time the other side is preempted.
@inline(__always)
func backOff(_ attempts: inout Int) {
    attempts += 1
    if attempts & 127 == 0 { sched_yield() }
}

// sched_setaffinity(2) is not in the Glibc module (it needs _GNU_SOURCE).
private typealias SetAffinity = @convention(c) (pid_t, Int, UnsafeRawPointer) -> Int32
private let setAffinity = dlsym(nil, "sched_setaffinity").map { unsafeBitCast($0, to: SetAffinity.self) }

/// Pins the calling thread to `cpu`; false when there is no such CPU or the call failed.
@discardableResult
func pinCurrentThread(to cpu: Int) -> Bool {
    guard let setAffinity, cpu >= 0, cpu < sysconf(Int32(_SC_NPROCESSORS_ONLN)), cpu < 1024 else { return false }
    return withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 16) { mask in
        mask.initialize(repeating: 0)
        mask[cpu / 64] = 1 << UInt64(cpu % 64)
        return setAffinity(0, 16 * MemoryLayout<UInt64>.size, UnsafeRawPointer(mask.baseAddress!)) == 0
    }
}
