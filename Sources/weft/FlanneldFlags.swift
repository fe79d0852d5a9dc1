/// flanneld flags Weft does not implement. Silently ignoring one would leave an operator who
/// swapped flanneld for Weft believing, say, masquerading or the Kubernetes subnet manager is
/// on; so each is refused with the reason, on the command line and as `FLANNELD_<NAME>`.
enum FlanneldFlags {
    static let notImplemented: [String: String] = {
        let kubernetes = "Weft leases subnets from etcd (--etcd-endpoints) or its file registry (--subnet-dir), not from the Kubernetes API"
        let iptables = "Weft does not manage iptables rules"
        return [
            "kube-subnet-mgr": kubernetes, "kube-api-url": kubernetes, "kubeconfig-file": kubernetes,
            "kube-annotation-prefix": kubernetes, "net-config-path": kubernetes,
            "set-node-network-unavailable": kubernetes,
            "ip-masq": iptables + " (FLANNEL_IPMASQ is written as false)",
            "ip-masq-fully-random-disable": iptables, "iptables-resync": iptables,
            "iptables-forward-rules": iptables,
            "ip-blackhole-route": "Weft does not add blackhole routes",
            "iface-can-reach": "choose the interface with --iface or --iface-regex",
            "public-ipv6": "flannel's udp backend carries IPv4 only",
            "healthz-ip": "Weft has no health endpoint yet", "healthz-port": "Weft has no health endpoint yet",
            "v": "use --log-level",
        ]
    }()

    /// The first unimplemented flanneld flag among `arguments` or in the environment, as an
    /// error line; nil when there is none. A boolean set to its default ("false") is harmless.
    static func refusal(arguments: [String], environment: Environment) -> String? {
        for argument in arguments where argument.hasPrefix("-") && argument != "-" && argument != "--" {
            let name = argument.drop { $0 == "-" }
            let flag = name.split(separator: "=", maxSplits: 1).first.map(String.init) ?? ""
            let value = name.split(separator: "=", maxSplits: 1).dropFirst().first
            if let reason = notImplemented[flag], value != "false" {
                return "\(argument) is a flanneld flag that Weft does not implement: \(reason)"
            }
        }
        for (flag, reason) in notImplemented.sorted(by: { $0.key < $1.key }) where flag != "v" {
            let variable = "FLANNELD_" + String(flag.uppercased().map { $0 == "-" ? "_" : $0 })
            if let value = environment[variable], value != "false" {
                return "\(variable) is set, but Weft does not implement flanneld's --\(flag): \(reason)"
            }
        }
        return nil
    }
}
