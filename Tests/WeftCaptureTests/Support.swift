import Foundation
import WeftCapture
import WeftCore
import WeftTestSupport

/// Builders for hand-made frames: Ethernet + outer IPv4 + UDP + a payload.
enum Frames {
    static func checksummed(_ header: inout [UInt8]) {
        header[10] = 0
        header[11] = 0
        let sum = header.withUnsafeBytes { InternetChecksum.checksum($0) }
        header[10] = UInt8(sum >> 8)
        header[11] = UInt8(sum & 0xFF)
    }

    /// An IPv4 packet: 20-byte header and `payload`.
    static func ipv4(source: IPv4Address, destination: IPv4Address, protocolNumber: UInt8, ttl: UInt8 = 64,
                     payload: [UInt8], totalLength: Int? = nil) -> [UInt8] {
        let length = totalLength ?? 20 + payload.count
        var header: [UInt8] = [0x45, 0, UInt8(length >> 8), UInt8(length & 0xFF), 0, 1, 0x40, 0, ttl, protocolNumber, 0, 0]
        withUnsafeBytes(of: source.rawValue.bigEndian) { header += $0 }
        withUnsafeBytes(of: destination.rawValue.bigEndian) { header += $0 }
        checksummed(&header)
        return header + payload
    }

    /// An inner ICMP echo request of `size` total bytes.
    static func inner(_ index: Int = 0, size: Int = 84) -> [UInt8] {
        var icmp: [UInt8] = [8, 0, 0, 0, 0, 1, 0, UInt8(index & 0xFF)] + [UInt8](repeating: 0xAB, count: size - 28)
        let sum = icmp.withUnsafeBytes { InternetChecksum.checksum($0) }
        icmp[2] = UInt8(sum >> 8)
        icmp[3] = UInt8(sum & 0xFF)
        return ipv4(source: IPv4Address(10, 244, 1, 2), destination: IPv4Address(10, 244, 2, UInt8(2 + index % 200)), protocolNumber: 1, payload: icmp)
    }

    /// Ethernet + outer IPv4 198.18.0.1 → 198.18.0.2 + UDP + `payload`.
    static func datagram(_ payload: [UInt8], sourcePort: UInt16 = 8285, destinationPort: UInt16 = 8285) -> [UInt8] {
        let udpLength = 8 + payload.count
        let udp: [UInt8] = [UInt8(sourcePort >> 8), UInt8(sourcePort & 0xFF), UInt8(destinationPort >> 8), UInt8(destinationPort & 0xFF),
                            UInt8(udpLength >> 8), UInt8(udpLength & 0xFF), 0, 0] + payload
        let ip = ipv4(source: IPv4Address(198, 18, 0, 1), destination: IPv4Address(198, 18, 0, 2), protocolNumber: 17, payload: udp)
        let ethernet: [UInt8] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]
        return ethernet + ip
    }
}

/// A fresh directory for one test's files.
func temporaryDirectory(_ name: String) throws -> String { try makeTemporaryDirectory("capture-" + name) }

enum TestEnvironment {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let weftBinary = ProcessInfo.processInfo.environment["WEFT_BINARY"] ?? repository + "/.build/debug/weft"
    static var hasWeft: Bool { access(weftBinary, X_OK) == 0 }
    static var isRoot: Bool { geteuid() == 0 }
    static var hasTcpdump: Bool { findInPath("tcpdump") != nil }
    static var hasUnshare: Bool { findInPath("unshare") != nil && findInPath("python3") != nil }

    /// A python3 program sending `count` valid flannel-udp datagrams 127.0.0.1:8285 → 127.0.0.1:8285,
    /// each an ICMP echo 10.244.1.2 → 10.244.2.2.
    static func senderScript(count: Int) -> String {
        """
        import socket, struct, time
        def ck(b):
            s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
            while s > 0xffff: s = (s & 0xffff) + (s >> 16)
            return (~s) & 0xffff
        def pkt(i):
            icmp = bytes([8, 0, 0, 0, 0, 1, 0, i]) + bytes(56)
            icmp = icmp[:2] + struct.pack('!H', ck(icmp)) + icmp[4:]
            h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(icmp), i, 0, 64, 1, 0, bytes([10, 244, 1, 2]), bytes([10, 244, 2, 2]))
            h = h[:10] + struct.pack('!H', ck(h)) + h[12:]
            return h + icmp
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(('127.0.0.1', 8285))
        for i in range(\(count)):
            s.sendto(pkt(i), ('127.0.0.1', 8285))
            time.sleep(0.01)
        """
    }
}
