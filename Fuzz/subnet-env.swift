// fuzz-sources: Sources/WeftRegistry/SubnetEnvironmentFormat.swift Sources/WeftRegistry/NetworkConfig.swift Sources/WeftRegistry/JSONFields.swift
// subnet.env as a restarted node may find it (hand-edited, half-written by something else,
// not UTF-8), and what Weft writes. Invariants: reading any bytes gives keys without
// surrounding blanks, and keys and values without line breaks; the subnet read back from any text is a network
// (no host bits); what `render` writes reads back as the same four values.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let variables = SubnetEnvironmentFormat.variables(in: bytes)
    for (key, value) in variables {
        for text in [key, value] where text.contains("\n") || text.contains("\r") { violated("a line break in \(text.debugDescription)") }
        // A quoted value keeps the blanks inside its quotes, as in dotenv; a key never has any.
        if key.first == " " || key.last == " " || key.first == "\t" || key.last == "\t" { violated("blanks around key \(key.debugDescription)") }
    }
    if let subnet = variables["FLANNEL_SUBNET"].flatMap(NetworkConfig.parseCIDR) {
        guard subnet.network.rawValue & ~IPv4Prefix.mask(length: subnet.length) == 0 else { violated("host bits in \(subnet)") }
    }
    // The first 9 bytes as a network, a subnet length and an MTU for render.
    guard size >= 9 else { return 0 }
    let network = IPv4Prefix(address: IPv4Address(rawValue: UInt32(data[0]) << 24 | UInt32(data[1]) << 16), length: 8 + Int(data[2]) % 17)
    let subnet = IPv4Prefix(address: IPv4Address(rawValue: network.network.rawValue | UInt32(data[3]) << 8), length: min(30, network.length + 2 + Int(data[4]) % 8))
    let mtu = Int(data[5]) << 8 | Int(data[6])
    let text = SubnetEnvironmentFormat.render(network: network, subnet: subnet, mtu: mtu, ipMasquerade: data[7] & 1 == 1)
    let read = SubnetEnvironmentFormat.variables(in: Array(text.utf8))
    guard read["FLANNEL_NETWORK"] == "\(network)", read["FLANNEL_MTU"] == "\(mtu)", read["FLANNEL_IPMASQ"] == "\(data[7] & 1 == 1)",
          read["FLANNEL_SUBNET"].flatMap(NetworkConfig.parseCIDR) == subnet, read.count == 4
    else { violated("render does not read back: \(text)") }
    return 0
}
