/// What the data path reads from a TCP/IPv4 packet's headers to cut or join super-packets.
public enum TCPHeaders {
    /// Bytes of the IPv4 header plus the TCP header (options included), or nil when the packet
    /// is not TCP or too short to hold both.
    @inlinable
    public static func length(_ packet: UnsafeRawBufferPointer) -> Int? {
        guard packet.count >= 20 else { return nil }
        let ipLength = Int(packet[0] & 0x0F) * 4
        guard ipLength >= 20, packet[9] == 6, packet.count >= ipLength + 20 else { return nil }
        let tcpLength = Int(packet[ipLength + 12] >> 4) * 4
        guard tcpLength >= 20, packet.count >= ipLength + tcpLength else { return nil }
        return ipLength + tcpLength
    }

    /// Whether the TCP packet carries PSH: a joined run must end with it, as the kernel's GRO does.
    @inlinable
    public static func hasPush(_ packet: UnsafeRawBufferPointer) -> Bool {
        guard length(packet) != nil else { return false }
        return packet[Int(packet[0] & 0x0F) * 4 + 13] & 0x08 != 0
    }
}
