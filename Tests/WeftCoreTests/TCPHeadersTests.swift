import Testing
import WeftCore

@Suite struct TCPHeadersTests {
    /// An IPv4 header of `ipLength` bytes and a TCP header of `tcpLength` bytes, then payload.
    private func packet(ipLength: Int = 20, tcpLength: Int = 20, protocolNumber: UInt8 = 6, flags: UInt8 = 0x10, payload: Int = 10) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: ipLength + tcpLength + payload)
        bytes[0] = 0x40 | UInt8(ipLength / 4)
        bytes[9] = protocolNumber
        bytes[ipLength + 12] = UInt8(tcpLength / 4) << 4
        bytes[ipLength + 13] = flags
        return bytes
    }

    private func length(_ bytes: [UInt8]) -> Int? {
        bytes.withUnsafeBytes { TCPHeaders.length($0) }
    }

    private func hasPush(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { TCPHeaders.hasPush($0) }
    }

    @Test func countsIPAndTCPOptions() {
        #expect(length(packet()) == 40)
        #expect(length(packet(ipLength: 24, tcpLength: 32)) == 56)
    }

    @Test func refusesWhatIsNotAWholeTCPHeader() {
        #expect(length(packet(protocolNumber: 17)) == nil)
        #expect(length(Array(packet(tcpLength: 32, payload: 0).prefix(50))) == nil)
        #expect(length(Array(packet().prefix(30))) == nil)
        #expect(length(packet(tcpLength: 8)) == nil)
    }

    @Test func findsPushBehindOptions() {
        #expect(hasPush(packet(ipLength: 24, flags: 0x18)))
        #expect(!hasPush(packet(ipLength: 24, flags: 0x10)))
        #expect(!hasPush(packet(protocolNumber: 17, flags: 0x18)))
    }
}
