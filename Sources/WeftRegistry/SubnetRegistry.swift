import WeftCore

/// Where subnet leases live: the embedded file registry, or etcd with flanneld's keys.
/// Each lease is one key, `<prefix>/subnets/<a.b.c.d>-<len>`, as flanneld stores it, so Weft and
/// flanneld nodes sharing a store see each other.
public protocol SubnetRegistry: Sendable {}
