import Testing
import WeftCore

@Suite struct AddressTests {
    @Test func parsesAndPrintsDottedQuads() {
        #expect(IPv4Address("10.0.0.1")?.rawValue == 0x0A00_0001)
        #expect(IPv4Address("0.0.0.0")?.rawValue == 0)
        #expect(IPv4Address("255.255.255.255")?.rawValue == UInt32.max)
        #expect(IPv4Address(10, 244, 1, 5).description == "10.244.1.5")
        #expect(IPv4Address("192.168.100.200")?.description == "192.168.100.200")
    }

    @Test(arguments: ["1.2.3", "256.1.1.1", "1.2.3.4.5", "", "1..2.3", "1.2.3.", ".1.2.3", "01.2.3.4", " 1.2.3.4",
                      "1.2.3.4 ", "a.b.c.d", "1.2.3.-4", "1.2.3.1000", "10.244.1.0/24"])
    func rejectsMalformedAddresses(_ text: String) {
        #expect(IPv4Address(text) == nil)
    }

    @Test func readsAndWritesNetworkOrderUnaligned() {
        var bytes: [UInt8] = [0xFF, 10, 244, 1, 5, 0xFF]
        bytes.withUnsafeMutableBytes { buffer in
            let address = IPv4Address(networkOrderBytesAt: buffer.baseAddress! + 1)
            #expect(address == IPv4Address(10, 244, 1, 5))
            IPv4Address(192, 168, 0, 1).store(networkOrderTo: buffer.baseAddress! + 1)
        }
        #expect(bytes == [0xFF, 192, 168, 0, 1, 0xFF])
    }

    @Test func ordersNumerically() {
        #expect(IPv4Address(9, 255, 255, 255) < IPv4Address(10, 0, 0, 0))
        #expect(!(IPv4Address(10, 0, 0, 1) < IPv4Address(10, 0, 0, 1)))
    }

    @Test func parsesPrefixes() throws {
        let prefix = try #require(IPv4Prefix("10.244.1.0/24"))
        #expect(prefix.network == IPv4Address(10, 244, 1, 0))
        #expect(prefix.length == 24)
        #expect(prefix.description == "10.244.1.0/24")
        #expect(IPv4Prefix("0.0.0.0/0")?.length == 0)
        #expect(IPv4Prefix("10.1.2.3/32")?.network == IPv4Address(10, 1, 2, 3))
    }

    @Test(arguments: ["10.244.1.5/24", "1.2.3", "/33", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0", "10.0.0.0/024",
                      "10.0.0.0/-1", "10.0.0.0/ 8", "10.0.0.0/8/8", "1.2.3/8", "0.0.0.0/100", "1.0.0.0/0"])
    func rejectsMalformedPrefixes(_ text: String) {
        #expect(IPv4Prefix(text) == nil)
    }

    @Test func masksHostBitsWhenBuiltFromAnAddress() {
        let prefix = IPv4Prefix(address: IPv4Address(10, 244, 1, 5), length: 24)
        #expect(prefix.network == IPv4Address(10, 244, 1, 0))
        #expect(IPv4Prefix(address: IPv4Address(10, 244, 1, 5), length: 0).network.rawValue == 0)
    }

    @Test func masksAtTheEdges() {
        #expect(IPv4Prefix(address: IPv4Address(rawValue: 0), length: 0).mask == 0)
        #expect(IPv4Prefix(address: IPv4Address(rawValue: 0), length: 32).mask == UInt32.max)
        #expect(IPv4Prefix(address: IPv4Address(rawValue: 0), length: 1).mask == 0x8000_0000)
        #expect(IPv4Prefix(address: IPv4Address(rawValue: 0), length: 24).mask == 0xFFFF_FF00)
    }

    @Test func containsAddressesAndPrefixes() throws {
        let lease = try #require(IPv4Prefix("10.244.1.0/24"))
        #expect(lease.contains(IPv4Address(10, 244, 1, 0)))
        #expect(lease.contains(IPv4Address(10, 244, 1, 255)))
        #expect(!lease.contains(IPv4Address(10, 244, 2, 0)))
        let all = try #require(IPv4Prefix("0.0.0.0/0"))
        #expect(all.contains(IPv4Address(255, 255, 255, 255)))
        #expect(all.contains(lease))
        let host = try #require(IPv4Prefix("10.244.1.7/32"))
        #expect(host.contains(IPv4Address(10, 244, 1, 7)))
        #expect(!host.contains(IPv4Address(10, 244, 1, 6)))
        #expect(lease.contains(host))
        #expect(!host.contains(lease))
        #expect(try lease.contains(#require(IPv4Prefix("10.244.1.128/25"))))
        #expect(try !lease.contains(#require(IPv4Prefix("10.244.0.0/16"))))
    }

    @Test func describesEnums() {
        #expect(DropReason.tooShort.description == "too-short")
        #expect(DropReason.notIPv4.description == "not-ipv4")
        #expect(DropReason.badHeaderLength.description == "bad-header-length")
        #expect(DropReason.notLocalDestination.description == "not-local-destination")
        #expect(DropReason.tunWriteFailed.description == "tun-write-failed")
        #expect(Set(DropReason.allCases.map(\.description)).count == DropReason.allCases.count)
        #expect(Direction.tunToUDP.description == "tun→udp")
        #expect(Direction.udpToTun.description == "udp→tun")
    }
}
