import Dispatch
import Glibc
import Synchronization
import WeftCore
import WeftLinux

/// How much of the kernel's segmentation offload the data path uses. One choice, because the
/// slot size, the TUN's virtio-net header and the send path all follow from it.
public enum Offload: Sendable, Equatable, CustomStringConvertible {
    /// One packet per system call everywhere (`--no-offload`): slots sized for the path MTU.
    case off
    /// The TUN hands over and takes TCP super-packets (TSO, a virtio-net header before every
    /// packet) and the socket receives UDP GRO runs, so slots hold 64 KiB; every datagram is
    /// its own send (a kernel or device without UDP_SEGMENT).
    case superPackets
    /// As `superPackets`, and a run of equal-size datagrams to one peer leaves as one
    /// UDP_SEGMENT send.
    case superPacketsAndSegmentedSends

    /// Whether slots must hold 64 KiB super-packets and GRO runs.
    public var usesSuperPackets: Bool { self != .off }

    /// Whether workers may hand the kernel a run of datagrams in one UDP_SEGMENT send.
    public var sendsSegmentRuns: Bool { self == .superPacketsAndSegmentedSends }

    public var description: String {
        switch self {
        case .off: "off"
        case .superPackets: "TSO+GRO"
        case .superPacketsAndSegmentedSends: "TSO+GSO+GRO"
        }
    }
}

/// What the data path needs to know besides its devices.
public struct ForwarderConfiguration: Sendable {
    /// The forwarding rules: local subnet, path MTU, peer checks.
    public var policy: ForwardingPolicy
    /// The UDP port every node uses (flannel's `Backend.Port`): peers are addressed at it.
    public var port: UInt16
    /// Threads that route and send TUN packets. Defaults to the core count.
    public var workers: Int
    /// Packets per recvmmsg/sendmmsg call and per TUN read burst.
    public var batchSize: Int
    /// Depth of each reader→worker queue, in packets.
    public var queueCapacity: Int
    /// Super-packets and segmented sends, or one packet per system call.
    public var offload: Offload

    public init(policy: ForwardingPolicy, port: UInt16, workers: Int, offload: Offload = .off, batchSize: Int = 64, queueCapacity: Int? = nil) {
        self.policy = policy
        self.port = port
        self.workers = max(1, workers)
        self.batchSize = max(1, batchSize)
        self.offload = offload
        // 64 KiB slots make deep queues expensive; a super-packet carries ~44 packets anyway.
        self.queueCapacity = max(self.batchSize, queueCapacity ?? (offload.usesSuperPackets ? 128 : 1024))
    }

    /// Source address of the ICMP errors Weft generates: the TUN's address, as flannel uses.
    var icmpSource: IPv4Address { policy.localSubnet.network }

    /// Without offloads a slot holds the largest datagram a peer may send plus room to notice a
    /// larger one as truncated instead of cutting it silently, as flannel's MTU-sized buffer did. With offloads
    /// it holds a virtio header and a 64 KiB super-packet or GRO batch.
    var slotSize: Int { offload.usesSuperPackets ? 65536 + 64 : max(2048, (policy.pathMTU + 28 + 64 + 63) & ~63) }

    /// Every slot that can be in flight at once: each worker's queue and batch, the receiver's
    /// batch, and one read in progress.
    var slotCount: Int { workers * (queueCapacity + batchSize) + batchSize + 1 }
}

/// Whether the data path is stopping, and where a thread reports a device that failed for good.
/// Every thread gets it; none needs the Forwarder itself.
final class DataPathLifecycle: Sendable {
    private let stopping = Atomic<Bool>(false)
    private let onFatalError: @Sendable (String) -> Void

    init(onFatalError: @escaping @Sendable (String) -> Void) {
        self.onFatalError = onFatalError
    }

    var isStopping: Bool { stopping.load(ordering: .acquiring) }

    /// True for the first caller only.
    func beginStopping() -> Bool {
        !stopping.exchange(true, ordering: .sequentiallyConsistent)
    }

