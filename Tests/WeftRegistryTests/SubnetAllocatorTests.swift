import Testing
import WeftDataPathTesting
import WeftCore
import WeftRegistry


@Suite struct SubnetAllocatorTests {
    private let ours = IPv4Address("198.18.0.1")!
    private let peer = IPv4Address("198.18.0.2")!

    private func config(_ json: String = #"{"Network":"10.244.0.0/16"}"#) throws -> NetworkConfig {
        try NetworkConfig.parse(Array(json.utf8))
    }

    private func lease(_ subnet: String, _ publicIP: IPv4Address) -> SubnetLease {
        SubnetLease(subnet: IPv4Prefix(subnet)!, publicIP: publicIP, expiration: 1_700_000_000)
    }

    private func choose(
        _ config: NetworkConfig, _ leases: [SubnetLease], previous: String? = nil,
        excluding: Set<IPv4Prefix> = [], seed: UInt64 = 1
    ) -> AllocationPlan {
        var generator = SplitMix64(seed: seed)
        return SubnetAllocator.choose(
            config: config, leases: leases, publicIP: ours, previous: previous.flatMap(IPv4Prefix.init),
            excluding: excluding, using: &generator)
    }

    @Test func renewsOurOwnFittingLease() throws {
        let own = lease("10.244.7.0/24", ours)
        let plan = choose(try config(), [lease("10.244.1.0/24", peer), own], previous: "10.244.9.0/24")
        #expect(plan == AllocationPlan(leasesToDelete: [], choice: .renew(own)))
        #expect(plan.subnet == own.subnet)
    }

    @Test func deletesOurOwnLeasesThatNoLongerFit() throws {
        let tooShort = lease("10.244.8.0/25", ours)
        let outside = lease("10.245.0.0/24", ours)
        let own = lease("10.244.7.0/24", ours)
        let plan = choose(try config(), [tooShort, outside, own])
        #expect(plan.leasesToDelete == [tooShort, outside])
        #expect(plan.choice == .renew(own))
    }

    @Test func aDeletedMisfitFreesItsSpaceForTheNewChoice() throws {
        // Our old /23 covered 10.244.8.0-10.244.9.255; once deleted, the previous /24 in it is free.
        let misfit = lease("10.244.8.0/23", ours)
        let plan = choose(try config(), [misfit], previous: "10.244.9.0/24")
        #expect(plan == AllocationPlan(leasesToDelete: [misfit], choice: .previous(IPv4Prefix("10.244.9.0/24")!)))
    }

    @Test func reusesThePreviousSubnetWhenFree() throws {
        let plan = choose(try config(), [lease("10.244.1.0/24", peer)], previous: "10.244.42.0/24")
        #expect(plan.choice == .previous(IPv4Prefix("10.244.42.0/24")!))
    }

    @Test func skipsThePreviousSubnetWhenTakenOrNotFitting() throws {
        let taken = choose(try config(), [lease("10.244.42.0/24", peer)], previous: "10.244.42.0/24")
        #expect(taken.subnet != IPv4Prefix("10.244.42.0/24"))
        if case .random? = taken.choice {} else { Issue.record("expected a random choice, got \(String(describing: taken.choice))") }
        // A peer's wider lease covering it counts as taken too.
        let covered = choose(try config(), [lease("10.244.40.0/22", peer)], previous: "10.244.42.0/24")
        #expect(covered.subnet.map { !IPv4Prefix("10.244.40.0/22")!.contains($0) } == true)
        let first = choose(try config(), [], previous: "10.244.0.0/24")
        #expect(first.subnet != IPv4Prefix("10.244.0.0/24"))
        let wrongLength = choose(try config(), [], previous: "10.244.42.0/25")
        #expect(wrongLength.subnet?.length == 24)
    }

