import Foundation
import Testing
import WeftTestSupport
import WeftCapture
import WeftCore

extension NamespaceTests {
/// Two nodes in network namespaces, each running `weft run`, pods behind them. Everything is
/// created by the test and deleted when it ends (weft lab down), also on failure.
@Suite(.serialized, .enabled(if: Environment.canRunNamespaces, Comment(rawValue: Environment.missingForNamespaces ?? "")))
struct ForwardingTests {
    /// Starts weft on both nodes.
    private func twoNodeLab(podMTU: Int? = nil, offload: Bool = true) throws -> (Lab, BackgroundProcess, BackgroundProcess) {
        let lab = try Lab(podMTU: podMTU)
        let weftA = try lab.startWeft("nodeA", Lab.weftArguments(node: "nodeA", offload: offload))
        let weftB = try lab.startWeft("nodeB", Lab.weftArguments(node: "nodeB", offload: offload))
        return (lab, weftA, weftB)
    }

    @Test("pods ping each other both ways; each weft hop costs two TTL, as flannel's; a clean stop",
          arguments: [true, false])
    func pingBothWays(offload: Bool) throws {
        let (lab, weftA, _) = try twoNodeLab(offload: offload)
        let there = try lab.ping(from: "podA", "10.244.2.2")
        #expect(there.status == 0, "\(there)")
        // 64 − 1 (node B kernel) − 2 (two weft decrements) − 1 (node A kernel) on the reply.
        #expect(there.output.contains("ttl=60"), "\(there.output)")
        let back = try lab.ping(from: "podB", "10.244.1.2")
        #expect(back.status == 0, "\(back)")

        let stopped = weftA.stop()
        #expect(stopped.status == 0, "weft exits 0 on SIGTERM: \(stopped)")
        #expect(stopped.output.contains("weft: stopped;"), "summary line: \(stopped.output)")
        let link = try lab.exec("nodeA", ["ip", "link", "show", "flannel0"])
        #expect(link.status != 0, "flannel0 removed on exit: \(link)")
        let routes = try lab.exec("nodeA", ["ip", "route", "show", "10.244.0.0/16"])
        #expect(routes.output.isEmpty, "overlay route removed on exit: \(routes)")
    }

    /// With offloads the stream crosses as TSO super-packets cut into flannel packets and joined
    /// again; without, one packet per system call. Both must deliver every byte.
    @Test("50 MB of TCP pod to pod arrive intact", arguments: [true, false])
    func tcpStreamIntact(offload: Bool) throws {
        let (lab, _, _) = try twoNodeLab(offload: offload)
        let server = try lab.spawn("podB", ["python3", Environment.testPeer("tcp_stream.py"), "server", "--bind", "10.244.2.2", "--port", "5001", "--timeout", "120"])
        usleep(500_000)
        let client = try lab.exec("podA", ["python3", Environment.testPeer("tcp_stream.py"), "client", "--connect", "10.244.2.2", "--port", "5001", "--bytes", String(50 * 1024 * 1024), "--seed", "7", "--timeout", "120"], timeout: 150)
        let received = server.wait(seconds: 30)
        #expect(client.status == 0, "\(client)")
        #expect(received.status == 0, "\(received)")
        let sent = client.output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(sent.hasPrefix("bytes=52428800 sha256="), "\(sent)")
        #expect(received.output.trimmingCharacters(in: .whitespacesAndNewlines) == sent)
    }

    @Test("UDP datagrams cross and come back")
    func udpEcho() throws {
        let (lab, _, _) = try twoNodeLab()
        let server = try lab.spawn("podB", ["python3", Environment.testPeer("udp_echo.py"), "server", "--bind", "10.244.2.2", "--port", "7000", "--timeout", "30"])
        usleep(500_000)
        let client = try lab.exec("podA", ["python3", Environment.testPeer("udp_echo.py"), "client", "--to", "10.244.2.2:7000", "--count", "200", "--size", "1000", "--interval", "0.002", "--timeout", "10"], timeout: 30)
        _ = server.stop()
        #expect(client.output.contains("sent=200 received=200"), "\(client)")
    }

