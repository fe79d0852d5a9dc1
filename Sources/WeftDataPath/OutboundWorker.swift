import Glibc
import WeftCore
import WeftLinux

/// A lane's sending half: reads its TUN queue into its own slots, decides each packet's fate
/// and sends the batch with one sendmmsg. While a send blocks nothing is read, so a sender that
/// outpaces the underlay waits in the kernel's queues instead of losing packets in Weft.
///
/// A TSO super-packet from a TUN with offloads is cut into flannel-sized packets here: each gets
/// a header built in `headers`, its payload stays where the kernel put it, and the whole run
/// leaves as one UDP_SEGMENT send (kernel or veth segments it into one datagram per packet).
final class OutboundWorker {
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
    /// Packets per UDP_SEGMENT send: the kernel's cap (UDP_MAX_SEGMENTS), or 1 without GSO.
    private var segmentsPerSend: Int
    private var routes: Forwarder.RouteSnapshot
    private var limiter = ICMPRateLimiter()

    /// Segment headers per batch; a 64 KiB super-packet at the smallest sane MSS fits easily.
    private static let segmentCapacity = 1024
    private static let headerStride = 128
    private static let maxGSOBytes = ForwardingPolicy.largestPathMTU

    private let batch: DatagramBatch
    /// The slots this thread reads into, one per packet of a burst; the batch points into them
    /// until it is sent, and the next burst reads into them only after that.
    private var slots: [PacketPool.Slot] = []
    private var pendingEntries = 0
    private var pendingPackets = 0
    private var pendingBytes = 0
    private let headers: UnsafeMutableRawBufferPointer
    private let segments: UnsafeMutableBufferPointer<TCPSegment>
    private var usedSegments = 0
    private let vectors: UnsafeMutablePointer<iovec>
    private var usedVectors = 0
    /// Consecutive plain packets of one size to one peer, the last entries of the batch: sent as
    /// one UDP_SEGMENT entry once they add up to more than the path MTU (see `joinRun`).
    private var openRun: PacketRun?

