import Testing
import WeftCore
@testable import WeftLinux
import CWeftLinux

/// Byte-for-byte checks of the rtnetlink encoders (little-endian hosts: x86_64, aarch64).
@Suite struct NetlinkMessageTests {
    @Test func setLinkUpWithMTU() {
        let bytes = NetlinkMessage.setLink(index: 7, up: true, mtu: 1472, sequence: 1)
        let expected: [UInt8] = [
            0x28, 0x00, 0x00, 0x00,  // nlmsg_len 40
            0x10, 0x00,              // RTM_NEWLINK
            0x05, 0x00,              // NLM_F_REQUEST | NLM_F_ACK
            0x01, 0x00, 0x00, 0x00,  // seq 1
            0x00, 0x00, 0x00, 0x00,  // pid 0
            0x00, 0x00,              // ifi_family AF_UNSPEC, pad
            0x00, 0x00,              // ifi_type
            0x07, 0x00, 0x00, 0x00,  // ifi_index 7
            0x01, 0x00, 0x00, 0x00,  // ifi_flags IFF_UP
            0x01, 0x00, 0x00, 0x00,  // ifi_change IFF_UP
            0x08, 0x00, 0x04, 0x00,  // rta_len 8, IFLA_MTU
            0xC0, 0x05, 0x00, 0x00,  // 1472
        ]
        #expect(bytes == expected)
    }

    @Test func setLinkUpWithMTUAndQueueLength() {
        let bytes = NetlinkMessage.setLink(index: 7, up: true, mtu: 1472, transmitQueueLength: 2048, sequence: 1)
        let expected: [UInt8] = [
            0x30, 0x00, 0x00, 0x00,  // nlmsg_len 48
            0x10, 0x00,              // RTM_NEWLINK
            0x05, 0x00,              // NLM_F_REQUEST | NLM_F_ACK
            0x01, 0x00, 0x00, 0x00,  // seq 1
            0x00, 0x00, 0x00, 0x00,  // pid 0
            0x00, 0x00,              // ifi_family AF_UNSPEC, pad
            0x00, 0x00,              // ifi_type
            0x07, 0x00, 0x00, 0x00,  // ifi_index 7
            0x01, 0x00, 0x00, 0x00,  // ifi_flags IFF_UP
            0x01, 0x00, 0x00, 0x00,  // ifi_change IFF_UP
            0x08, 0x00, 0x04, 0x00,  // rta_len 8, IFLA_MTU
            0xC0, 0x05, 0x00, 0x00,  // 1472
            0x08, 0x00, 0x0D, 0x00,  // rta_len 8, IFLA_TXQLEN
            0x00, 0x08, 0x00, 0x00,  // 2048
        ]
        #expect(bytes == expected)
    }

    @Test func setLinkDownWithoutMTU() {
        let bytes = NetlinkMessage.setLink(index: 7, up: false, mtu: nil, sequence: 0x0102_0304)
        let expected: [UInt8] = [
            0x20, 0x00, 0x00, 0x00, 0x10, 0x00, 0x05, 0x00,
            0x04, 0x03, 0x02, 0x01, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,  // flags 0: down
            0x01, 0x00, 0x00, 0x00,  // change IFF_UP
        ]
        #expect(bytes == expected)
    }

    @Test func addAddress() {
        let bytes = NetlinkMessage.addAddress(IPv4Address("10.244.1.0")!, prefixLength: 32,
                                              interfaceIndex: 7, sequence: 2)
        let expected: [UInt8] = [
            0x28, 0x00, 0x00, 0x00,  // len 40
            0x14, 0x00,              // RTM_NEWADDR
            0x05, 0x06,              // REQUEST | ACK | EXCL | CREATE
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x02, 0x20, 0x00, 0x00,  // AF_INET, /32, flags 0, scope universe
            0x07, 0x00, 0x00, 0x00,  // ifa_index 7
            0x08, 0x00, 0x02, 0x00, 0x0A, 0xF4, 0x01, 0x00,  // IFA_LOCAL 10.244.1.0
            0x08, 0x00, 0x01, 0x00, 0x0A, 0xF4, 0x01, 0x00,  // IFA_ADDRESS 10.244.1.0
        ]
        #expect(bytes == expected)
    }

    @Test func addRoute() {
        let bytes = NetlinkMessage.addRoute(IPv4Prefix("10.244.0.0/16")!, interfaceIndex: 7, sequence: 3)
        let expected: [UInt8] = [
            0x2C, 0x00, 0x00, 0x00,  // len 44
            0x18, 0x00,              // RTM_NEWROUTE
            0x05, 0x06,              // REQUEST | ACK | EXCL | CREATE
            0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x02, 0x10, 0x00, 0x00,  // AF_INET, dst_len 16, src_len 0, tos 0
            0xFE, 0x03, 0x00, 0x01,  // table main, proto boot, scope universe, unicast
            0x00, 0x00, 0x00, 0x00,  // rtm_flags
            0x08, 0x00, 0x01, 0x00, 0x0A, 0xF4, 0x00, 0x00,  // RTA_DST 10.244.0.0
            0x08, 0x00, 0x04, 0x00, 0x07, 0x00, 0x00, 0x00,  // RTA_OIF 7
        ]
        #expect(bytes == expected)
    }

