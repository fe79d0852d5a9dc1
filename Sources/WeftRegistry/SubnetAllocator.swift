import WeftCore

/// Decides which subnet a node takes, as flanneld's `tryAcquireLease` does, without touching the
/// store: the caller lists the leases, asks for a plan, carries it out, and on a lost create race
/// asks again with the lost subnet excluded (flanneld v0.18+ exits instead).
public enum SubnetAllocator {
    /// flanneld picks randomly among at most this many free subnets, the first ones found from
    /// SubnetMin upward, so a scan of a huge network stops early.
    public static let maximumRandomCandidates = 100

    /// The plan for one acquisition attempt, in order: `leasesToDelete`, then `choice`.
    ///
    /// Rules, in flanneld's order:
    /// 1. Our own leases (same `publicIP`) that no longer fit the config (wrong length, or
    ///    outside [SubnetMin, SubnetMax]) are deleted; the first one that fits is renewed.
    /// 2. Else `previous` (from subnet.env) if it fits and overlaps no remaining lease.
    /// 3. Else one of the first `maximumRandomCandidates` free subnets from SubnetMin to
    ///    SubnetMax, chosen uniformly; a candidate is free when it overlaps no remaining lease.
    /// `excluding` removes subnets from rules 2 and 3 only, because renewing our own lease is
    /// not a create that can be lost to another node.
    public static func choose(
        config: NetworkConfig,
        leases: [SubnetLease],
        publicIP: IPv4Address,
        previous: IPv4Prefix?,
        excluding: Set<IPv4Prefix> = [],
        using generator: inout some RandomNumberGenerator
    ) -> AllocationPlan {
        var leasesToDelete: [SubnetLease] = []
        var renewable: SubnetLease?
        var remaining: [SubnetLease] = []
        for lease in leases {
            if lease.publicIP == publicIP {
                if !config.fits(lease.subnet) {
                    leasesToDelete.append(lease)
                    continue
                }
                if renewable == nil { renewable = lease }
            }
            remaining.append(lease)
        }
        if let renewable {
            return AllocationPlan(leasesToDelete: leasesToDelete, choice: .renew(renewable))
        }

        let taken = TakenRanges(remaining.map(\.subnet))
        if let previous, config.fits(previous), !excluding.contains(previous), !taken.overlaps(previous) {
            return AllocationPlan(leasesToDelete: leasesToDelete, choice: .previous(previous))
        }

        var free: [IPv4Prefix] = []
        free.reserveCapacity(maximumRandomCandidates)
        for candidate in config.candidateSubnets() where !excluding.contains(candidate) && !taken.overlaps(candidate) {
            free.append(candidate)
            if free.count == maximumRandomCandidates { break }
        }
        guard !free.isEmpty else { return AllocationPlan(leasesToDelete: leasesToDelete, choice: nil) }
        let pick = free[Int.random(in: 0..<free.count, using: &generator)]
        return AllocationPlan(leasesToDelete: leasesToDelete, choice: .random(pick))
    }
}

/// What `SubnetAllocator.choose` decided.
public struct AllocationPlan: Sendable, Equatable {
    /// How the subnet was chosen, which tells the caller whether to renew or create.
    public enum Choice: Sendable, Equatable {
        /// Our own fitting lease: rewrite it with a fresh TTL.
        case renew(SubnetLease)
        /// The subnet from subnet.env, free and fitting: create it (must not exist).
        case previous(IPv4Prefix)
        /// A free subnet picked at random: create it (must not exist).
        case random(IPv4Prefix)
    }

    /// Our own leases that no longer fit the config; delete them before taking `choice`.
    public var leasesToDelete: [SubnetLease]
    /// The subnet to take, or nil when the network is full ("no free subnet in <network>").
    public var choice: Choice?

    /// Makes a plan.
    public init(leasesToDelete: [SubnetLease], choice: Choice?) {
        self.leasesToDelete = leasesToDelete
        self.choice = choice
    }

    /// The chosen subnet whatever the reason, nil when none is free.
    public var subnet: IPv4Prefix? {
        switch choice {
        case .renew(let lease)?: return lease.subnet
        case .previous(let subnet)?, .random(let subnet)?: return subnet
        case nil: return nil
        }
    }
}

/// Address ranges held by leases, merged into sorted disjoint intervals so an overlap test is a
/// binary search; a linear scan per candidate would cost 65k × 65k on a nearly full /8.
private struct TakenRanges {
    /// Inclusive [first, last] address ranges, sorted and non-overlapping.
    private var ranges: [(first: UInt32, last: UInt32)] = []

    init(_ subnets: [IPv4Prefix]) {
        let sorted = subnets.map { (first: $0.network.rawValue, last: $0.network.rawValue | ~$0.mask) }
            .sorted { $0.first < $1.first }
        for range in sorted {
            if let previous = ranges.last, UInt64(range.first) <= UInt64(previous.last) + 1 {
                ranges[ranges.count - 1].last = max(previous.last, range.last)
            } else {
                ranges.append(range)
            }
        }
    }

    /// True when any address of `subnet` is taken.
    func overlaps(_ subnet: IPv4Prefix) -> Bool {
        let first = subnet.network.rawValue
        let last = first | ~subnet.mask
        // The first range that ends at or after `first`; it overlaps when it starts by `last`.
        var low = 0
        var high = ranges.count
        while low < high {
            let middle = (low + high) / 2
            if ranges[middle].last < first { low = middle + 1 } else { high = middle }
        }
        return low < ranges.count && ranges[low].first <= last
    }
}
