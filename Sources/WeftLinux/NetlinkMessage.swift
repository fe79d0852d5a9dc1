import WeftCore

/// Pure rtnetlink request encoders: no I/O, byte-for-byte testable. Netlink headers and
/// attribute headers are in host byte order; IPv4 addresses are in network order. Every request
/// asks for an ACK (NLM_F_REQUEST | NLM_F_ACK); port id 0 (the kernel fills it in).
public enum NetlinkMessage {
    // <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>, <linux/if_addr.h> (values
    // checked by _Static_assert in CWeftLinux.c).
    public static let headerSize = 16                 // struct nlmsghdr
    public static let NLMSG_ERROR: UInt16 = 2
    public static let NLMSG_DONE: UInt16 = 3
    public static let RTM_NEWLINK: UInt16 = 16
    public static let RTM_NEWADDR: UInt16 = 20
    public static let RTM_NEWROUTE: UInt16 = 24
    public static let RTM_DELROUTE: UInt16 = 25
    public static let NLM_F_REQUEST: UInt16 = 0x1
    public static let NLM_F_ACK: UInt16 = 0x4
    public static let NLM_F_EXCL: UInt16 = 0x200
    public static let NLM_F_CREATE: UInt16 = 0x400
    static let AF_UNSPEC: UInt8 = 0
    static let AF_INET: UInt8 = 2
    static let IFF_UP: UInt32 = 0x1
    static let IFLA_MTU: UInt16 = 4
    static let IFLA_TXQLEN: UInt16 = 13
    static let IFA_ADDRESS: UInt16 = 1
    static let IFA_LOCAL: UInt16 = 2
    static let RTA_DST: UInt16 = 1
    static let RTA_OIF: UInt16 = 4
    static let RT_TABLE_MAIN: UInt8 = 254
    static let RTPROT_UNSPEC: UInt8 = 0
    static let RTPROT_BOOT: UInt8 = 3
    static let RT_SCOPE_UNIVERSE: UInt8 = 0
    static let RT_SCOPE_NOWHERE: UInt8 = 255
    static let RTN_UNSPEC: UInt8 = 0
    static let RTN_UNICAST: UInt8 = 1

    /// RTM_NEWLINK: ifinfomsg{AF_UNSPEC, index, flags = up ? IFF_UP : 0, change = IFF_UP},
    /// then IFLA_MTU when `mtu` is given and IFLA_TXQLEN when `transmitQueueLength` is.
    /// (`ip link set dev X up mtu N txqueuelen Q`.)
    public static func setLink(index: Int32, up: Bool, mtu: Int?, transmitQueueLength: Int? = nil, sequence: UInt32) -> [UInt8] {
        var body: [UInt8] = []
        body.append(AF_UNSPEC)                        // ifi_family
        body.append(0)                                // __ifi_pad
        body.appendNative(UInt16(0))                  // ifi_type
        body.appendNative(index)                      // ifi_index
        body.appendNative(up ? IFF_UP : 0)            // ifi_flags
        body.appendNative(IFF_UP)                     // ifi_change
        if let mtu {
            body.appendAttribute(IFLA_MTU, native: UInt32(mtu))
        }
        if let transmitQueueLength {
            body.appendAttribute(IFLA_TXQLEN, native: UInt32(transmitQueueLength))
        }
        return message(type: RTM_NEWLINK, flags: NLM_F_REQUEST | NLM_F_ACK, sequence: sequence, body: body)
    }

    /// RTM_NEWADDR (create, exclusive): ifaddrmsg{AF_INET, prefixlen, flags 0, scope universe,
    /// index}, IFA_LOCAL and IFA_ADDRESS both `address` (a point-to-point-less address, as
    /// `ip addr add A/len dev X` sends).
    public static func addAddress(_ address: IPv4Address, prefixLength: Int, interfaceIndex: Int32,
                                  sequence: UInt32) -> [UInt8] {
        precondition((0...32).contains(prefixLength), "IPv4 prefix length must be 0...32")
        var body: [UInt8] = []
        body.append(AF_INET)                          // ifa_family
        body.append(UInt8(prefixLength))              // ifa_prefixlen
        body.append(0)                                // ifa_flags
        body.append(RT_SCOPE_UNIVERSE)                // ifa_scope
        body.appendNative(UInt32(bitPattern: interfaceIndex)) // ifa_index
        body.appendAttribute(IFA_LOCAL, address: address)
        body.appendAttribute(IFA_ADDRESS, address: address)
        return message(type: RTM_NEWADDR, flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                       sequence: sequence, body: body)
    }

