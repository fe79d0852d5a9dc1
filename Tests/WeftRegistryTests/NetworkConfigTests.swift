import Testing
import WeftCore
import WeftRegistry

@Suite struct NetworkConfigTests {
    private func parse(_ json: String) throws(NetworkConfigError) -> NetworkConfig {
        try NetworkConfig.parse(Array(json.utf8))
    }

    /// The message a refused config produces, or nil when it was accepted.
    private func refusal(_ json: String) -> String? {
        do {
            _ = try parse(json)
            return nil
        } catch {
            return error.description
        }
    }

    @Test func theConfigWeftWritesIsFlannelsAndKeepsTheGivenPort() throws {
        let network = IPv4Prefix("10.244.0.0/16")!
        #expect(String(decoding: NetworkConfig.initialValue(network: network, port: nil), as: UTF8.self)
            == #"{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}"#)
        let withPort = try NetworkConfig.parse(NetworkConfig.initialValue(network: network, port: 8300))
        #expect(withPort.port == 8300)
        #expect(withPort.network == network)
    }

    @Test func appliesFlannelDefaultsForASlash16() throws {
        let config = try parse(#"{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}"#)
        #expect(config.network == IPv4Prefix("10.244.0.0/16"))
        #expect(config.subnetLength == 24)
        #expect(config.subnetMin == IPv4Address("10.244.1.0"))
        #expect(config.subnetMax == IPv4Address("10.244.255.0"))
        #expect(config.backendType == "udp")
        #expect(config.port == 8285)
        #expect(config.candidateCount == 255)
    }

    @Test func absentBackendMeansUDPOnPort8285() throws {
        let config = try parse(#"{"Network":"10.1.0.0/16"}"#)
        #expect(config.backendType == "udp")
        #expect(config.port == 8285)
    }

    @Test func subnetLengthDefaultsToPrefixPlusTwoBelowSlash22() throws {
        #expect(try parse(#"{"Network":"10.0.0.0/22"}"#).subnetLength == 24)
        let small = try parse(#"{"Network":"10.0.0.0/26"}"#)
        #expect(small.subnetLength == 28)
        #expect(small.subnetMin == IPv4Address("10.0.0.16"))
        #expect(small.subnetMax == IPv4Address("10.0.0.48"))
        #expect(try parse(#"{"Network":"10.0.0.0/28"}"#).subnetLength == 30)
    }

    @Test func honoursExplicitValuesPortAndUnknownKeys() throws {
        let config = try parse("""
            {"Network":"10.5.0.0/16","SubnetLen":26,"SubnetMin":"10.5.4.0","SubnetMax":"10.5.8.192",
             "EnableIPv4":true,"EnableIPv6":false,"EnableNFTables":false,"Backend":{"Type":"UDP","Port":9000},"Extra":[1,2]}
            """)
        #expect(config.subnetLength == 26)
        #expect(config.subnetMin == IPv4Address("10.5.4.0"))
        #expect(config.subnetMax == IPv4Address("10.5.8.192"))
        #expect(config.port == 9000)
        #expect(config.backendType == "udp")
    }

    @Test func matchesKeysCaseInsensitivelyLikeGo() throws {
        let config = try parse(#"{"network":"10.7.0.0/16","subnetlen":25}"#)
        #expect(config.network == IPv4Prefix("10.7.0.0/16"))
        #expect(config.subnetLength == 25)
    }

    @Test func zeroValuesMeanDefaultsAsInFlanneld() throws {
        let config = try parse(#"{"Network":"10.244.0.0/16","SubnetLen":0,"SubnetMin":"0.0.0.0"}"#)
        #expect(config.subnetLength == 24)
        #expect(config.subnetMin == IPv4Address("10.244.1.0"))
    }

    @Test func networkHostBitsAreClearedAsGoParseCIDRDoes() throws {
        #expect(try parse(#"{"Network":"10.244.3.7/16"}"#).network == IPv4Prefix("10.244.0.0/16"))
    }

    @Test func candidateSubnetsRunFromMinToMaxLazily() throws {
        let config = try parse(#"{"Network":"10.0.0.0/8"}"#)
        #expect(config.candidateCount == 65535)
        let first = Array(config.candidateSubnets().prefix(2))
        #expect(first == [IPv4Prefix("10.0.1.0/24")!, IPv4Prefix("10.0.2.0/24")!])
        var count = 0
        var last: IPv4Prefix?
        for subnet in config.candidateSubnets() {
            count += 1
            last = subnet
        }
        #expect(count == 65535)
        #expect(last == IPv4Prefix("10.255.255.0/24"))
    }

    @Test func candidateSubnetsOfSlash0DoNotOverflow() throws {
        let config = try parse(#"{"Network":"0.0.0.0/0"}"#)
        #expect(config.subnetMax == IPv4Address("255.255.255.0"))
        #expect(config.candidateCount == (1 << 24) - 1)
    }

    @Test(arguments: [
        (#"{"Network":"10.0.0.0/16","SubnetLen":31}"#, "net config: SubnetLen 31 must be at most 30"),
        (#"{"Network":"10.0.0.0/16","SubnetLen":17}"#, "net config: SubnetLen 17 must be at least 18 (Network prefix /16 + 2)"),
        (#"{"Network":"10.0.0.0/29"}"#, "net config: Network 10.0.0.0/29 is too small: the prefix must be at most /28"),
        (#"{"Network":"10.0.0.0/29","SubnetLen":30}"#, "net config: Network 10.0.0.0/29 is too small: the prefix must be at most /28"),
        (#"{"SubnetLen":24}"#, #"net config: Network is required, e.g. "10.244.0.0/16""#),
        (#"{"Network":"fd00::/64"}"#, #"net config: Network "fd00::/64" is not an IPv4 CIDR such as 10.244.0.0/16"#),
        (#"{"Network":"10.0.0.0"}"#, #"net config: Network "10.0.0.0" is not an IPv4 CIDR such as 10.244.0.0/16"#),
        (#"{"Network":16}"#, "net config: Network must be a string"),
        (#"{"Network":"10.0.0.0/16","SubnetLen":"24"}"#, "net config: SubnetLen must be an integer"),
        (#"{"Network":"10.0.0.0/16","SubnetMin":"10.1.0.0"}"#, "net config: SubnetMin 10.1.0.0 must lie inside Network 10.0.0.0/16"),
        (#"{"Network":"10.0.0.0/16","SubnetMax":"11.0.0.0"}"#, "net config: SubnetMax 11.0.0.0 must lie inside Network 10.0.0.0/16"),
        (#"{"Network":"10.0.0.0/16","SubnetMin":"10.0.1.128"}"#, "net config: SubnetMin 10.0.1.128 must be aligned to SubnetLen /24"),
        (#"{"Network":"10.0.0.0/16","SubnetMax":"10.0.9.1"}"#, "net config: SubnetMax 10.0.9.1 must be aligned to SubnetLen /24"),
        (#"{"Network":"10.0.0.0/16","SubnetMin":"10.0.9.0","SubnetMax":"10.0.8.0"}"#, "net config: SubnetMin 10.0.9.0 must not be above SubnetMax 10.0.8.0"),
        (#"{"Network":"10.0.0.0/16","SubnetMin":"10.0.1"}"#, #"net config: SubnetMin "10.0.1" is not an IPv4 address"#),
        (#"{"Network":"10.0.0.0/16","Backend":{"Type":"vxlan"}}"#, #"net config: Backend.Type "vxlan" is not supported: Weft implements only the udp backend"#),
        (#"{"Network":"10.0.0.0/16","Backend":{"Type":"udp","Port":0}}"#, "net config: Backend.Port 0 must be in 1...65535"),
        (#"{"Network":"10.0.0.0/16","Backend":{"Type":"udp","Port":65536}}"#, "net config: Backend.Port 65536 must be in 1...65535"),
        (#"{"Network":"10.0.0.0/16","Backend":"udp"}"#, "net config: Backend must be an object"),
        (#"{"Network":"10.0.0.0/16","EnableIPv6":true}"#, "net config: EnableIPv6 true is not supported: the udp backend carries IPv4 only"),
        (#"{"Network":"10.0.0.0/16","EnableIPv4":false}"#, "net config: EnableIPv4 false is not supported: the udp backend carries IPv4 only"),
        (#"{"Network":"10.0.0.0/16""#, "net config: not valid JSON"),
        (#"["10.0.0.0/16"]"#, "net config: must be a JSON object"),
    ])
    func refusesWithFieldAndRule(json: String, message: String) {
        #expect(refusal(json) == message)
    }

    @Test func typedInitialiserSharesTheRules() throws {
        #expect(throws: NetworkConfigError.subnetLengthTooLong(31)) {
            try NetworkConfig(network: IPv4Prefix("10.0.0.0/16")!, subnetLength: 31)
        }
        let config = try NetworkConfig(network: IPv4Prefix("10.9.0.0/16")!)
        #expect(config == (try parse(#"{"Network":"10.9.0.0/16"}"#)))
    }

    @Test func fitsChecksLengthAndRange() throws {
        let config = try parse(#"{"Network":"10.0.0.0/16","SubnetMin":"10.0.10.0","SubnetMax":"10.0.20.0"}"#)
        #expect(config.fits(IPv4Prefix("10.0.10.0/24")!))
        #expect(config.fits(IPv4Prefix("10.0.20.0/24")!))
        #expect(!config.fits(IPv4Prefix("10.0.9.0/24")!))
        #expect(!config.fits(IPv4Prefix("10.0.21.0/24")!))
        #expect(!config.fits(IPv4Prefix("10.0.12.0/25")!))
    }

    @Test func unknownKeysAreSkippedAndDeepNestingIsRefused() throws {
        func config(extraDepth depth: Int) -> String {
            #"{"Network":"10.9.0.0/16","Extra":"# + String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
                + #","Backend":{"Type":"udp","Port":8300,"Extra":{"a":[1,{"b":2}]}}}"#
        }
        #expect(try parse(config(extraDepth: 31)).port == 8300)
        #expect(throws: NetworkConfigError.tooDeep) { try parse(config(extraDepth: 32)) }
        #expect(throws: NetworkConfigError.tooDeep) { try parse(config(extraDepth: 500)) }
        #expect(refusal(config(extraDepth: 40)) == "net config: nests arrays or objects deeper than 32 levels")
        let large = #"{"Network":"10.9.0.0/16","Pad":""# + String(repeating: " ", count: 70_000) + #""}"#
        #expect(throws: NetworkConfigError.tooLarge(bytes: large.utf8.count)) { try parse(large) }
        #expect(throws: NetworkConfigError.wrongType(field: "Backend", expected: "an object")) { try parse(#"{"Network":"10.9.0.0/16","Backend":[1]}"#) }
        #expect(throws: NetworkConfigError.notAnObject) { try parse("[1,2]") }
    }
}