    @Test func randomChoiceIsAlwaysFreeAlignedAndInRange() throws {
        let config = try config(#"{"Network":"10.0.0.0/20","SubnetLen":26,"SubnetMin":"10.0.2.0","SubnetMax":"10.0.12.192"}"#)
        var seedGenerator = SplitMix64(seed: 0xC0FFEE)
        for seed in 0..<300 as Range<UInt64> {
            // A different random set of peer leases each round, some wider than SubnetLen.
            var leases: [SubnetLease] = []
            for _ in 0..<Int.random(in: 0..<60, using: &seedGenerator) {
                let length = [24, 26, 26, 26, 27].randomElement(using: &seedGenerator)!
                let address = IPv4Address(rawValue: 0x0A00_0000 | UInt32.random(in: 0..<4096, using: &seedGenerator))
                leases.append(SubnetLease(subnet: IPv4Prefix(address: address, length: length), publicIP: peer))
            }
            let plan = choose(config, leases, seed: seed)
            guard let subnet = plan.subnet else {
                // Only acceptable when every candidate really is taken.
                #expect(config.candidateSubnets().allSatisfy { candidate in
                    leases.contains { $0.subnet.contains(candidate) || candidate.contains($0.subnet) }
                })
                continue
            }
            #expect(config.fits(subnet))
            #expect(subnet.network.rawValue & ~subnet.mask == 0)
            #expect(!leases.contains { $0.subnet.contains(subnet) || subnet.contains($0.subnet) },
                    "seed \(seed) chose \(subnet), which overlaps a lease")
        }
    }

    @Test func choosesAmongTheFirstHundredFreeSubnetsUniformly() throws {
        let config = try config(#"{"Network":"10.0.0.0/8"}"#)
        // Every even-numbered /24 from 10.0.2.0 to 10.1.144.0 is taken, so the first 100 free ones
        // are the odd third octets 10.0.1.0 ... 10.0.199.0 and later free ones must never be chosen.
        let leases = stride(from: 2, through: 400, by: 2).map { lease("10.\($0 / 256).\($0 % 256).0/24", peer) }
        var seen: Set<IPv4Prefix> = []
        for seed in 0..<2000 as Range<UInt64> {
            let subnet = try #require(choose(config, leases, seed: seed).subnet)
            #expect(subnet.network.rawValue >= IPv4Address("10.0.1.0")!.rawValue)
            #expect(subnet.network.rawValue <= IPv4Address("10.0.199.0")!.rawValue)
            #expect((subnet.network.rawValue >> 8) & 1 == 1)
            seen.insert(subnet)
        }
        // 2000 draws over 100 equally likely subnets miss one with probability about 100 × e^-20.
        #expect(seen.count == 100)
    }

    @Test func fullNetworkGivesNoSubnet() throws {
        let config = try config(#"{"Network":"10.0.0.0/28"}"#)
        let leases = [lease("10.0.0.4/30", peer), lease("10.0.0.8/30", peer), lease("10.0.0.12/30", peer)]
        let plan = choose(config, leases, previous: "10.0.0.8/30")
        #expect(plan == AllocationPlan(leasesToDelete: [], choice: nil))
        #expect(plan.subnet == nil)
        // One lease covering everything fills it too.
        #expect(choose(config, [lease("10.0.0.0/28", peer)]).subnet == nil)
    }

    @Test func excludingSkipsSubnetsLostInACreateRace() throws {
        let config = try config(#"{"Network":"10.0.0.0/28"}"#)
        let lost = IPv4Prefix("10.0.0.8/30")!
        let plan = choose(config, [lease("10.0.0.4/30", peer)], previous: "10.0.0.8/30", excluding: [lost])
        #expect(plan.choice == .random(IPv4Prefix("10.0.0.12/30")!))
        let none = choose(config, [lease("10.0.0.4/30", peer)], excluding: [lost, IPv4Prefix("10.0.0.12/30")!])
        #expect(none.subnet == nil)
    }

    @Test func excludingDoesNotStopARenewal() throws {
        let own = lease("10.244.7.0/24", ours)
        #expect(choose(try config(), [own], excluding: [own.subnet]).choice == .renew(own))
    }
}
