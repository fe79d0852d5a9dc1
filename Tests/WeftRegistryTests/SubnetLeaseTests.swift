import Testing
import WeftCore
import WeftRegistry

@Suite struct SubnetLeaseTests {
    @Test func keyHasFlanneldsShape() {
        let subnet = IPv4Prefix("10.244.1.0/24")!
        #expect(SubnetLease.key(for: subnet, prefix: "/coreos.com/network") == "/coreos.com/network/subnets/10.244.1.0-24")
        #expect(SubnetLease.key(for: subnet, prefix: "/coreos.com/network/") == "/coreos.com/network/subnets/10.244.1.0-24")
    }

    @Test(arguments: ["10.244.1.0/24", "10.0.0.0/8", "192.168.255.252/30", "0.0.0.0/0", "10.1.2.3/32"])
    func keyRoundTrips(_ text: String) {
        let subnet = IPv4Prefix(text)!
        #expect(SubnetLease.subnet(fromKey: SubnetLease.key(for: subnet, prefix: "/coreos.com/network")) == subnet)
    }

    @Test func ignoresTheDualStackSuffix() {
        #expect(SubnetLease.subnet(fromKey: "/coreos.com/network/subnets/10.244.1.0-24&fc00:0:0:1::-64")
            == IPv4Prefix("10.244.1.0/24"))
        #expect(SubnetLease.subnet(fromKey: "10.244.1.0-24") == IPv4Prefix("10.244.1.0/24"))
    }

    @Test(arguments: [
        "foo", "", "/coreos.com/network/subnets/10.244.1.0-33", "/coreos.com/network/subnets/10.244.1.0",
        "/coreos.com/network/subnets/10.244.1.0-24/x", "/coreos.com/network/subnets/10.244.1.0-24&XYZ-64",
        "/coreos.com/network/subnets/10.244.1.0-", "/coreos.com/network/subnets/10.244.256.0-24",
        "/coreos.com/network/subnets/10x244.1.0-24", "/coreos.com/network/subnets/10.244.1.5-24",
        "/coreos.com/network/subnets/10.244.1.0-24 ", "/coreos.com/network/subnets/١٠.244.1.0-24",
        "/coreos.com/network/config",
    ])
    func rejectsKeysThatAreNotLeases(_ key: String) {
        #expect(SubnetLease.subnet(fromKey: key) == nil)
    }

    @Test func valueIsByteIdenticalToFlanneld() {
        let bytes = SubnetLease.encodeValue(publicIP: IPv4Address("198.18.0.1")!)
        #expect(bytes == Array(#"{"PublicIP":"198.18.0.1","PublicIPv6":null}"#.utf8))
    }

    @Test(arguments: [
        #"{"PublicIP":"198.18.0.1","PublicIPv6":null}"#,
        #"{"PublicIP":"198.18.0.1"}"#,
        #"{ "PublicIP" : "198.18.0.1" , "Unknown": {"a":[1,2,null]} }"#,
        #"{"publicip":"198.18.0.1"}"#,
    ])
    func decodesEveryFlanneldForm(_ text: String) throws {
        let attributes = try SubnetLease.decodeValue(Array(text.utf8))
        #expect(attributes == LeaseAttributes(publicIP: IPv4Address("198.18.0.1")!, backendType: nil))
    }

    @Test func exposesAnotherBackendsType() throws {
        let value = #"{"PublicIP":"198.18.0.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}}"#
        let attributes = try SubnetLease.decodeValue(Array(value.utf8))
        #expect(attributes.publicIP == IPv4Address("198.18.0.2"))
        #expect(attributes.backendType == "vxlan")
    }

    @Test func decodesWhatItEncodes() throws {
        let address = IPv4Address("203.0.113.77")!
        #expect(try SubnetLease.decodeValue(SubnetLease.encodeValue(publicIP: address)).publicIP == address)
    }

    @Test(arguments: [
        ("", LeaseValueError.notJSON),
        ("{", .notJSON),
        (#"{"PublicIP":"198.18.0.1"} x"#, .notJSON),
        (#""198.18.0.1""#, .notAnObject),
        ("{}", .missingPublicIP),
        (#"{"PublicIP":null}"#, .missingPublicIP),
        (#"{"PublicIP":3323068417}"#, .missingPublicIP),
        (#"{"PublicIP":"198.18.0"}"#, .invalidPublicIP("198.18.0")),
        (#"{"PublicIP":"198.18.0.1","BackendType":7}"#, .wrongBackendType),
    ])
    func refusesGarbage(text: String, expected: LeaseValueError) {
        #expect(throws: expected) { try SubnetLease.decodeValue(Array(text.utf8)) }
    }

    /// A value with an extra key holding `depth` nested arrays, as any node that can write under
    /// the prefix could store.
    static func nested(depth: Int) -> [UInt8] {
        Array(#"{"PublicIP":"198.18.0.9","Extra":"#.utf8) + Array(repeating: UInt8(ascii: "["), count: depth)
            + Array(repeating: UInt8(ascii: "]"), count: depth) + [UInt8(ascii: "}")]
    }

    @Test func anUnknownKeyIsSkippedWithoutReadingIt() throws {
        // Nested as deep as the cap allows, with the enclosing object: the extra key is not read.
        let attributes = try SubnetLease.decodeValue(Self.nested(depth: 31))
        #expect(attributes.publicIP == IPv4Address(198, 18, 0, 9))
    }

    @Test func aValueNestedBeyondTheCapIsRefused() throws {
        // 500 levels took 0.8 s to decode when every value was built; now it is refused at once.
        #expect(throws: LeaseValueError.tooDeep) { try SubnetLease.decodeValue(Self.nested(depth: 32)) }
        #expect(throws: LeaseValueError.tooDeep) { try SubnetLease.decodeValue(Self.nested(depth: 500)) }
        // Brackets inside strings are text, not nesting.
        let text = #"{"PublicIP":"198.18.0.9","Note":"\#(String(repeating: "[{", count: 100))\"]"}"#
        #expect(try SubnetLease.decodeValue(Array(text.utf8)).publicIP == IPv4Address(198, 18, 0, 9))
    }

    @Test func aValueLargerThanAnyLeaseIsRefused() {
        let padding = String(repeating: "x", count: 64 * 1024)
        let value = Array(#"{"PublicIP":"198.18.0.9","Pad":"\#(padding)"}"#.utf8)
        #expect(throws: LeaseValueError.tooLarge(bytes: value.count)) { try SubnetLease.decodeValue(value) }
        #expect(LeaseValueError.tooLarge(bytes: value.count).description.contains("\(value.count) bytes"))
    }
}
