import Foundation
import Testing
import WeftTestSupport

extension NamespaceTests {
/// A node whose flanneld is replaced by Weft without touching its unit file or its etcd data:
/// the binary becomes a link to weft (tools/install --flanneld-link), and the packaged unit's
/// ExecStart line, environment file and Type=notify work as they did.
@Suite(.serialized, .enabled(if: Environment.canRunNamespaces && findInPath("etcd") != nil && findInPath("iptables") != nil,
                             Comment(rawValue: Environment.missingForNamespaces ?? "needs etcd-server and iptables (tools/prereqs installs them)")))
struct FlanneldReplacementTests {
    /// What systemd would run for a packaged flanneld.service (CoreOS/Fedora style):
    ///   Type=notify
    ///   EnvironmentFile=/etc/sysconfig/flanneld
    ///   ExecStart=/usr/bin/flanneld -etcd-endpoints=${FLANNEL_ETCD_ENDPOINTS} -etcd-prefix=${FLANNEL_ETCD_PREFIX} $FLANNEL_OPTIONS
    /// with the environment file's FLANNEL_OPTIONS="-iface=ul0 -ip-masq" and FLANNELD_* variables.
    static let execStart = "/usr/bin/flanneld -etcd-endpoints=http://198.18.0.1:2379 -etcd-prefix=/coreos.com/network -iface=ul0 -ip-masq"

    @Test("a packaged flanneld unit's ExecStart runs Weft through the flanneld link: flanneld's lease kept, READY=1, masquerading, pods talk")
    func packagedUnit() throws {
        let lab = try Lab(nodes: 2)
        _ = try lab.startEtcd()
        try lab.putEtcdNetConfig()
        // What flanneld left in etcd for this node: its lease, in flanneld's format.
        try lab.etcdkv(["put", "/coreos.com/network/subnets/10.244.1.0-24", #"{"PublicIP":"198.18.0.1","PublicIPv6":null}"#])

        // tools/install --flanneld-link /usr/bin/flanneld, into a directory of the test's own.
        let root = "\(lab.stateDirectory)/root"
        try FileManager.default.createDirectory(atPath: root + "/usr/bin", withIntermediateDirectories: true)
        try "#!/bin/sh\necho 'the original flanneld'\n".write(toFile: root + "/usr/bin/flanneld", atomically: true, encoding: .utf8)
        let installed = try run([Environment.tool("install"), "--destdir", root, "--flanneld-link", "/usr/bin/flanneld", "--no-unit"],
                                timeout: 60, environment: ["WEFT_BIN": Environment.weftBinary, "WEFT_ALLOW_DYNAMIC": "1"])
        #expect(installed.status == 0, "\(installed.transcript)")
        // The link points at /usr/local/bin/weft, which is under `root` here: run the link's
        // target as systemd would run the unit's path, by a link of the same name.
        let flanneld = "\(lab.stateDirectory)/flanneld"
        try FileManager.default.createSymbolicLink(atPath: flanneld, withDestinationPath: root + "/usr/local/bin/weft")

        let (notify, listener) = try lab.startNotifyListener(in: "nodeA")
        let command = Self.execStart.split(separator: " ").map(String.init).dropFirst()
        // The unit's EnvironmentFile: flanneld's variables, each one honoured.
        let nodeA = try lab.spawn("nodeA", ["env", "NOTIFY_SOCKET=\(notify)", "FLANNELD_SUBNET_FILE=\(lab.stateDirectory)/subnet-1.env",
                                            "FLANNELD_IPTABLES_RESYNC=5", "FLANNELD_IPTABLES_FORWARD_RULES=false",
                                            "FLANNELD_HEALTHZ_PORT=8081", flanneld] + command)
        #expect(lab.waitForLog(nodeA, containing: "renewed our lease 10.244.1.0/24", seconds: 15), "flanneld's lease is taken over: \(nodeA.errorOutput)")
        #expect(lab.waitForLog(nodeA, containing: "forwarding 10.244.1.0/24 on flannel0", seconds: 15), "\(nodeA.errorOutput)")
        _ = try lab.startWeft("nodeB", try lab.registryArguments(node: 2, registry: .etcd))
        #expect(lab.waitForLog(nodeA, containing: "peers changed: 1 route(s)", seconds: 10), "\(nodeA.errorOutput)")

        #expect(try lab.ping(from: "podA", "10.244.2.2", count: 2).status == 0)
        let subnetFile = try String(contentsOfFile: "\(lab.stateDirectory)/subnet-1.env", encoding: .utf8)
        #expect(subnetFile == "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n")
        let nat = try lab.exec("nodeA", ["iptables", "-t", "nat", "-S", "FLANNEL-POSTRTG"])
        #expect(nat.output.contains("-j MASQUERADE --random-fully"), "\(nat)")
        let filter = try lab.exec("nodeA", ["iptables", "-S"])
        #expect(!filter.output.contains("FLANNEL-FWD"), "FLANNELD_IPTABLES_FORWARD_RULES=false: \(filter)")
        let ready = try lab.exec("nodeA", ["python3", "-c", "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8081/readyz', timeout=5).read().decode())"])
        #expect(ready.output == "ready\n\n", "FLANNELD_HEALTHZ_PORT=8081: \(ready)")
        let lease = try lab.etcdkv(["get", "/coreos.com/network/subnets/10.244.1.0-24"])
        #expect(lease.output == #"{"PublicIP":"198.18.0.1","PublicIPv6":null}"#, "the etcd data is flanneld's as before: \(lease)")

        nodeA.signal(SIGTERM)
        #expect(nodeA.wait(seconds: 15).status == 0)
        let messages = listener.wait(seconds: 10).output.split(separator: "\n").map(String.init)
        #expect(messages.first?.hasPrefix("READY=1 | STATUS=forwarding 10.244.1.0/24 on flannel0") == true, "\(messages)")
        #expect(messages.last == "STOPPING=1", "\(messages)")
        #expect(try String(contentsOfFile: root + "/usr/bin/flanneld.orig", encoding: .utf8).contains("the original flanneld"),
                "the replaced binary is kept for rolling back")
    }
}
}