    private struct PacketRun {
        var peer: IPv4Address
        var size: Int
        /// The run's first entry; while `joined` the run is that one entry.
        var entry: Int
        var count: Int
        /// The run is one UDP_SEGMENT entry whose vectors start at `firstVector`.
        var joined = false
        var firstVector = 0
    }

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
        segmentsPerSend = configuration.offload.sendsSegmentRuns ? 64 : 1
        self.routes = Forwarder.RouteSnapshot(routes)
        batch = DatagramBatch(capacity: configuration.batchSize)
        headers = .allocate(byteCount: Self.segmentCapacity * Self.headerStride, alignment: 64)
        segments = .allocate(capacity: Self.segmentCapacity)
        vectors = .allocate(capacity: 2 * Self.segmentCapacity)
    }

    deinit {
        for slot in slots { pool.release(slot) }
        headers.deallocate()
        segments.deallocate()
        vectors.deallocate()
    }

    /// Takes the slots this half reads into; false (reported) when the pool is too small.
    func start() -> Bool {
        for _ in 0..<batchSize {
            guard let slot = pool.allocate() else {
                lifecycle.fail("packet pool too small for the sender")
                return false
            }
            slots.append(slot)
        }
        return true
    }

    /// Reads the TUN queue until it would block or one batch is read, decides each packet and
    /// sends the batch with one sendmmsg.
    func pass() -> LanePass {
        routes.refresh()
        var read = 0
        for slot in slots {
            let buffer = pool.buffer(slot)
            let length: Int?
            do {
                length = try tunnel.read(into: buffer)
            } catch {
                flush()
                lifecycle.fail("TUN read failed: \(error)")
                return .failed
            }
            guard let length else { break }
            read += 1
            if !handle(buffer, length: length) { return .failed }
        }
        if !flush() { return .failed }
        return read == 0 ? .nothing : read < slots.count ? .emptied : .fullBatch
    }

    /// Decides one packet; false when the socket failed for good.
    private func handle(_ buffer: UnsafeMutableRawBufferPointer, length: Int) -> Bool {
        guard length > vnetHeaderSize else {
            shard.countDrop(.tunToUDP, .tooShort)
            return true
        }
        let packet = UnsafeMutableRawBufferPointer(rebasing: buffer[vnetHeaderSize..<length])
        var virtio = VirtioNetHeader()
        if vnetHeaderSize > 0 {
            virtio = VirtioNetHeader(bytesAt: buffer.baseAddress!)
        }
        let gso = virtio.gsoType & ~VirtioNetHeader.gsoECN
        if gso == VirtioNetHeader.gsoNone {
            if virtio.flags & VirtioNetHeader.needsChecksum != 0,
               !OffloadChecksum.complete(packet, start: Int(virtio.checksumStart), offset: Int(virtio.checksumOffset)) {
                shard.countDrop(.tunToUDP, .badOffload)
                return true
            }
            return forwardPacket(packet, in: buffer)
        }
        guard gso == VirtioNetHeader.gsoTCPv4, virtio.gsoSize > 0 else {
            shard.countDrop(.tunToUDP, .badOffload)
            return true
        }
        return forwardSuperPacket(packet, gsoSize: Int(virtio.gsoSize), in: buffer)
    }

    private func forwardPacket(_ packet: UnsafeMutableRawBufferPointer, in buffer: UnsafeMutableRawBufferPointer) -> Bool {
        switch policy.outbound(packet, routes: routes.table) {
        case .sendToPeer(let peer):
            if !joinRun(packet, to: peer) {
                if pendingEntries == batch.capacity, !flush() { return false }
                batch.setSend(pendingEntries, UnsafeRawBufferPointer(packet), to: peer, port: port)
                if segmentsPerSend > 1 {
                    openRun = PacketRun(peer: peer, size: packet.count, entry: pendingEntries, count: 1)
                }
                pendingEntries += 1
            }
            pendingPackets += 1
            pendingBytes += packet.count
        case .drop(let reason, let reply):
            drop(packet, in: buffer, reason: reason, reply: reply)
        }
        return true
    }

    /// Adds the packet to the open run when it continues it (same peer, same size, right after
    /// it), as UDP GSO for traffic the TUN hands over packet by packet (a UDP flood). The run
    /// stays separate entries until its bytes exceed the path MTU, and only then becomes one
    /// UDP_SEGMENT entry: a capture judges a datagram longer than the link MTU as a GSO train
    /// (see FlannelDecoder), so a shorter train would look like packets glued together.
    private func joinRun(_ packet: UnsafeMutableRawBufferPointer, to peer: IPv4Address) -> Bool {
        guard var open = openRun, open.peer == peer, open.size == packet.count,
              open.count < segmentsPerSend, (open.count + 1) * open.size <= Self.maxGSOBytes,
              open.entry + (open.joined ? 1 : open.count) == pendingEntries
        else {
            openRun = nil
            return false
        }
        let vector = iovec(iov_base: packet.baseAddress!, iov_len: packet.count)
        if open.joined {
            guard open.firstVector + open.count == usedVectors, usedVectors < 2 * Self.segmentCapacity else {
                openRun = nil
                return false
            }
            vectors[usedVectors] = vector
            usedVectors += 1
        } else {
            guard (open.count + 1) * open.size > policy.pathMTU else {
                // Still short of the MTU: one more plain entry, if the batch has room.
                guard pendingEntries < batch.capacity else {
                    openRun = nil
                    return false
                }
                batch.setSend(pendingEntries, UnsafeRawBufferPointer(packet), to: peer, port: port)
                pendingEntries += 1
                open.count += 1
                openRun = open
                return true
            }
            guard usedVectors + open.count + 1 <= 2 * Self.segmentCapacity else {
                openRun = nil
                return false
            }
            // Collapse the run's plain entries into one whose vectors are their buffers.
            open.firstVector = usedVectors
            for entry in open.entry..<pendingEntries {
                vectors[usedVectors] = batch.sendVectors(entry)[0]
                usedVectors += 1
            }
            vectors[usedVectors] = vector
            usedVectors += 1
            pendingEntries = open.entry + 1
            open.joined = true
        }
        open.count += 1
        batch.setSend(open.entry, vectors: vectors + open.firstVector, count: open.count, to: peer, port: port, segmentSize: open.size)
        openRun = open
        return true
    }

    private func forwardSuperPacket(_ packet: UnsafeMutableRawBufferPointer, gsoSize: Int, in buffer: UnsafeMutableRawBufferPointer) -> Bool {
        let bytes = UnsafeRawBufferPointer(packet)
        guard let headerLength = TCPHeaders.length(bytes) else {
            shard.countDrop(.tunToUDP, .badOffload)
            return true
        }
        let peer: IPv4Address
        switch policy.outbound(packet, routes: routes.table, largestSegment: headerLength + gsoSize) {
        case .sendToPeer(let nextHop):
            peer = nextHop
        case .drop(let reason, let reply):
            drop(packet, in: buffer, reason: reason, reply: reply)
            return true
        }
        // The headers of this super-packet must fit beside the batch's others.
        var cut = segment(bytes, gsoSize: gsoSize)
        if cut == nil, usedSegments > 0 {
            if !flush() { return false }
            cut = segment(bytes, gsoSize: gsoSize)
        }
        guard let cut else {
            shard.countDrop(.tunToUDP, .badOffload)
            return true
        }
        // One UDP_SEGMENT send per run of packets, each packet one header and one payload vector.
        var first = cut.lowerBound
        let end = cut.upperBound
        while first < end {
            // A UDP_SEGMENT send is still one UDP datagram to the kernel until it is cut, so the
            // whole run must fit a UDP length (65507 bytes of payload). The policy refused any
            // segment larger than that (the path MTU is capped there), so a run always advances.
            let packetSize = segments[first].headerLength + segments[first].payloadLength
            let runEnd = min(end, first + max(1, min(segmentsPerSend, Self.maxGSOBytes / packetSize)))
            if pendingEntries == batch.capacity {
                // The runs cut so far leave; the rest of this super-packet joins the next batch.
                if !flush(keepingSegments: true) { return false }
            }
            let runVectors = vectors + usedVectors
            var runBytes = 0
            for index in first..<runEnd {
                let segment = segments[index]
                vectors[usedVectors] = iovec(iov_base: headers.baseAddress! + segment.headerOffset, iov_len: segment.headerLength)
                vectors[usedVectors + 1] = iovec(iov_base: packet.baseAddress! + segment.payloadOffset, iov_len: segment.payloadLength)
                usedVectors += 2
                runBytes += segment.headerLength + segment.payloadLength
            }
            let runCount = runEnd - first
            let segmentSize = runCount > 1 ? segments[first].headerLength + segments[first].payloadLength : nil
            batch.setSend(pendingEntries, vectors: runVectors, count: 2 * runCount, to: peer, port: port, segmentSize: segmentSize)
            pendingEntries += 1
            pendingPackets += runCount
            pendingBytes += runBytes
            first = runEnd
        }
        return true
    }

    /// Cuts into the free part of the header and segment scratch and returns the indices of the
    /// new segments; nil when they do not fit or the packet is not a segmentable TCP packet.
    private func segment(_ packet: UnsafeRawBufferPointer, gsoSize: Int) -> Range<Int>? {
        let free = UnsafeMutableBufferPointer(rebasing: segments[usedSegments...])
        guard let count = TCPSegmenter.segment(
            packet, gsoSize: gsoSize,
            headers: UnsafeMutableRawBufferPointer(rebasing: headers[(usedSegments * Self.headerStride)...]),
            segments: free)
        else { return nil }
        // Header offsets are relative to the scratch slice handed in.
        for index in 0..<count {
            free[index].headerOffset += usedSegments * Self.headerStride
        }
        defer { usedSegments += count }
        return usedSegments..<(usedSegments + count)
    }

    private func drop(_ packet: UnsafeMutableRawBufferPointer, in buffer: UnsafeMutableRawBufferPointer, reason: DropReason, reply: ICMPMessage?) {
        shard.countDrop(.tunToUDP, reason)
        if let reply, limiter.allow() {
            answerIntoTunnel(reply, about: packet, in: buffer)
        }
    }

    /// ICMP errors about packets from local pods go back into the TUN, built in the same slot.
    private func answerIntoTunnel(_ message: ICMPMessage, about packet: UnsafeMutableRawBufferPointer, in buffer: UnsafeMutableRawBufferPointer) {
        let icmp = UnsafeMutableRawBufferPointer(rebasing: buffer[vnetHeaderSize...])
        let length = ICMPBuilder.build(message, about: UnsafeRawBufferPointer(packet), from: icmpSource, into: icmp)
        if vnetHeaderSize > 0 {
            VirtioNetHeader().store(to: buffer.baseAddress!)
        }
        // The offending packet is counted already, so a refused error message is not counted as
        // a second drop; a TUN that is gone still stops the node.
        do {
            if try tunnel.write(UnsafeRawBufferPointer(rebasing: buffer[0..<(vnetHeaderSize + length)])) {
                shard.countICMPSent()
            }
        } catch {
            lifecycle.tunWriteFailed(error)
        }
    }

    /// Sends the pending batch, which frees its slots for the next burst; false when the socket
    /// failed for good.
    /// `keepingSegments` leaves the scratch in use because a super-packet is half-way queued.
    @discardableResult
    private func flush(keepingSegments: Bool = false) -> Bool {
        guard pendingEntries > 0 else { return true }
        let result: (sent: Int, failed: Int)
        do {
            result = try transport.send(batch, count: pendingEntries)
        } catch {
            clearPending()
            lifecycle.fail("UDP send failed: \(error)")
            return false
        }
        // Which entries failed is not reported, so packets and bytes of a partly failed batch
        // are apportioned by entry.
        let sentPackets = pendingPackets * result.sent / pendingEntries
        shard.countForwarded(.tunToUDP, packets: sentPackets, bytes: pendingBytes * result.sent / pendingEntries)
        if result.failed > 0 {
            shard.countDrop(.tunToUDP, .sendFailed, packets: pendingPackets - sentPackets)
            // A NIC without checksum offload refuses GSO (wireguard-go's commit 6a84778): from
            // now on one datagram per packet; TCP resends what this batch lost.
            if segmentsPerSend > 1, transport.segmentationOffloadFailed { segmentsPerSend = 1 }
        }
        clearPending()
        openRun = nil
        if !keepingSegments {
            usedSegments = 0
            usedVectors = 0
        }
        return true
    }

    private func clearPending() {
        pendingEntries = 0
        pendingPackets = 0
        pendingBytes = 0
    }
}
