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
    /// Packets per recvmmsg/sendmmsg call and per TUN read burst.
    public var batchSize: Int
    /// Super-packets and segmented sends, or one packet per system call.
    public var offload: Offload

    public init(policy: ForwardingPolicy, port: UInt16, offload: Offload = .off, batchSize: Int = 64) {
        self.policy = policy
        self.port = port
        self.batchSize = max(1, batchSize)
        self.offload = offload
    }

    /// Source address of the ICMP errors Weft generates: the TUN's address, as flannel uses.
    var icmpSource: IPv4Address { policy.localSubnet.network }

    /// Without offloads a slot holds the largest datagram a peer may send plus room to notice a
    /// larger one as truncated instead of cutting it silently, as flannel's MTU-sized buffer did. With offloads
    /// it holds a virtio header and a 64 KiB super-packet or GRO batch.
    var slotSize: Int { offload.usesSuperPackets ? 65536 + 64 : max(2048, (policy.pathMTU + 28 + 64 + 63) & ~63) }

    /// Each half of a lane's thread owns one batch of slots for its whole life: the sending
    /// half reads into its own, the receiving half receives into its own.
    func slotCount(lanes: Int) -> Int { 2 * lanes * batchSize }
}

/// One worker's devices: a queue of the TUN and a socket of the node's group. A lane's two
/// threads read only these, so nothing is handed between threads on the way of a packet.
public struct DataPathLane: Sendable {
    public let tunnel: any PacketTunnel
    public let transport: any DatagramTransport

    public init(tunnel: any PacketTunnel, transport: any DatagramTransport) {
        self.tunnel = tunnel
        self.transport = transport
    }
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

/// The packet-moving threads of one node: one per lane (`LaneWorker`), which runs each packet
/// from one of its devices to the other without handing it to another thread, in both
/// directions.
///
/// ```
/// TUN queue i ─► lane i, OutboundWorker: read ─► ForwardingPolicy.outbound ─► sendmmsg on socket i
/// TUN queue i ◄─ write ◄─ lane i, InboundReceiver: ForwardingPolicy.inbound ◄─ recvmmsg on socket i
/// ```
/// The kernel spreads the work: it hands each packet for flannel0 to a TUN queue by its flow,
/// and each datagram to a socket of the group by its inner addresses (`UDPSocket.openGroup`), so
/// one flow stays on one thread, both ways, and keeps its order. A packet's bytes are written
/// once by the kernel into a slot the thread owns and read once by the kernel from it. When a
/// lane falls behind it simply reads later: packets wait in the kernel's queues instead of being
/// dropped by Weft. An idle lane blocks in one poll on its two devices; none spins.
public final class Forwarder: @unchecked Sendable {
    public let configuration: ForwarderConfiguration
    public let counters: Counters
    public let lanes: [DataPathLane]
    let routes: RouteTableStore
    let pool: PacketPool
    private let wakeup: EventFD
    private let lifecycle: DataPathLifecycle
    private let started = Atomic<Bool>(false)
    private let threads = DispatchGroup()

    /// - Parameter onFatalError: called (from a data-path thread) when a device fails for good,
    ///   e.g. the TUN disappears; the caller decides to stop.
    public init(
        lanes: [DataPathLane],
        routes: RouteTableStore,
        configuration: ForwarderConfiguration,
        counters: Counters = Counters(),
        onFatalError: @escaping @Sendable (String) -> Void = { _ in }
    ) throws {
        precondition(!lanes.isEmpty, "the data path needs at least one lane")
        for lane in lanes {
            precondition(configuration.offload.usesSuperPackets || lane.tunnel.vnetHeaderSize == 0, "a TUN with offloads needs 64 KiB slots")
        }
        self.lanes = lanes
        self.routes = routes
        self.configuration = configuration
        self.counters = counters
        self.lifecycle = DataPathLifecycle(onFatalError: onFatalError)
        self.pool = PacketPool(slotCount: configuration.slotCount(lanes: lanes.count), slotSize: configuration.slotSize)
        self.wakeup = try EventFD()
    }

    deinit {
        wakeup.close()
    }

    /// Starts each lane's thread on its own Dispatch queue.
    public func start() {
        guard !started.exchange(true, ordering: .sequentiallyConsistent) else { return }
        // Each thread is built on its own queue and owns its slots and scratch.
        for (index, lane) in lanes.enumerated() {
            DispatchQueue(label: "weft.lane.\(index)").async(group: threads) {
                LaneWorker(
                    lane: lane, pool: self.pool, wakeup: self.wakeup, routes: self.routes,
                    configuration: self.configuration, shard: self.counters.makeShard(), lifecycle: self.lifecycle
                ).run()
            }
        }
    }

    /// Stops every thread and waits for them; packets already read are sent first.
    public func stop() {
        guard lifecycle.beginStopping() else { return }
        wakeup.signal()
        for lane in lanes { lane.transport.shutdown() }
        threads.wait()
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