    @Test func deleteRoute() {
        let bytes = NetlinkMessage.deleteRoute(IPv4Prefix("10.244.0.0/16")!, interfaceIndex: 7, sequence: 4)
        let expected: [UInt8] = [
            0x2C, 0x00, 0x00, 0x00,
            0x19, 0x00,              // RTM_DELROUTE
            0x05, 0x00,              // REQUEST | ACK
            0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x02, 0x10, 0x00, 0x00,
            0xFE, 0x00, 0xFF, 0x00,  // table main, proto/scope/type wildcards
            0x00, 0x00, 0x00, 0x00,
            0x08, 0x00, 0x01, 0x00, 0x0A, 0xF4, 0x00, 0x00,
            0x08, 0x00, 0x04, 0x00, 0x07, 0x00, 0x00, 0x00,
        ]
        #expect(bytes == expected)
    }

    @Test func attributesArePaddedToFourBytes() {
        var bytes: [UInt8] = []
        bytes.appendAttribute(9, native: UInt16(0xABCD))
        #expect(bytes == [0x06, 0x00, 0x09, 0x00, 0xCD, 0xAB, 0x00, 0x00])  // rta_len 6, then 2 pad bytes
        #expect(NetlinkMessage.message(type: 1, flags: 1, sequence: 0, body: [1]).count == 20)
        #expect(NetlinkMessage.message(type: 1, flags: 1, sequence: 0, body: [1])[0] == 17)  // len excludes padding
    }

    @Test func parsesAckAndError() {
        // Two NLMSG_ERROR messages (CAP_ACK form: 16-byte header + error + 16-byte original header).
        func errorMessage(sequence: UInt32, code: Int32) -> [UInt8] {
            var body: [UInt8] = []
            body.appendNative(code)
            body.append(contentsOf: [UInt8](repeating: 0, count: 16))
            return NetlinkMessage.message(type: NetlinkMessage.NLMSG_ERROR, flags: 0, sequence: sequence, body: body)
        }
        let bytes = errorMessage(sequence: 5, code: 0) + errorMessage(sequence: 6, code: -17)
            + NetlinkMessage.message(type: 16, flags: 0, sequence: 7, body: [0, 0, 0, 0])
        let replies = bytes.withUnsafeBytes { NetlinkMessage.parseReplies($0) }
        #expect(replies == [.ack(sequence: 5), .error(sequence: 6, errno: 17), .other(type: 16, sequence: 7)])
    }
}

/// The hand-written layouts against the kernel's own struct sizes, as the C compiler sees the
/// headers on this machine: a field added or mis-sized in the encoders shows up here.
@Suite struct KernelLayoutTests {
    @Test func messageLengthsAreTheKernelStructs() {
        let header = Int(CWeftLinux_sizeof_nlmsghdr)
        let attribute = Int(CWeftLinux_sizeof_rtattr)
        #expect(NetlinkMessage.headerSize == header)
        #expect(NetlinkMessage.setLink(index: 1, up: true, mtu: nil, sequence: 1).count == header + Int(CWeftLinux_sizeof_ifinfomsg))
        #expect(NetlinkMessage.setLink(index: 1, up: true, mtu: 1472, sequence: 1).count
            == header + Int(CWeftLinux_sizeof_ifinfomsg) + attribute + 4)
        #expect(NetlinkMessage.addAddress(IPv4Address(10, 244, 1, 0), prefixLength: 32, interfaceIndex: 1, sequence: 1).count
            == header + Int(CWeftLinux_sizeof_ifaddrmsg) + 2 * (attribute + 4))
        #expect(NetlinkMessage.addRoute(IPv4Prefix("10.244.0.0/16")!, interfaceIndex: 1, sequence: 1).count
            == header + Int(CWeftLinux_sizeof_rtmsg) + 2 * (attribute + 4))
        #expect(CWeftLinux_sizeof_nlmsgerr == 20, "an ack is an nlmsgerr: errno then the request's header")
    }

    @Test func theVirtioHeaderIsTheKernelStruct() {
        #expect(VirtioNetHeader.size == Int(CWeftLinux_sizeof_virtio_net_hdr))
        #expect(TunDevice.offloadVnetHeaderSize == Int(CWeftLinux_sizeof_virtio_net_hdr))
    }
}