    /// Floods leave node A as UDP_SEGMENT trains and enter node B's flannel0 as UDP super-packets
    /// (a kernel with USO): every datagram must come out as it was sent.
    @Test("a UDP flood crosses as trains and super-packets, every datagram intact and in order, and the wire judged valid")
    func udpFloodIntact() throws {
        let (lab, _, weftB) = try twoNodeLab()
        let wire = try WireCapture(lab, node: "nodeA", name: "wire-udp", seconds: 30)
        let rxBefore = try lab.exec("nodeB", ["cat", "/sys/class/net/flannel0/statistics/rx_packets"]).output
        let server = try lab.spawn("podB", ["python3", "-c", """
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE: room for the whole flood
            s.bind(("10.244.2.2", 7001))
            s.settimeout(3)
            good = bad = disorder = 0
            last = -1
            try:
                while True:
                    data = s.recv(2000)
                    n = int.from_bytes(data[:4], "big")
                    if data == n.to_bytes(4, "big") * 250: good += 1
                    else: bad += 1
                    if n < last: disorder += 1
                    last = n
            except socket.timeout:
                pass
            print(f"good={good} bad={bad} disorder={disorder}")
            """])
        usleep(500_000)
        let flood = try lab.exec("podA", ["python3", "-c", """
            import socket, time
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect(("10.244.2.2", 7001))
            for n in range(3000):
                s.send(n.to_bytes(4, "big") * 250)
                if n % 500 == 499: time.sleep(0.05)  # within flannel0's queue of 2048
            """])
        #expect(flood.status == 0, "\(flood)")
        let received = server.wait(seconds: 20)
        #expect(received.output.contains("good=3000 bad=0 disorder=0"), "\(received)")
        let rxAfter = try lab.exec("nodeB", ["cat", "/sys/class/net/flannel0/statistics/rx_packets"]).output
        let written = (Int(rxAfter.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) - (Int(rxBefore.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0)
        wire.stop()
        // Every datagram of every train is judged, the capture having seen the trains whole.
        try wire.finish { frames in
            let report = Report(frames)
            var failures: [String] = []
            if !report.isValid || report.validDatagrams != 3000 { failures.append("expected 3000 valid datagrams: \(report)") }
            if report.superFrames == 0 { failures.append("no UDP_SEGMENT train on the wire: \(report)") }
            let verify = (try? run([Environment.weftBinary, "capture", "--verify", wire.outerFile, "--mtu", "1500", "--json"], timeout: 60))
            if verify?.status != 0 || verify?.output.contains("\"violations\":0") != true || verify?.output.contains("\"validDatagrams\":3000") != true {
                failures.append("weft capture --verify: \(verify.map { "\($0)" } ?? "did not run")")
            }
            return failures
        }
        // weft says at start whether this kernel takes UDP super-packets (Linux 6.2+).
        if weftB.errorOutput.contains("UDP super-packets") {
            #expect(written < 3000, "node B wrote super-packets, not \(written) single datagrams")
        }
    }

    /// A TUN gives no backpressure: the kernel detaches each packet from its sending socket and
    /// drops it when the queue is full, so a sender faster than Weft loses packets there. Weft
    /// cannot prevent it, but its summary must count it.
    @Test("packets the kernel drops in front of a TUN queue nobody reads are counted as tun-queue-full")
    func kernelQueueDropsAreCounted() throws {
        let (lab, weftA, _) = try twoNodeLab()
        let warm = try lab.ping(from: "podA", "10.244.2.2", count: 1)
        #expect(warm.status == 0, "\(warm)")
        // Node A's weft stops reading; one flow fills one queue's ring (OverlayDevice.queueLength).
        weftA.signal(SIGSTOP)
        let flood = try lab.exec("podA", ["python3", "-c", """
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for i in range(5000):
                s.sendto(b"x" * 64, ("10.244.2.2", 9))
            """])
        weftA.signal(SIGCONT)
        #expect(flood.status == 0, "\(flood)")
        let queue = try lab.exec("nodeA", ["cat", "/sys/class/net/flannel0/tx_queue_len"]).output
        #expect(queue.hasPrefix("2048"), "flannel0's queues are deepened: \(queue)")
        let summary = weftA.stop().output
        let dropped = dropCount(in: summary, direction: .tunToUDP, reason: .tunQueueFull)
        // ±10: the kernel's ring clears the slots a reader emptied in small batches.
        #expect(dropped >= 5000 - 2048 - 10 && dropped <= 5000 - 2048 + 10, "5000 sent into a 2048-packet queue (txqueuelen \(queue)): \(summary)")
    }

    @Test("a 1472-byte DF packet passes, 1473 bytes get fragmentation-needed with MTU 1472")
    func pathMTU() throws {
        // Pods with MTU 1500 so the oversized packet reaches the node instead of failing locally.
        let (lab, _, _) = try twoNodeLab(podMTU: 1500)
        let fits = try lab.ping(from: "podA", "10.244.2.2", count: 2, extra: ["-M", "do", "-s", "1444"])
        #expect(fits.status == 0, "\(fits)")
        #expect(fits.output.contains("1452 bytes from 10.244.2.2"), "\(fits.output)")
        let tooBig = try lab.ping(from: "podA", "10.244.2.2", count: 2, extra: ["-M", "do", "-s", "1445"])
        #expect(tooBig.status != 0)
        #expect(tooBig.output.contains("Frag needed") && tooBig.output.contains("mtu = 1472"), "\(tooBig)")
    }

    @Test("TTL expiring at either forwarder is answered with time exceeded")
    func timeExceeded() throws {
        let (lab, _, _) = try twoNodeLab()
        // TTL 2: node A's kernel leaves 1, node A's weft sends the error into its TUN.
        let atSender = try lab.ping(from: "podA", "10.244.2.2", count: 2, extra: ["-t", "2"])
        #expect(atSender.output.contains("From 10.244.1.0") && atSender.output.contains("Time to live exceeded"), "\(atSender)")
        // TTL 3: node B's weft receives TTL 1 and sends the error back through the tunnel.
        let atReceiver = try lab.ping(from: "podA", "10.244.2.2", count: 2, extra: ["-t", "3"])
        #expect(atReceiver.output.contains("From 10.244.2.0") && atReceiver.output.contains("Time to live exceeded"), "\(atReceiver)")
    }

    @Test("a destination without a peer gets net unreachable, delivered to the sender")
    func netUnreachable() throws {
        let (lab, _, _) = try twoNodeLab()
        let ping = try lab.ping(from: "podA", "10.244.99.2", count: 2)
        #expect(ping.output.contains("From 10.244.1.0") && ping.output.contains("Destination Net Unreachable"), "\(ping)")
        // flannel's version is dropped as a martian; ours must reach a connected UDP socket.
        // Linux reports net unreachable (a soft error) to sockets that ask with IP_RECVERR.
        let script = """
            import socket, errno, sys
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_IP, 11, 1)  # IP_RECVERR
            s.settimeout(3)
            s.connect(("10.244.99.2", 9))
            s.send(b"x")
            try:
                s.recv(100)
                print("no error")
            except OSError as e:
                print("errno", errno.errorcode.get(e.errno, e.errno))
            """
        let probe = try lab.exec("podA", ["python3", "-c", script], timeout: 10)
        #expect(probe.output.contains("errno ENETUNREACH"), "\(probe)")
    }

    @Test("on the underlay: UDP 8285 to 8285, each payload one valid IPv4 packet between the pods")
    func wireFormat() throws {
        let (lab, _, _) = try twoNodeLab()
        let wire = try WireCapture(lab, node: "nodeB", name: "wire-format", count: 20)
        // The same pings on node A's TUN, where they are the pods' own packets.
        let tun = try WireCapture(lab, node: "nodeA", interface: "flannel0", filter: "icmp", name: "wire-format-tun", count: 20)
        // 10 requests and 10 replies.
        _ = try lab.ping(from: "podA", "10.244.2.2", count: 10)
        try tun.finish { frames in
            let pods = frames.filter {
                $0.datagram.verdict == .notUDP && $0.datagram.outerProtocol == 1
                    && Set([$0.datagram.outerSource, $0.datagram.outerDestination]) == Set([Lab.podA, Lab.podB])
            }
            return pods.count == 20 ? [] : ["expected 20 pod ICMP packets on flannel0: \(frames.map { describe($0.header, $0.datagram) })"]
        }
        try wire.finish { frames in
            var failures: [String] = []
            if frames.count != 20 { failures.append("captured \(frames.count) datagrams, not 20") }
            let underlay: Set = [Lab.nodeAUnderlay, Lab.nodeBUnderlay], pods: Set = [Lab.podA, Lab.podB]
            for frame in frames {
                let datagram = frame.datagram
                if datagram.verdict != .valid || datagram.sourcePort != 8285 || datagram.destinationPort != 8285 || datagram.segments != 1 {
                    failures.append("not one flannel-udp datagram 8285 → 8285: \(describe(frame.header, datagram))")
                }
                if ![datagram.outerSource, datagram.outerDestination].allSatisfy({ $0.map(underlay.contains) == true })
                    || ![datagram.innerSource, datagram.innerDestination].allSatisfy({ $0.map(pods.contains) == true }) {
                    failures.append("addresses: \(describe(frame.header, datagram))")
                }
            }
            return failures
        }
    }

    /// Real TCP traffic crosses the underlay as GSO super-frames where the kernel allows; each must
    /// stand for datagrams that are each one valid IPv4 packet, and `weft capture --verify` agrees.
    @Test("TCP between the pods: every datagram on the wire is valid flannel-udp; weft capture --verify and tshark agree")
    func wireFormatUnderTCP() throws {
        let (lab, _, _) = try twoNodeLab()
        let wire = try WireCapture(lab, node: "nodeA", name: "wire-tcp", seconds: 30)
        let server = try lab.spawn("podB", ["python3", Environment.testPeer("tcp_stream.py"), "server", "--bind", "10.244.2.2", "--port", "5001", "--timeout", "60"])
        usleep(500_000)
        let bytes = 4 * 1024 * 1024
        let client = try lab.exec("podA", ["python3", Environment.testPeer("tcp_stream.py"), "client", "--connect", "10.244.2.2", "--port", "5001", "--bytes", String(bytes), "--seed", "3", "--timeout", "60"], timeout: 70)
        #expect(client.status == 0, "\(client)")
        server.wait(seconds: 10)
        usleep(200_000)
        wire.stop()
        try wire.finish { frames in
            let report = Report(frames)
            var failures: [String] = []
            if !report.isValid { failures.append("violations on the wire: \(report)") }
            // Data segments of about 1,400 bytes each carry the stream.
            if report.validDatagrams < bytes / 1500 { failures.append("too few datagrams for \(bytes) bytes: \(report)") }
            let verify = (try? run([Environment.weftBinary, "capture", "--verify", wire.outerFile, "--mtu", "1500", "--json"], timeout: 60))
            if verify?.status != 0 || verify?.output.contains("\"violations\":0") != true {
                failures.append("weft capture --verify: \(verify.map { "\($0)" } ?? "did not run")")
            }
            if findInPath("tshark") != nil {
                // tshark sees each datagram of the inner file as one pod-to-pod TCP packet.
                let tshark = try? run(["tshark", "-n", "-r", wire.innerFile, "-T", "fields", "-e", "ip.src", "-e", "ip.dst", "-e", "tcp.srcport"], timeout: 60)
                let lines = tshark?.output.split(separator: "\n") ?? []
                if lines.count != report.validDatagrams { failures.append("tshark read \(lines.count) inner packets, not \(report.validDatagrams)") }
                if !lines.allSatisfy({ $0.hasPrefix("10.244.1.2\t10.244.2.2\t") || $0.hasPrefix("10.244.2.2\t10.244.1.2\t") }) {
                    failures.append("tshark: inner packets not between the pods: \(lines.prefix(3))")
                }
            }
            return failures
        }
    }

    @Test("malformed, unknown-peer and spoofed datagrams are dropped and counted while pings flow")
    func hostileDatagrams() throws {
        let (lab, weftA, _) = try twoNodeLab()
        // A third underlay address, known to no one, on node B's side of the link.
        try lab.exec("nodeB", ["ip", "addr", "add", "198.18.0.3/24", "dev", "ul0"])
        let wire = try WireCapture(lab, node: "nodeA", name: "hostile", seconds: 30)
        let pings = try lab.spawn("podA", ["ping", "-n", "-c", "30", "-i", "0.1", "-W", "2", "10.244.2.2"])
        let inject = Environment.testPeer("inject.py")
        let garbage = try lab.exec("nodeB", ["python3", inject, "--from-ip", "198.18.0.2", "--to", "198.18.0.1:8285", "--kind", "garbage", "--count", "60"])
        let unknown = try lab.exec("nodeB", ["python3", inject, "--from-ip", "198.18.0.3", "--to", "198.18.0.1:8285", "--kind", "valid", "--inner-src", "10.244.2.2", "--count", "10"])
        let spoofed = try lab.exec("nodeB", ["python3", inject, "--from-ip", "198.18.0.2", "--to", "198.18.0.1:8285", "--kind", "spoofed", "--inner-src", "10.244.7.7", "--count", "10"])
        #expect(garbage.status == 0 && unknown.status == 0 && spoofed.status == 0, "\(garbage)\n\(unknown)\n\(spoofed)")
        let pinged = pings.wait(seconds: 30)
        #expect(pinged.output.contains("30 received"), "pings kept flowing: \(pinged)")
        wire.stop()
        // On the wire: the 30 pings' 60 datagrams are valid; all 80 injected ones break the format
        // (inject.py sends from an ephemeral port, so they are port mismatches before anything else).
        try wire.finish { frames in
            let report = Report(frames)
            return report[.valid] == 60 && report[.portMismatch] == 80 && report.violations == 80
                ? [] : ["expected 60 valid datagrams and 80 port mismatches: \(report)"]
        }
        let summary = weftA.stop().output
        #expect(dropCount(in: summary, direction: .udpToTun, reason: .unknownPeer) == 10, "\(summary)")
        #expect(dropCount(in: summary, direction: .udpToTun, reason: .spoofedSource) == 10, "\(summary)")
        let malformed = DropReason.allCases.reduce(0) { $0 + dropCount(in: summary, direction: .udpToTun, reason: $1) } - 20
        #expect(malformed == 60, "every garbage datagram counted once: \(summary)")
    }

    @Test("routes change while traffic flows (SIGHUP re-reads the peers file)")
    func routeChange() throws {
        let lab = try Lab()
        let peers = FileManager.default.temporaryDirectory.appendingPathComponent("weft-peers-\(lab.prefix)").path
        defer { try? FileManager.default.removeItem(atPath: peers) }
        // Node A starts with a wrong address for node B's subnet.
        try "10.244.2.0/24=198.18.0.9\n".write(toFile: peers, atomically: true, encoding: .utf8)
        let weftA = try lab.startWeft("nodeA", ["run", "--iface", "ul0", "--network", "10.244.0.0/16", "--subnet", "10.244.1.0/24", "--peers-file", peers])
        // Node B takes its interface from flanneld's variable instead of --iface.
        _ = try lab.startWeft("nodeB", Lab.weftArguments(node: "nodeB").filter { $0 != "--iface" && $0 != "ul0" }, environment: ["FLANNELD_IFACE=ul0"])
        let before = try lab.ping(from: "podA", "10.244.2.2", count: 2)
        #expect(before.status != 0, "the wrong peer address gets no answer: \(before)")

        let server = try lab.spawn("podB", ["python3", Environment.testPeer("tcp_stream.py"), "server", "--bind", "10.244.2.2", "--port", "5002", "--timeout", "60"])
        try "10.244.2.0/24=198.18.0.2\n".write(toFile: peers, atomically: true, encoding: .utf8)
        weftA.signal(SIGHUP)
        usleep(300_000)
        let client = try lab.spawn("podA", ["python3", Environment.testPeer("tcp_stream.py"), "client", "--connect", "10.244.2.2", "--port", "5002", "--bytes", String(20 * 1024 * 1024), "--seed", "3", "--timeout", "60"])
        // Re-install the same route 20 times while the stream flows: readers never block on it.
        for _ in 0..<20 {
            weftA.signal(SIGHUP)
            usleep(50_000)
        }
        let sent = client.wait(seconds: 60)
        let received = server.wait(seconds: 30)
        #expect(sent.status == 0 && received.status == 0, "\(sent)\n\(received)")
        #expect(!sent.output.isEmpty && sent.output == received.output, "stream intact: \(sent.output) vs \(received.output)")
        #expect(weftA.isRunning)
    }

    @Test("SIGHUP with a peer removed from the peers file stops routing to it")
    func reloadRemovesAPeer() throws {
        let lab = try Lab()
        let peers = FileManager.default.temporaryDirectory.appendingPathComponent("weft-peers-\(lab.prefix)").path
        defer { try? FileManager.default.removeItem(atPath: peers) }
        try "10.244.2.0/24=198.18.0.2\n".write(toFile: peers, atomically: true, encoding: .utf8)
        let weftA = try lab.startWeft("nodeA", ["run", "--iface", "ul0", "--network", "10.244.0.0/16", "--subnet", "10.244.1.0/24", "--peers-file", peers])
        _ = try lab.startWeft("nodeB", Lab.weftArguments(node: "nodeB"))
        let before = try lab.ping(from: "podA", "10.244.2.2", count: 2)
        #expect(before.status == 0, "\(before)")

        try "# node B left the cluster\n".write(toFile: peers, atomically: true, encoding: .utf8)
        weftA.signal(SIGHUP)
        #expect(lab.waitForLog(weftA, containing: "peers reloaded from \(peers): 0 route(s)", seconds: 5), "\(weftA.errorOutput)")
        let after = try lab.ping(from: "podA", "10.244.2.2", count: 2)
        #expect(after.status != 0, "no route to a removed peer: \(after)")
        let summary = weftA.stop().output
        #expect(dropCount(in: summary, direction: .tunToUDP, reason: .noRoute) >= 2, "\(summary)")
    }

    @Test("interoperates with an independent flannel-udp peer (no Weft code)")
    func interoperatesWithIndependentPeer() throws {
        let lab = try Lab()
        _ = try lab.startWeft("nodeA", Lab.weftArguments(node: "nodeA"))
        let peer = try lab.spawn("nodeB", ["python3", Environment.testPeer("flannel_peer.py"), "--iface-ip", "198.18.0.2", "--subnet", "10.244.2.0/24", "--network", "10.244.0.0/16", "--peer", "10.244.1.0/24=198.18.0.1", "--duration", "60"])
        try lab.waitForLink("flannel0", in: "nodeB", process: peer)
        let there = try lab.ping(from: "podA", "10.244.2.2")
        #expect(there.status == 0, "\(there)\npeer: \(peer.errorOutput)")
        #expect(there.output.contains("ttl=60"), "\(there.output)")
        let back = try lab.ping(from: "podB", "10.244.1.2")
        #expect(back.status == 0, "\(back)")

        // TCP both ways: Weft's segmented UDP GSO sends must arrive at a plain socket as one
        // packet per datagram, and the peer's datagrams must survive Weft's GRO and joining.
        for (server, client, address) in [("podB", "podA", "10.244.2.2"), ("podA", "podB", "10.244.1.2")] {
            let receiver = try lab.spawn(server, ["python3", Environment.testPeer("tcp_stream.py"), "server", "--bind", address, "--port", "5003", "--timeout", "60"])
            usleep(300_000)
            let sent = try lab.exec(client, ["python3", Environment.testPeer("tcp_stream.py"), "client", "--connect", address, "--port", "5003", "--bytes", String(4 * 1024 * 1024), "--seed", "5", "--timeout", "60"], timeout: 70)
            let received = receiver.wait(seconds: 30)
            #expect(sent.status == 0 && received.status == 0, "\(client)→\(server): \(sent)\n\(received)\npeer: \(peer.output)")
            #expect(!sent.output.isEmpty && sent.output == received.output, "\(client)→\(server) stream intact")
        }
    }

    /// flanneld's packaged units are Type=notify: systemd waits for READY=1 on $NOTIFY_SOCKET.
    @Test("under a Type=notify unit weft sends READY=1 once forwarding and STOPPING=1 on stop")
    func systemdNotification() throws {
        let lab = try Lab()
        let (socket, listener) = try lab.startNotifyListener(in: "nodeA")
        let weft = try lab.startWeft("nodeA", Lab.weftArguments(node: "nodeA"), environment: ["NOTIFY_SOCKET=\(socket)"])
        let stopped = weft.stop()
        #expect(stopped.status == 0, "\(stopped)")
        let messages = listener.wait(seconds: 10).output.split(separator: "\n").map(String.init)
        #expect(messages.count == 2, "\(messages)")
        #expect(messages.first?.hasPrefix("READY=1 | STATUS=forwarding 10.244.1.0/24 on flannel0") == true, "\(messages)")
        #expect(messages.last == "STOPPING=1", "\(messages)")
    }

    @Test("a flannel0 that is already there is refused with what it is and how to remove it, and left alone")
    func existingTunIsRefused() throws {
        let lab = try Lab()
        try lab.exec("nodeA", ["ip", "tuntap", "add", "dev", "flannel0", "mode", "tun"])
        let result = try lab.exec("nodeA", [Environment.weftBinary] + Lab.weftArguments(node: "nodeA"), timeout: 20)
        #expect(result.status == 1, "\(result.transcript)")
        #expect(result.errorOutput.split(separator: "\n").count == 1, "\(result.transcript)")
        #expect(result.errorOutput.contains("flannel0: it already exists, a persistent TUN device"), "\(result.transcript)")
        #expect(result.errorOutput.contains("ip link delete flannel0"), "\(result.transcript)")
        let addresses = try lab.exec("nodeA", ["ip", "-4", "addr", "show", "dev", "flannel0"])
        #expect(addresses.status == 0 && !addresses.output.contains("inet "), "the device is left as it was: \(addresses)")

        // Deleted, it is weft's again.
        try lab.exec("nodeA", ["ip", "link", "delete", "flannel0"])
        let weft = try lab.startWeft("nodeA", Lab.weftArguments(node: "nodeA"))
        let stopped = weft.stop()
        #expect(stopped.status == 0, "\(stopped)")
    }

    @Test("without the right to create a TUN, weft run says so in one line and exits non-zero")
    func missingPrivilege() throws {
        let lab = try Lab()
        // As user nobody inside the node: no CAP_NET_ADMIN, which weft run checks first.
        let result = try lab.exec("nodeA", ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", Environment.weftBinary] + Lab.weftArguments(node: "nodeA"), timeout: 20)
        #expect(result.status != 0)
        #expect(result.errorOutput.split(separator: "\n").count == 1, "\(result.transcript)")
        #expect(result.errorOutput.hasPrefix("weft: cannot create TUN flannel0") && (result.errorOutput.contains("not permitted") || result.errorOutput.contains("Permission denied")), "\(result.transcript)")
        #expect(result.errorOutput.contains("weft run needs root or CAP_NET_ADMIN"), "\(result.transcript)")
    }
}
}

