import Glibc
import WeftCore
import WeftLinux

/// A lane's receiving half: recvmmsg straight into pool slots, the inbound rules for every inner
/// packet, then the TUN.
///
/// With UDP GRO one slot holds a run of datagrams of one size back to back. Consecutive TCP
/// packets of one flow among them, or consecutive UDP datagrams of one flow, are handed to a TUN
/// with offloads as one super-packet (one writev of a virtio header, the first packet and the
/// others' payloads, nothing copied), which the kernel forwards whole, as its own GRO would have.
final class InboundReceiver {
    private let pool: PacketPool
    private let tunnel: any PacketTunnel
    private let transport: any DatagramTransport
    private let lifecycle: DataPathLifecycle
    private let shard: CounterShard
    private let policy: ForwardingPolicy
    private let port: UInt16
    private let batchSize: Int
    private let icmpSource: IPv4Address
    private let vnetHeaderSize: Int
    /// Whether UDP datagrams are joined too: the TUN takes UDP super-packets, and none was refused.
    private var joinsUDP: Bool
    private var routes: Forwarder.RouteSnapshot
    private var limiter = ICMPRateLimiter()
    private let batch: DatagramBatch
    private let replyBatch = DatagramBatch(capacity: 1)
    /// The receiver owns its slots for its whole life: every packet in them is written to the
    /// TUN before the next recvmmsg reuses them.
    private var slots: [PacketPool.Slot] = []

    /// The run of packets being joined: the first packet and the payloads after it.
    private var runFirst: UnsafeMutableRawBufferPointer?
    private var runKind = RunKind.tcp
    private var runPayload = 0
    private var runBytes = 0
    private var runPackets = 0
    private var runPush = false
    private let runVectors: UnsafeMutablePointer<iovec>
    private static let runCapacity = 64
    /// The virtio header written before each packet or joined run.
    private let virtioHeader: UnsafeMutableRawPointer
    /// ICMP replies are built here, not in place: in a GRO run the next datagram follows the
    /// offender directly, and a reply can be longer than a short offender.
    private let replyBuffer: UnsafeMutableRawBufferPointer

    init(
        pool: PacketPool, tunnel: any PacketTunnel, transport: any DatagramTransport, routes: RouteTableStore,
        configuration: ForwarderConfiguration, shard: CounterShard, lifecycle: DataPathLifecycle
    ) {
        self.pool = pool
        self.tunnel = tunnel
        self.transport = transport
        self.lifecycle = lifecycle
        self.shard = shard
        policy = configuration.policy
        port = configuration.port
        batchSize = configuration.batchSize
        icmpSource = configuration.icmpSource
        vnetHeaderSize = tunnel.vnetHeaderSize
        joinsUDP = tunnel.vnetHeaderSize > 0 && tunnel.acceptsUDPSuperPackets
        self.routes = Forwarder.RouteSnapshot(routes)
        batch = DatagramBatch(capacity: configuration.batchSize)
        runVectors = .allocate(capacity: Self.runCapacity + 2)
        virtioHeader = .allocate(byteCount: VirtioNetHeader.size, alignment: 8)
        replyBuffer = .allocate(byteCount: 128, alignment: 8)  // 20 + 8 + a 60-byte header + 8
    }

    deinit {
        for slot in slots { pool.release(slot) }
        runVectors.deallocate()
        virtioHeader.deallocate()
        replyBuffer.deallocate()
    }

    /// Takes the slots this half receives into; false (reported) when the pool is too small.
    func start() -> Bool {
        for i in 0..<batchSize {
            guard let slot = pool.allocate() else {
                lifecycle.fail("packet pool too small for the receiver")
                return false
            }
            slots.append(slot)
            batch.setReceiveBuffer(i, pool.buffer(slot))
        }
        return true
    }

    /// Takes what the socket holds, up to one batch (one recvmmsg that does not wait), and
    /// writes every inner packet to the TUN queue.
    func pass() -> LanePass {
        let received: Int
        do {
            received = try transport.receiveAvailable(into: batch, maxCount: batchSize)
        } catch {
            lifecycle.fail("UDP receive failed: \(error)")
            return .failed
        }
        if received == 0 { return .nothing }
        routes.refresh()
        for i in 0..<received {
            if batch.isTruncated(i) {
                // Longer than a slot, so longer than the path MTU: ForwardingPolicy's too-big.
                shard.countDrop(.udpToTun, .tooBig)
                continue
            }
            receiveEntry(i)
        }
        // A run may span entries: a TCP super-packet longer than one UDP datagram can carry
        // (46 segments of a 64 KiB TSO read) leaves its node as two UDP_SEGMENT sends and arrives
        // as two GRO entries, which are one TUN write again here. The slots keep every entry's
        // bytes until the next receive.
        writeRun()
        return received == batchSize ? .fullBatch : .emptied
    }

