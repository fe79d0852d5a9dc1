import WeftCore
import Glibc
import Synchronization


/// Independent, byte-by-byte RFC 1071 checksum so tests do not trust the code under test.
func referenceChecksum(_ bytes: ArraySlice<UInt8>) -> UInt16 {
    var sum: UInt32 = 0
    var index = bytes.startIndex
    while index < bytes.endIndex {
        let high = UInt32(bytes[index])
        let low = index + 1 < bytes.endIndex ? UInt32(bytes[index + 1]) : 0
        sum += high << 8 | low
        index += 2
    }
    while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
    return ~UInt16(sum)
}

/// True when the header checksum in `bytes[0..<headerLength]` verifies.
func headerChecksumVerifies(_ bytes: [UInt8]) -> Bool {
    let headerLength = Int(bytes[0] & 0x0F) * 4
    return referenceChecksum(bytes[0..<headerLength]) == 0
}

/// A valid IPv4 packet with the given fields and a correct header checksum.
func makePacket(
    source: IPv4Address = IPv4Address(10, 244, 1, 5),
    destination: IPv4Address = IPv4Address(10, 244, 2, 7),
    ttl: UInt8 = 64,
    protocolNumber: UInt8 = 17,
    flagsAndOffset: UInt16 = 0x4000,
    options: [UInt8] = [],
    payload: [UInt8] = Array(repeating: 0xAB, count: 12)
) -> [UInt8] {
    precondition(options.count % 4 == 0)
    let headerLength = 20 + options.count
    let total = headerLength + payload.count
    var bytes: [UInt8] = [
        0x40 | UInt8(headerLength / 4), 0, UInt8(total >> 8), UInt8(total & 0xFF),
        0x12, 0x34, UInt8(flagsAndOffset >> 8), UInt8(flagsAndOffset & 0xFF),
        ttl, protocolNumber, 0, 0,
    ]
    for address in [source, destination] {
        let raw = address.rawValue
        bytes += [UInt8(raw >> 24), UInt8(raw >> 16 & 0xFF), UInt8(raw >> 8 & 0xFF), UInt8(raw & 0xFF)]
    }
    bytes += options
    let checksum = referenceChecksum(bytes[0..<headerLength])
    bytes[10] = UInt8(checksum >> 8)
    bytes[11] = UInt8(checksum & 0xFF)
    return bytes + payload
}

/// Runs `body(index)` on `count` real threads and waits for all of them.
func runOnThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    var threads: [pthread_t] = []
    for index in 0..<count {
        let box = Unmanaged.passRetained(ThreadBody { body(index) })
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { argument in
            let body = Unmanaged<ThreadBody>.fromOpaque(argument!).takeRetainedValue()
            body.run()
            return nil
        }, box.toOpaque())
        precondition(result == 0, "pthread_create failed")
        threads.append(thread)
    }
    for thread in threads {
        pthread_join(thread, nil)
    }
}

final class ThreadBody: @unchecked Sendable {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

/// An atomic Int that escaping thread closures can share (Atomic itself cannot be captured: it is ~Copyable).
final class SharedInt: Sendable {
    let atomic: Atomic<Int>
    init(_ value: Int = 0) { atomic = Atomic(value) }
    func add(_ amount: Int) { atomic.add(amount, ordering: .relaxed) }
    var value: Int { atomic.load(ordering: .acquiring) }
    func store(_ value: Int) { atomic.store(value, ordering: .releasing) }
}

/// One atomic flag per index, for ownership checks.
final class SharedFlags: @unchecked Sendable {
    let flags: UnsafeMutablePointer<Atomic<Bool>>
    let count: Int
    init(count: Int) {
        self.count = count
        flags = .allocate(capacity: count)
        for index in 0..<count { (flags + index).initialize(to: Atomic(false)) }
    }
    deinit {
        flags.deinitialize(count: count)
        flags.deallocate()
    }
    /// Sets the flag; returns its previous value.
    func set(_ index: Int) -> Bool { flags[index].exchange(true, ordering: .acquiringAndReleasing) }
    /// Clears the flag; returns its previous value.
    func clear(_ index: Int) -> Bool { flags[index].exchange(false, ordering: .acquiringAndReleasing) }
}
