import WeftCore
import WeftLinux

/// What one pass of a lane's half did.
enum LanePass: Equatable {
    /// The device had nothing.
    case nothing
    /// It took what the device had, less than a batch: the device was empty then.
    case emptied
    /// It took a full batch: more may be waiting.
    case fullBatch
    /// A device failed for good (already reported); the thread ends.
    case failed
}

/// A lane's one thread: it serves both directions of its TUN queue and its socket, a batch at a
/// time each, and sleeps in one poll(2) on both only when neither has anything.
///
/// One thread for both directions is what keeps a TCP stream's round trip free of hand-offs: the
/// TUN queue a flow's packets are written to is the one the kernel hands the flow's replies to
/// (tun's flow table), and the socket group steers both directions of a flow to one socket. So
/// when the receiving half writes data into the TUN, the pod's stack answers with its ACK while
/// that write runs, and the sending half finds the ACK in its queue on the next pass, with no
/// thread woken; the ACK arriving at the other node opens the sender's window the same way, and
/// its next data is waiting when that lane passes its TUN queue again.
final class LaneWorker {
    private let tunnel: any PacketTunnel
    private let transport: any DatagramTransport
    private let wakeup: EventFD
    private let lifecycle: DataPathLifecycle
    private let outbound: OutboundWorker
    private let inbound: InboundReceiver

    init(
        lane: DataPathLane, pool: PacketPool, wakeup: EventFD, routes: RouteTableStore,
        configuration: ForwarderConfiguration, shard: CounterShard, lifecycle: DataPathLifecycle
    ) {
        tunnel = lane.tunnel
        transport = lane.transport
        self.wakeup = wakeup
        self.lifecycle = lifecycle
        outbound = OutboundWorker(
            pool: pool, tunnel: lane.tunnel, transport: lane.transport, routes: routes,
            configuration: configuration, shard: shard, lifecycle: lifecycle)
        inbound = InboundReceiver(
            pool: pool, tunnel: lane.tunnel, transport: lane.transport, routes: routes,
            configuration: configuration, shard: shard, lifecycle: lifecycle)
    }

    func run() {
        guard outbound.start(), inbound.start() else { return }
        // Which device to try on the next pass, without sleeping first.
        var tryTunnel = true
        var trySocket = true
        while !lifecycle.isStopping {
            let sent = tryTunnel ? outbound.pass() : .nothing
            if sent == .failed { return }
            let received = trySocket ? inbound.pass() : .nothing
            if received == .failed { return }
            // The TUN again after a full batch, or after packets were written to it: the pods'
            // replies to them (TCP's ACKs) are already in its queue. The socket again after it
            // gave anything (a stream's next datagrams arrive while the last are written), and
            // beside a full TUN batch so a busy TUN never starves it. Once a pass found nothing
            // new, the lane polls; after poll, only what is readable is read.
            tryTunnel = sent == .fullBatch || received != .nothing
            trySocket = received != .nothing || sent == .fullBatch
            if tryTunnel || trySocket { continue }
            do {
                // nil: the stop's wakeup, which the loop's condition sees.
                guard let ready = try Poll.waitReadable(tunnel.readinessDescriptor, transport.readinessDescriptor, orWakeup: wakeup)
                else { continue }
                if ready.first { tunnel.readinessObserved() }
                if ready.second { transport.readinessObserved() }
                tryTunnel = ready.first
                trySocket = ready.second
            } catch {
                lifecycle.fail("waiting for the TUN and the socket failed: \(error)")
                return
            }
        }
    }
}
