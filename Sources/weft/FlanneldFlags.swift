/// flanneld's command line as it is written in existing unit files and DaemonSets, turned into
/// Weft's, so that replacing the binary is enough:
/// - Go's flag syntax: `-name` and `--name`, `=value` or a separate value, and Go's boolean
///   spellings (`-no-offload=false`, `=0`, `=f`, `=TRUE`, …);
/// - a binary invoked as `flanneld` (a symlink or hard link) runs `weft run`;
/// - flanneld flags Weft does not implement: the value that means "off", or flanneld's default,
///   is accepted with a note on stderr; any other value is refused with the reason, on the
///   command line and as `FLANNELD_<NAME>`, because silently ignoring one would leave an
///   operator believing, say, masquerading or the Kubernetes subnet manager is on.
enum FlanneldFlags {
    /// What Weft does instead, for each flag it does not implement, and the values that change
    /// nothing (nil: a boolean, harmless only when false).
    struct Unimplemented {
        let reason: String
        let harmless: Set<String>?
        var isBoolean: Bool { harmless == nil }
    }

    static let notImplemented: [String: Unimplemented] = {
        let kubernetes = "Weft leases subnets from etcd (--etcd-endpoints) or its file registry (--subnet-dir), not from the Kubernetes API"
        func flag(_ reason: String) -> Unimplemented { Unimplemented(reason: reason, harmless: nil) }
        func option(_ reason: String, _ harmless: Set<String>) -> Unimplemented { Unimplemented(reason: reason, harmless: harmless) }
        return [
            "kube-subnet-mgr": flag(kubernetes), "kube-api-url": option(kubernetes, [""]), "kubeconfig-file": option(kubernetes, [""]),
            "kube-annotation-prefix": option(kubernetes, ["flannel.alpha.coreos.com"]),
            "net-config-path": option(kubernetes, ["/etc/kube-flannel/net-conf.json"]),
            "set-node-network-unavailable": flag(kubernetes),
            "ip-blackhole-route": flag("Weft does not add blackhole routes"),
            "iface-can-reach": option("choose the interface with --iface or --iface-regex", [""]),
            "public-ipv6": option("flannel's udp backend carries IPv4 only", [""]),
            // klog's flags, which flanneld accepts: Weft's verbosity is --log-level.
            "v": option("Weft logs at --log-level", ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]),
            "vmodule": option("Weft logs at --log-level", [""]),
            "log_backtrace_at": option("Weft logs at --log-level", ["", ":0"]),
        ]
    }()

    /// weft run's own booleans, which Go may write with a value, and their defaults: one that
    /// defaults to true is turned off as `--no-NAME`.
    static let runBooleans: [String: Bool] = [
        "skip-peer-address-check": false, "no-offload": false,
        "ip-masq": false, "ip-masq-fully-random-disable": false, "iptables-forward-rules": true,
    ]

    /// Go's strconv.ParseBool.
    static func goBool(_ text: Substring) -> Bool? {
        switch text {
        case "1", "t", "T", "true", "TRUE", "True": true
        case "0", "f", "F", "false", "FALSE", "False": false
        default: nil
        }
    }

    /// The arguments for Weft's parser, the notes to print for accepted flanneld flags, or the
    /// line that refuses them.
    enum Translation: Equatable {
        case arguments([String], notes: [String])
        case refused(String)
    }

    /// `arguments` without the program name; `program` is its base name.
    static func translate(_ arguments: [String], program: String, environment: Environment) -> Translation {
        var arguments = arguments
        if program == "flanneld" {
            if arguments.contains(where: { ["-version", "--version"].contains($0) }) { return .arguments(["--version"], notes: []) }
            arguments.insert("run", at: 0)
        }
        guard arguments.first == "run" else { return .arguments(arguments, notes: []) }
        var result = ["run"], notes: [String] = []
        var index = 1
        while index < arguments.count {
            var argument = arguments[index]
            index += 1
            if argument == "--" {
                result += arguments[(index - 1)...]
                break
            }
            // Go accepts one dash before a long name; Weft's parser wants two.
            if argument.hasPrefix("-") && !argument.hasPrefix("--") && argument.count >= 2 {
                let name = argument.dropFirst().prefix { $0 != "=" }
                if name.count > 1 || notImplemented[String(name)] != nil { argument = "-" + argument }  // -v is klog's
            }
            guard argument.hasPrefix("--") else {
                result.append(argument)
                continue
            }
            let body = argument.dropFirst(2)
            let name = String(body.prefix { $0 != "=" })
            let inlineValue = body.firstIndex(of: "=").map { body[body.index(after: $0)...] }
            if let defaultValue = runBooleans[name], let inlineValue {
                guard let on = goBool(inlineValue) else { return .refused("\(argument): '\(inlineValue)' is not a boolean (true, false, 1, 0, t, f)") }
                if on { result.append("--" + name) } else if defaultValue { result.append("--no-" + name) }
                continue
            }
            guard let flag = notImplemented[name] else {
                result.append(argument)
                continue
            }
            let value: String?
            if flag.isBoolean {
                value = inlineValue.map(String.init)
            } else if let inlineValue {
                value = String(inlineValue)
            } else if index < arguments.count {
                value = arguments[index]
                index += 1
            } else {
                value = nil
            }
            if let note = accepted(flag, value: value) {
                notes.append("--\(name)\(value.map { "=" + $0 } ?? ""): \(note)")
            } else {
                return .refused("\(argument) is a flanneld flag that Weft does not implement: \(flag.reason)")
            }
        }
        for (name, flag) in notImplemented.sorted(by: { $0.key < $1.key }) {
            let variable = "FLANNELD_" + String(name.uppercased().map { $0 == "-" ? "_" : $0 })
            guard let value = environment[variable] else { continue }
            if let note = accepted(flag, value: value) {
                notes.append("\(variable)=\(value): \(note)")
            } else {
                return .refused("\(variable) is set, but Weft does not implement flanneld's --\(name): \(flag.reason)")
            }
        }
        return .arguments(result, notes: notes)
    }

    /// The note for a value that changes nothing, or nil when Weft would have to act on it.
    /// A boolean given without a value means true.
    private static func accepted(_ flag: Unimplemented, value: String?) -> String? {
        if let harmless = flag.harmless {
            guard let value, harmless.contains(value) else { return nil }
        } else if let value {
            guard goBool(Substring(value)) == false else { return nil }
        } else {
            return nil
        }
        return "accepted and ignored (\(flag.reason))"
    }
}