    /// Reports a device failure, unless it is the shutdown itself.
    func fail(_ message: String) {
        if !isStopping { onFatalError(message) }
    }

    /// A TUN write that failed with an error (not "would block"): the caller counts the packets
    /// as `tunWriteFailed`. A device that is gone (closed descriptor, interface removed) stops the
    /// node, as a failed read does; anything else (the kernel refusing one packet) is only counted.
    func tunWriteFailed(_ error: any Error) {
        guard let error = error as? SystemError else {
            fail("TUN write failed: \(error)")
            return
        }
        switch error.errno {
        case EBADF, EBADFD, ENODEV, ENXIO, EFAULT:
            fail("TUN write failed: \(error)")
        default:
            break
        }
    }
}

/// The packet-moving threads of one node.
///
/// ```
/// TUN ─► reader ─► pool slot ─► SPSC queue ─► OutboundWorker ─► ForwardingPolicy.outbound ─► sendmmsg
/// TUN ◄─ write ◄─ InboundReceiver: ForwardingPolicy.inbound ◄─ pool slot ◄─ recvmmsg
/// ```
/// A packet's bytes are written once by the kernel into a pool slot and read once by the kernel
/// from it; only slot indices move between threads. The reader spreads packets over workers by a
/// hash of the addresses, so one flow stays on one worker and keeps its order. Idle threads block
/// (poll, a semaphore, recvmmsg); none spins.
public final class Forwarder: @unchecked Sendable {
    public let configuration: ForwarderConfiguration
    public let counters: Counters
    let tunnel: any PacketTunnel
    let transport: any DatagramTransport
    let routes: RouteTableStore
    let pool: PacketPool
    /// Length of the bytes in each slot, written by the reader before it publishes the slot.
    let lengths: UnsafeMutablePointer<Int32>
    let queues: [SPSCIndexRing]
    let doorbells: [Doorbell]
    private let wakeup: EventFD
    private let lifecycle: DataPathLifecycle
    private let started = Atomic<Bool>(false)
    private let threads = DispatchGroup()

    /// - Parameter onFatalError: called (from a data-path thread) when a device fails for good,
    ///   e.g. the TUN disappears; the caller decides to stop.
    public init(
        tunnel: any PacketTunnel,
        transport: any DatagramTransport,
        routes: RouteTableStore,
        configuration: ForwarderConfiguration,
        counters: Counters = Counters(),
        onFatalError: @escaping @Sendable (String) -> Void = { _ in }
    ) throws {
        precondition(configuration.offload.usesSuperPackets || tunnel.vnetHeaderSize == 0, "a TUN with offloads needs 64 KiB slots")
        self.tunnel = tunnel
        self.transport = transport
        self.routes = routes
        self.configuration = configuration
        self.counters = counters
        self.lifecycle = DataPathLifecycle(onFatalError: onFatalError)
        self.pool = PacketPool(slotCount: configuration.slotCount, slotSize: configuration.slotSize)
        self.lengths = .allocate(capacity: configuration.slotCount)
        self.lengths.initialize(repeating: 0, count: configuration.slotCount)
        self.queues = (0..<configuration.workers).map { _ in SPSCIndexRing(capacity: configuration.queueCapacity) }
        self.doorbells = (0..<configuration.workers).map { _ in Doorbell() }
        self.wakeup = try EventFD()
    }

    deinit {
        lengths.deallocate()
        wakeup.close()
    }

