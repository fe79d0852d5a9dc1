// fuzz-sources: Sources/WeftRegistry/JSONFields.swift Sources/WeftRegistry/NetworkConfig.swift Sources/WeftRegistry/SubnetLease.swift
// What a registry hands a node, from anyone who can write to etcd or the registry directory:
// the net config, lease values and lease keys (the first byte picks which). Invariants: a
// parse either refuses with its typed error or yields a config whose subnets fit flannel's
// rules, and what Weft writes parses back to what it meant.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    switch data[0] % 3 {
    case 0: netConfig(bytes)
    case 1: leaseValue(bytes)
    default: leaseKey(bytes)
    }
    return 0
}

private func netConfig(_ bytes: [UInt8]) {
    guard let config = try? NetworkConfig.parse(bytes) else { return }
    let network = config.network
    guard network.length <= 28 else { violated("accepted a network smaller than /28: \(network)") }
    guard config.subnetLength >= network.length + 2, config.subnetLength <= 30 else { violated("SubnetLen \(config.subnetLength) in \(network)") }
    guard network.contains(config.subnetMin), network.contains(config.subnetMax), config.subnetMin <= config.subnetMax else {
        violated("subnet bounds \(config.subnetMin)–\(config.subnetMax) outside \(network)")
    }
    guard config.port != 0, config.backendType == "udp" else { violated("port \(config.port), backend \(config.backendType)") }
    guard config.candidateCount >= 1 else { violated("no candidate subnets") }
    // What `weft run --network` writes for this network and port reads back the same.
    guard let again = try? NetworkConfig.parse(NetworkConfig.initialValue(network: network, port: config.port)),
          again.network == network, again.port == config.port else { violated("initialValue does not round-trip for \(network)") }
}

private func leaseValue(_ bytes: [UInt8]) {
    guard let attributes = try? SubnetLease.decodeValue(bytes) else { return }
    guard let again = try? SubnetLease.decodeValue(SubnetLease.encodeValue(publicIP: attributes.publicIP)),
          again.publicIP == attributes.publicIP else { violated("encodeValue does not round-trip for \(attributes.publicIP)") }
}

private func leaseKey(_ bytes: [UInt8]) {
    let key = String(decoding: bytes, as: UTF8.self)
    guard let subnet = SubnetLease.subnet(fromKey: key) else { return }
    guard subnet.network.rawValue & ~IPv4Prefix.mask(length: subnet.length) == 0 else { violated("host bits in \(subnet) from \(key)") }
    guard SubnetLease.subnet(fromKey: SubnetLease.key(for: subnet, prefix: "/coreos.com/network")) == subnet else {
        violated("key(for:) does not round-trip for \(subnet)")
    }
}
