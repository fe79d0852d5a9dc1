import Testing
@testable import weft

@Suite struct FlanneldFlagsTests {
    private func translate(_ arguments: [String], program: String = "weft", environment: [String: String] = [:]) -> FlanneldFlags.Translation {
        FlanneldFlags.translate(arguments, program: program, environment: Environment(environment))
    }

    @Test("Go's single-dash long flags, with = or a separate value, become weft run's")
    func singleDash() {
        #expect(translate(["run", "-etcd-endpoints=http://198.18.0.1:2379", "-etcd-prefix", "/p", "-iface=ul0", "-h"])
                == .arguments(["run", "--etcd-endpoints=http://198.18.0.1:2379", "--etcd-prefix", "/p", "--iface=ul0", "-h"], notes: []))
        #expect(translate(["run", "--", "-x"]) == .arguments(["run", "--", "-x"], notes: []), "nothing after -- is touched")
        #expect(translate(["capture", "-iface"]) == .arguments(["capture", "-iface"], notes: []), "only run speaks flanneld")
    }

    @Test("a binary named flanneld runs weft run; -version prints the version")
    func invokedAsFlanneld() {
        #expect(translate(["-etcd-endpoints=http://e:2379"], program: "flanneld") == .arguments(["run", "--etcd-endpoints=http://e:2379"], notes: []))
        #expect(translate(["-version"], program: "flanneld") == .arguments(["--version"], notes: []))
    }

    @Test("Go's boolean spellings for weft run's own flags")
    func booleans() {
        #expect(translate(["run", "-no-offload=true", "--skip-peer-address-check=0"]) == .arguments(["run", "--no-offload"], notes: []))
        #expect(translate(["run", "--no-offload=F"]) == .arguments(["run"], notes: []))
        #expect(translate(["run", "--no-offload=maybe"]) == .refused("--no-offload=maybe: 'maybe' is not a boolean (true, false, 1, 0, t, f)"))
        #expect(translate(["run", "-ip-masq", "--ip-masq-fully-random-disable=true", "-iptables-forward-rules=false"])
                == .arguments(["run", "--ip-masq", "--ip-masq-fully-random-disable", "--no-iptables-forward-rules"], notes: []),
                "a flag that defaults to true is turned off as --no-NAME")
        #expect(translate(["run", "-ip-masq=f", "-iptables-forward-rules=1"]) == .arguments(["run", "--iptables-forward-rules"], notes: []))
    }

    @Test("an unimplemented flanneld flag set to off or to flanneld's default is accepted with a note")
    func harmlessValues() {
        guard case .arguments(let arguments, let notes) = translate(
            ["run", "--ip-masq=false", "-iptables-resync=5", "-healthz-port", "0", "-v=2", "-kube-subnet-mgr=FALSE"],
            environment: ["FLANNELD_V": "0"])
        else {
            Issue.record("refused")
            return
        }
        #expect(arguments == ["run", "--iptables-resync=5", "--healthz-port", "0"], "implemented flags pass through in weft's spelling")
        #expect(notes.count == 3)
        #expect(notes.first == "--v=2: accepted and ignored (Weft logs at --log-level)")
        #expect(notes.last?.hasPrefix("FLANNELD_V=0: accepted") == true)
    }

    @Test("any other value is refused with the reason", arguments: [
        (["run", "-ip-blackhole-route"], [:], "--ip-blackhole-route is a flanneld flag that Weft does not implement: Weft does not add blackhole routes"),
        (["run", "-kube-subnet-mgr=true"], [:], "--kube-subnet-mgr=true is a flanneld flag"),
        (["run", "-kube-subnet-mgr"], [:], "--kube-subnet-mgr is a flanneld flag"),
        (["run"], ["FLANNELD_KUBE_SUBNET_MGR": "true"], "FLANNELD_KUBE_SUBNET_MGR is set, but Weft does not implement flanneld's --kube-subnet-mgr"),
        (["run"], ["FLANNELD_VMODULE": "main=4"], "FLANNELD_VMODULE is set"),
    ] as [([String], [String: String], String)])
    func refused(arguments: [String], environment: [String: String], mention: String) {
        guard case .refused(let line) = translate(arguments, environment: environment) else {
            Issue.record("accepted \(arguments)")
            return
        }
        #expect(line.hasPrefix(mention), "\(line)")
    }
}