    /// Every datagram of one entry: one, or a GRO run of equal-size ones.
    private func receiveEntry(_ i: Int) {
        let buffer = pool.buffer(slots[i])
        let total = batch.length(i)
        let datagramSize = batch.segmentSize(i) ?? total
        let sender = batch.sender(i).address
        guard total > 0 else {
            // An empty datagram carries no packet, but it was received: it is counted too.
            shard.countDrop(.udpToTun, .tooShort)
            return
        }
        var offset = 0
        while offset < total {
            let end = min(total, offset + max(1, datagramSize))
            let packet = UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<end])
            offset = end
            switch policy.inbound(packet, from: sender, routes: routes.table) {
            case .writeToTun:
                deliver(packet)
            case .drop(let reason, let reply):
                shard.countDrop(.udpToTun, reason)
                if let reply { answer(reply, about: packet, to: sender) }
            }
        }
    }

    /// What a run joins, and so which coalescer's rules apply.
    private enum RunKind {
        case tcp, udp

        func canAppend(first: UnsafeRawBufferPointer, appendedPayload: Int, next: UnsafeRawBufferPointer) -> Bool {
            switch self {
            case .tcp: TCPCoalescer.canAppend(first: first, appendedPayload: appendedPayload, next: next)
            case .udp: UDPCoalescer.canAppend(first: first, appendedPayload: appendedPayload, next: next)
            }
        }

        /// IP and transport header bytes of a packet the kind's coalescer accepted.
        func headerLength(_ packet: UnsafeRawBufferPointer) -> Int {
            switch self {
            case .tcp: TCPHeaders.length(packet)!
            case .udp: UDPCoalescer.headerLength
            }
        }
    }

    /// Joins the packet to the current run when the TUN can take super-packets, else writes it.
    private func deliver(_ packet: UnsafeMutableRawBufferPointer) {
        guard vnetHeaderSize > 0 else {
            if write({ try tunnel.write(UnsafeRawBufferPointer(packet)) }) {
                shard.countForwarded(.udpToTun, bytes: packet.count)
            } else {
                shard.countDrop(.udpToTun, .tunWriteFailed)
            }
            return
        }
        let bytes = UnsafeRawBufferPointer(packet)
        if let first = runFirst, runPackets < Self.runCapacity, !runPush,
           runKind.canAppend(first: UnsafeRawBufferPointer(first), appendedPayload: runPayload, next: bytes) {
            let headerLength = runKind.headerLength(bytes)
            let payload = packet.count - headerLength
            runVectors[runPackets + 1] = iovec(iov_base: packet.baseAddress! + headerLength, iov_len: payload)
            // A TCP run ends after a push; a UDP run's coalescer refuses to go on after a short one.
            runPush = runKind == .tcp && TCPHeaders.hasPush(bytes)
            runPayload += payload
            runBytes += packet.count
            runPackets += 1
            return
        }
        writeRun()
        runFirst = packet
        if joinsUDP, let payload = UDPCoalescer.payloadLength(bytes) {
            runKind = .udp
            runPayload = payload
        } else {
            runKind = .tcp
            runPayload = packet.count - (TCPHeaders.length(bytes) ?? 0)
        }
        runBytes = packet.count
        runPackets = 1
        runPush = false
        runVectors[1] = iovec(iov_base: packet.baseAddress!, iov_len: packet.count)
    }

    /// Writes the pending run: alone behind an empty virtio header, or joined into one
    /// super-packet the kernel segments again if it must.
    private func writeRun() {
        guard let first = runFirst else { return }
        runFirst = nil
        var virtio = VirtioNetHeader()
        if runPackets > 1 {
            let firstPayload = first.count - runKind.headerLength(UnsafeRawBufferPointer(first))
            switch runKind {
            case .tcp:
                virtio = TCPCoalescer.finish(first: first, totalPayload: runPayload, gsoSize: firstPayload, push: runPush)
            case .udp:
                virtio = UDPCoalescer.finish(first: first, totalPayload: runPayload, gsoSize: firstPayload)
            }
        }
        virtio.store(to: virtioHeader)
        runVectors[0] = iovec(iov_base: virtioHeader, iov_len: VirtioNetHeader.size)
        let vectors = UnsafeBufferPointer(start: runVectors, count: runPackets + 1)
        do {
            if try tunnel.write(vectors: vectors) {
                shard.countForwarded(.udpToTun, packets: runPackets, bytes: runBytes)
                return
            }
        } catch {
            // A kernel that refuses UDP super-packets after all (EINVAL): join no more of them.
            if runPackets > 1, runKind == .udp, (error as? SystemError)?.errno == EINVAL {
                joinsUDP = false
            } else {
                lifecycle.tunWriteFailed(error)
            }
        }
        shard.countDrop(.udpToTun, .tunWriteFailed, packets: runPackets)
    }

    /// One TUN write: false when it would block or failed (the caller counts the packets); a
    /// device that is gone also stops the node.
    @inline(__always)
    private func write(_ attempt: () throws -> Bool) -> Bool {
        do {
            return try attempt()
        } catch {
            lifecycle.tunWriteFailed(error)
            return false
        }
    }

    /// A remote sender's packet expired here: the error goes back to its node.
    private func answer(_ reply: ICMPMessage, about packet: UnsafeMutableRawBufferPointer, to sender: IPv4Address) {
        guard limiter.allow() else { return }
        let length = ICMPBuilder.build(reply, about: UnsafeRawBufferPointer(packet), from: icmpSource, into: replyBuffer)
        replyBatch.setSend(0, UnsafeRawBufferPointer(rebasing: replyBuffer[0..<length]), to: sender, port: port)
        do {
            if try transport.send(replyBatch, count: 1).sent == 1 { shard.countICMPSent() }
        } catch {
            lifecycle.fail("UDP send failed: \(error)")
        }
    }
}
