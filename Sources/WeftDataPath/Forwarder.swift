import Dispatch
import Synchronization
import WeftCore
import WeftLinux

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

    public init(policy: ForwardingPolicy, port: UInt16, workers: Int, batchSize: Int = 64, queueCapacity: Int = 1024) {
        self.policy = policy
        self.port = port
        self.workers = max(1, workers)
        self.batchSize = max(1, batchSize)
        self.queueCapacity = max(batchSize, queueCapacity)
    }

    /// Source address of the ICMP errors Weft generates: the TUN's address, as flannel uses.
    var icmpSource: IPv4Address { policy.localSubnet.network }

    /// Slots hold the largest datagram a peer may send plus one byte, so that an oversized one is
    /// seen as truncated instead of being cut silently (flannel's gap 7).
    var slotSize: Int { max(2048, (policy.pathMTU + 28 + 64 + 63) & ~63) }

    /// Every slot that can be in flight at once: each worker's queue and batch, the receiver's
    /// batch, and one read in progress.
    var slotCount: Int { workers * (queueCapacity + batchSize) + batchSize + 1 }
}

/// The packet-moving threads of one node.
///
/// ```
/// TUN ─► reader ─► pool slot ─► SPSC queue ─► worker ─► ForwardingPolicy.outbound ─► sendmmsg
/// TUN ◄─ write ◄─ receiver: ForwardingPolicy.inbound ◄─ pool slot ◄─ recvmmsg
/// ```
/// A packet's bytes are written once by the kernel into a pool slot and read once by the kernel
/// from it; only slot indices move between threads. The reader spreads packets over workers by a
/// hash of the addresses, so one flow stays on one worker and keeps its order. Idle threads block
/// (poll, a semaphore, recvmmsg); none spins.
public final class Forwarder: @unchecked Sendable {
    public let configuration: ForwarderConfiguration
    public let counters: Counters
    private let tunnel: any PacketTunnel
    private let transport: any DatagramTransport
    private let routes: RouteTableStore
    private let pool: PacketPool
    /// Length of the packet in each slot, written by the reader before it publishes the slot.
    private let lengths: UnsafeMutablePointer<Int32>
    private let queues: [SPSCIndexRing]
    private let doorbells: [Doorbell]
    private let wakeup: EventFD
    private let stopping = Atomic<Bool>(false)
    private let started = Atomic<Bool>(false)
    private let threads = DispatchGroup()
    private let onFatalError: @Sendable (String) -> Void

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
        self.tunnel = tunnel
        self.transport = transport
        self.routes = routes
        self.configuration = configuration
        self.counters = counters
        self.onFatalError = onFatalError
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
        for index in 0..<configuration.workers {
            DispatchQueue(label: "weft.worker.\(index)").async(group: threads) { self.runWorker(index) }
        }
        DispatchQueue(label: "weft.tun-reader").async(group: threads) { self.runTunReader() }
        DispatchQueue(label: "weft.receiver").async(group: threads) { self.runReceiver() }
    }

    /// Stops every thread and waits for them; packets still queued are sent first.
    public func stop() {
        guard !stopping.exchange(true, ordering: .sequentiallyConsistent) else { return }
        wakeup.signal()
        transport.shutdown()
        for doorbell in doorbells { doorbell.ring() }
        threads.wait()
    }

    private var isStopping: Bool { stopping.load(ordering: .acquiring) }

    private func fail(_ message: String) {
        if !isStopping { onFatalError(message) }
    }

    // MARK: TUN → UDP

    private func runTunReader() {
        let shard = counters.makeShard()
        let workers = configuration.workers
        var rang = [Bool](repeating: false, count: workers)  // once, not per packet
        while !isStopping {
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
                    fail("TUN read failed: \(error)")
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
                fail("waiting for the TUN failed: \(error)")
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
        guard workers > 1, length >= 20 else { return 0 }
        let addresses = buffer.loadUnaligned(fromByteOffset: 12, as: UInt64.self)
        var hash = addresses &* 0x9E37_79B9_7F4A_7C15
        hash ^= hash >> 32
        return Int(hash % UInt64(workers))
    }

    private func runWorker(_ index: Int) {
        let shard = counters.makeShard()
        let queue = queues[index]
        let doorbell = doorbells[index]
        let batchSize = configuration.batchSize
        let port = configuration.port
        let policy = configuration.policy
        let batch = DatagramBatch(capacity: batchSize)
        var batchSlots = [PacketPool.Slot](repeating: 0, count: batchSize)
        var generation = routes.generation
        var table = routes.current
        var limiter = ICMPRateLimiter()

        while true {
            let latest = routes.generation
            if latest != generation {
                generation = latest
                table = routes.current
            }
            var count = 0
            var bytes = 0
            while count < batchSize, let slot = queue.pop() {
                let packet = UnsafeMutableRawBufferPointer(
                    rebasing: pool.buffer(slot)[0..<Int(lengths[Int(slot)])])
                switch policy.outbound(packet, routes: table) {
                case .sendToPeer(let peer):
                    batch.setSend(count, UnsafeRawBufferPointer(packet), to: peer, port: port)
                    batchSlots[count] = slot
                    count += 1
                    bytes += packet.count
                case .drop(let reason, let reply):
                    shard.countDrop(.tunToUDP, reason)
                    if let reply, limiter.allow() {
                        answerIntoTunnel(reply, about: packet, slot: slot, shard: shard)
                    }
                    pool.release(slot)
                case .writeToTun:
                    // Outbound rules never deliver locally; the kernel routes our own subnet.
                    pool.release(slot)
                }
            }
            if count > 0 {
                let result: (sent: Int, failed: Int)
                do {
                    result = try transport.send(batch, count: count)
                } catch {
                    for i in 0..<count { pool.release(batchSlots[i]) }
                    fail("UDP send failed: \(error)")
                    return
                }
                // Which entries failed is not reported, so bytes of a partly failed batch are
                // apportioned; the packet counts are exact.
                shard.countForwarded(.tunToUDP, packets: result.sent, bytes: bytes * result.sent / count)
                if result.failed > 0 { shard.countDrop(.tunToUDP, .sendFailed, packets: result.failed) }
                for i in 0..<count { pool.release(batchSlots[i]) }
                continue
            }
            if isStopping && queue.isEmpty { return }
            doorbell.sleep(unless: { !queue.isEmpty || isStopping })
        }
    }

    /// ICMP errors about packets from local pods go back into the TUN, built in the same slot.
    private func answerIntoTunnel(_ message: ICMPMessage, about packet: UnsafeMutableRawBufferPointer, slot: PacketPool.Slot, shard: CounterShard) {
        let buffer = pool.buffer(slot)
        let length = ICMPBuilder.build(message, about: UnsafeRawBufferPointer(packet), from: configuration.icmpSource, into: buffer)
        if (try? tunnel.write(UnsafeRawBufferPointer(rebasing: buffer[0..<length]))) == true {
            shard.countICMPSent()
        }
    }

    // MARK: UDP → TUN

    private func runReceiver() {
        let shard = counters.makeShard()
        let batchSize = configuration.batchSize
        let policy = configuration.policy
        let batch = DatagramBatch(capacity: batchSize)
        let replyBatch = DatagramBatch(capacity: 1)
        // The receiver owns its slots for its whole life: it writes each packet to the TUN before
        // the next recvmmsg reuses the slot.
        var slots: [PacketPool.Slot] = []
        for i in 0..<batchSize {
            guard let slot = pool.allocate() else { fail("packet pool too small for the receiver"); return }
            slots.append(slot)
            batch.setReceiveBuffer(i, pool.buffer(slot))
        }
        defer { for slot in slots { pool.release(slot) } }
        var generation = routes.generation
        var table = routes.current
        var limiter = ICMPRateLimiter()

        while !isStopping {
            let received: Int
            do {
                received = try transport.receive(into: batch, maxCount: batchSize)
            } catch {
                fail("UDP receive failed: \(error)")
                return
            }
            if received == 0 {
                // Only a shutdown ends a blocking receive without a datagram.
                fail("the UDP socket was shut down")
                return
            }
            let latest = routes.generation
            if latest != generation {
                generation = latest
                table = routes.current
            }
            for i in 0..<received {
                if batch.isTruncated(i) {
                    shard.countDrop(.udpToTun, .truncated)
                    continue
                }
                let buffer = pool.buffer(slots[i])
                let packet = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<batch.length(i)])
                let sender = batch.sender(i).address
                switch policy.inbound(packet, from: sender, routes: table) {
                case .writeToTun:
                    if (try? tunnel.write(UnsafeRawBufferPointer(packet))) == true {
                        shard.countForwarded(.udpToTun, bytes: packet.count)
                    } else {
                        shard.countDrop(.udpToTun, .tunWriteFailed)
                    }
                case .drop(let reason, let reply):
                    shard.countDrop(.udpToTun, reason)
                    // A remote sender's packet expired here: the error goes back to its node.
                    if let reply, limiter.allow() {
                        let length = ICMPBuilder.build(reply, about: UnsafeRawBufferPointer(packet), from: configuration.icmpSource, into: buffer)
                        replyBatch.setSend(0, UnsafeRawBufferPointer(rebasing: buffer[0..<length]), to: sender, port: configuration.port)
                        if (try? transport.send(replyBatch, count: 1))?.sent == 1 { shard.countICMPSent() }
                    }
                case .sendToPeer:
                    // Inbound rules never forward to another peer: Weft is not a transit router.
                    shard.countDrop(.udpToTun, .notLocalDestination)
                }
            }
        }
    }
}
