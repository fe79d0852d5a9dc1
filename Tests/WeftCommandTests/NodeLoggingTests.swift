import Testing
import WeftCore
@testable import weft

@Suite struct NodeLoggingTests {
    @Test("log timestamps are UTC with milliseconds, ISO 8601")
    func timestampFormat() {
        let stamp = LogLineHandler.timestamp()
        #expect(stamp.wholeMatch(of: /20\d\d-[01]\d-[0-3]\dT[0-2]\d:[0-5]\d:[0-6]\d\.\d{3}Z/) != nil, "\(stamp)")
    }

    @Test("a route change names the peers it adds and removes")
    func routeChangesNameThePeers() {
        let b = Route(subnet: IPv4Prefix("10.244.2.0/24")!, nextHop: IPv4Address(198, 18, 0, 2))
        let c = Route(subnet: IPv4Prefix("10.244.3.0/24")!, nextHop: IPv4Address(198, 18, 0, 3))
        let cMoved = Route(subnet: IPv4Prefix("10.244.3.0/24")!, nextHop: IPv4Address(198, 18, 0, 9))
        #expect(Node.routeChanges(from: [b], to: [b, c]) == "; added 10.244.3.0/24 via 198.18.0.3")
        #expect(Node.routeChanges(from: [b, c], to: [b]) == "; removed 10.244.3.0/24 via 198.18.0.3")
        #expect(Node.routeChanges(from: [b, c], to: [b, cMoved]) == "; added 10.244.3.0/24 via 198.18.0.9; removed 10.244.3.0/24 via 198.18.0.3")
        #expect(Node.routeChanges(from: [b], to: [b]) == "")
    }
}