    /// Starts the reader, the workers and the receiver, each on its own Dispatch queue.
    public func start() {
        guard !started.exchange(true, ordering: .sequentiallyConsistent) else { return }
        // Each thread is built on its own queue from the parts it uses, and owns its batch and scratch.
        for index in 0..<configuration.workers {
            DispatchQueue(label: "weft.worker.\(index)").async(group: threads) {
                OutboundWorker(
                    queue: self.queues[index], doorbell: self.doorbells[index], pool: self.pool, lengths: self.lengths,
                    tunnel: self.tunnel, transport: self.transport, routes: self.routes,
                    configuration: self.configuration, shard: self.counters.makeShard(), lifecycle: self.lifecycle
                ).run()
            }
        }
        DispatchQueue(label: "weft.tun-reader").async(group: threads) { self.runTunReader() }
        DispatchQueue(label: "weft.receiver").async(group: threads) {
            InboundReceiver(
                pool: self.pool, tunnel: self.tunnel, transport: self.transport, routes: self.routes,
                configuration: self.configuration, shard: self.counters.makeShard(), lifecycle: self.lifecycle
            ).run()
        }
    }

    /// Stops every thread and waits for them; packets still queued are sent first.
    public func stop() {
        guard lifecycle.beginStopping() else { return }
        wakeup.signal()
        transport.shutdown()
        for doorbell in doorbells { doorbell.ring() }
        threads.wait()
    }

    // MARK: TUN reader

    private func runTunReader() {
        let shard = counters.makeShard()
        let workers = configuration.workers
        var rang = [Bool](repeating: false, count: workers)  // once, not per packet
        while !lifecycle.isStopping {
            var burst = 0
            var drained = false
            while burst < configuration.batchSize {
                guard let slot = pool.allocate() else {
                    // Cannot happen with the pool sized by slotCount; keep the TUN moving anyway.
                    drained = !discardOnePacket(shard)
                    break
                }
                let length: Int?
                do {
                    length = try tunnel.read(into: pool.buffer(slot))
                } catch {
                    pool.release(slot)
                    lifecycle.fail("TUN read failed: \(error)")
                    return
                }
                guard let length else {
                    pool.release(slot)
                    drained = true
                    break
                }
                burst += 1
                lengths[Int(slot)] = Int32(truncatingIfNeeded: length)
                let worker = workerIndex(for: pool.buffer(slot), length: length)
                if queues[worker].push(slot) {
                    rang[worker] = true
                } else {
                    pool.release(slot)
                    shard.countDrop(.tunToUDP, .queueFull)
                }
            }
            for worker in 0..<workers where rang[worker] {
                doorbells[worker].ring()
                rang[worker] = false
            }
            guard drained else { continue }
            do {
                _ = try tunnel.waitReadable(orWakeup: wakeup)
            } catch {
                lifecycle.fail("waiting for the TUN failed: \(error)")
                return
            }
        }
    }

    /// Reads one packet into a throwaway buffer and counts it; false when none was waiting.
    private func discardOnePacket(_ shard: CounterShard) -> Bool {
        withUnsafeTemporaryAllocation(byteCount: configuration.slotSize, alignment: 64) { scratch in
            guard (try? tunnel.read(into: scratch)) != nil else { return false }
            shard.countDrop(.tunToUDP, .poolExhausted)
            return true
        }
    }

    /// One flow (source and destination pair) always goes to the same worker, so packets of a
    /// TCP connection are never reordered between workers.
    private func workerIndex(for buffer: UnsafeMutableRawBufferPointer, length: Int) -> Int {
        let workers = configuration.workers
        let addressOffset = tunnel.vnetHeaderSize + 12
        guard workers > 1, length >= addressOffset + 8 else { return 0 }
        let addresses = buffer.loadUnaligned(fromByteOffset: addressOffset, as: UInt64.self)
        var hash = addresses &* 0x9E37_79B9_7F4A_7C15
        hash ^= hash >> 32
        return Int(hash % UInt64(workers))
    }

    /// Keeps a worker's view of the routes current: one atomic load per batch, a fetch only when
    /// the registry swapped in a new table.
    struct RouteSnapshot {
        private let store: RouteTableStore
        private var generation: Int
        private(set) var table: RouteTable

        init(_ store: RouteTableStore) {
            self.store = store
            generation = store.generation
            table = store.current
        }

        mutating func refresh() {
            let latest = store.generation
            if latest != generation {
                generation = latest
                table = store.current
            }
        }
    }
}
