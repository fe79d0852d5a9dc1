import Foundation
import Testing
import WeftCore
@testable import weft

@Suite struct StaticPeersTests {
    static let b = Route(subnet: IPv4Prefix("10.244.2.0/24")!, nextHop: IPv4Address(198, 18, 0, 2))
    static let c = Route(subnet: IPv4Prefix("10.244.3.0/24")!, nextHop: IPv4Address(198, 18, 0, 3))
    static let d = Route(subnet: IPv4Prefix("10.244.4.0/24")!, nextHop: IPv4Address(198, 18, 0, 4))

    func peers(flags: [Route], file: String?) -> StaticPeers {
        StaticPeers(network: IPv4Prefix("10.244.0.0/16")!, subnet: IPv4Prefix("10.244.1.0/24")!, flagPeers: flags, peersFile: file)
    }

    @Test func theRoutesAreTheFlagsPlusTheFileAsItIsNow() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("weft-peers-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let node = peers(flags: [Self.b], file: path)
        try "10.244.3.0/24=198.18.0.3\n10.244.4.0/24=198.18.0.4\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try node.load() == [Self.b, Self.c, Self.d])

        // A reload after D left the file: D is no longer routed; the flag peer stays.
        try "10.244.3.0/24=198.18.0.3 # C\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try node.load() == [Self.b, Self.c])
        try "".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try node.load() == [Self.b])
    }

    @Test func aPeerInBothPlacesIsRoutedOnceAndAConflictIsRefused() throws {
        let node = peers(flags: [Self.b, Self.c], file: nil)
        #expect(try node.routes(filePeers: [Self.c, Self.d]) == [Self.b, Self.c, Self.d])
        let moved = Route(subnet: Self.b.subnet, nextHop: IPv4Address(198, 18, 0, 9))
        #expect(throws: (any Error).self) { try node.routes(filePeers: [moved]) }
    }

    @Test func withoutAFileTheFlagsAreTheRoutes() throws {
        #expect(try peers(flags: [Self.b], file: nil).load() == [Self.b])
    }
}

@Suite struct ArgumentTypeTests {
    @Test(arguments: [
        ("10.244.0.0/16", nil),
        ("10.244.1.5/16", "host bits are set: the network is 10.244.0.0/16"),
        ("10.244.0.0/33", "the prefix length must be 0 to 32"),
        ("10.244.0.0/", "the prefix length must be 0 to 32"),
        ("10.244.0.0", "not an IPv4 network in CIDR form (e.g. 10.244.0.0/16)"),
        ("10.244.0.300/16", "not an IPv4 network in CIDR form (e.g. 10.244.0.0/16)"),
    ] as [(String, String?)])
    func networksSayWhatIsWrong(text: String, refusal: String?) {
        do {
            let prefix = try IPv4Prefix.parseArgument(text)
            #expect(refusal == nil && prefix.description == text)
        } catch {
            #expect("\(error)" == refusal)
        }
    }
}