    /// RTM_NEWROUTE (create, exclusive): rtmsg{AF_INET, dst_len, table main, protocol boot,
    /// scope universe, type unicast}, RTA_DST network, RTA_OIF index. (`ip route add P dev X`.)
    public static func addRoute(_ prefix: IPv4Prefix, interfaceIndex: Int32, sequence: UInt32) -> [UInt8] {
        routeMessage(type: RTM_NEWROUTE, flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                     prefix: prefix, interfaceIndex: interfaceIndex, protocol: RTPROT_BOOT,
                     scope: RT_SCOPE_UNIVERSE, routeType: RTN_UNICAST, sequence: sequence)
    }

    /// RTM_DELROUTE: rtmsg{AF_INET, dst_len, table main, protocol unspec, scope nowhere, type
    /// unspec}, RTA_DST, RTA_OIF. Protocol 0, scope NOWHERE and type 0 are the kernel's
    /// wildcards, as `ip route del` and vishvananda/netlink's RouteDel send: it deletes the
    /// route to this prefix through this device whoever added it.
    public static func deleteRoute(_ prefix: IPv4Prefix, interfaceIndex: Int32, sequence: UInt32) -> [UInt8] {
        routeMessage(type: RTM_DELROUTE, flags: NLM_F_REQUEST | NLM_F_ACK,
                     prefix: prefix, interfaceIndex: interfaceIndex, protocol: RTPROT_UNSPEC,
                     scope: RT_SCOPE_NOWHERE, routeType: RTN_UNSPEC, sequence: sequence)
    }

    static func routeMessage(type: UInt16, flags: UInt16, prefix: IPv4Prefix, interfaceIndex: Int32,
                             protocol routeProtocol: UInt8, scope: UInt8, routeType: UInt8,
                             sequence: UInt32) -> [UInt8] {
        var body: [UInt8] = []
        body.append(AF_INET)                          // rtm_family
        body.append(UInt8(prefix.length))             // rtm_dst_len
        body.append(0)                                // rtm_src_len
        body.append(0)                                // rtm_tos
        body.append(RT_TABLE_MAIN)                    // rtm_table
        body.append(routeProtocol)                    // rtm_protocol
        body.append(scope)                            // rtm_scope
        body.append(routeType)                        // rtm_type
        body.appendNative(UInt32(0))                  // rtm_flags
        body.appendAttribute(RTA_DST, address: prefix.network)
        body.appendAttribute(RTA_OIF, native: UInt32(bitPattern: interfaceIndex))
        return message(type: type, flags: flags, sequence: sequence, body: body)
    }

    /// nlmsghdr{len, type, flags, seq, pid 0} + body, padded to 4 bytes (NLMSG_ALIGN).
    static func message(type: UInt16, flags: UInt16, sequence: UInt32, body: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(headerSize + body.count + 3)
        bytes.appendNative(UInt32(headerSize + body.count)) // nlmsg_len
        bytes.appendNative(type)
        bytes.appendNative(flags)
        bytes.appendNative(sequence)
        bytes.appendNative(UInt32(0))                       // nlmsg_pid
        bytes.append(contentsOf: body)
        bytes.padToFour()
        return bytes
    }

    /// The outcome of one reply message.
    public enum Reply: Equatable, Sendable {
        /// NLMSG_ERROR with error 0.
        case ack(sequence: UInt32)
        /// NLMSG_ERROR with a negative errno; `errno` is positive.
        case error(sequence: UInt32, errno: Int32)
        /// Any other message (ignored by a request/ACK exchange).
        case other(type: UInt16, sequence: UInt32)
    }

    /// Splits a datagram read from a netlink socket into its messages. Malformed trailing
    /// bytes end the parse.
    public static func parseReplies(_ bytes: UnsafeRawBufferPointer) -> [Reply] {
        var replies: [Reply] = []
        var offset = 0
        while offset + headerSize <= bytes.count {
            let length = Int(bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            let type = bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self)
            let sequence = bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self)
            guard length >= headerSize, offset + length <= bytes.count else { break }
            if type == NLMSG_ERROR, length >= headerSize + 4 {
                let code = bytes.loadUnaligned(fromByteOffset: offset + headerSize, as: Int32.self)
                replies.append(code == 0 ? .ack(sequence: sequence) : .error(sequence: sequence, errno: -code))
            } else {
                replies.append(.other(type: type, sequence: sequence))
            }
            offset += (length + 3) & ~3
        }
        return replies
    }
}

extension Array where Element == UInt8 {
    mutating func appendNative<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value) { append(contentsOf: $0) }
    }

    mutating func padToFour() {
        while count % 4 != 0 { append(0) }
    }

    /// rtattr{len, type} + payload, padded to 4 (RTA_ALIGN); rta_len excludes the padding.
    mutating func appendAttribute<T: FixedWidthInteger>(_ type: UInt16, native value: T) {
        appendNative(UInt16(4 + MemoryLayout<T>.size))
        appendNative(type)
        appendNative(value)
        padToFour()
    }

    mutating func appendAttribute(_ type: UInt16, address: IPv4Address) {
        appendNative(UInt16(8))
        appendNative(type)
        appendNative(address.rawValue.bigEndian)
    }
}
