import Foundation
import Testing
import WeftLinux
import WeftTestSupport

/// `weft`'s command line: bad input is one clear line on stderr and a non-zero exit.
@Suite(.enabled(if: access(Environment.weftBinary, X_OK) == 0, "no weft binary: run swift build first"))
struct CommandLineTests {
    @Test("the unit file in dist/ passes systemd-analyze verify without a warning",
          .enabled(if: findInPath("systemd-analyze") != nil, "systemd-analyze not found (Debian's systemd package)"))
    func unitFileVerifies() throws {
        let unit = try String(contentsOfFile: Environment.repository.appendingPathComponent("dist/weft.service").path, encoding: .utf8)
        #expect(unit.contains("Type=notify"))
        // verify checks that ExecStart's binary exists: point it at the one under test.
        let directory = try makeTemporaryDirectory("unit")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/weft.service"
        try unit.replacingOccurrences(of: "/usr/local/bin/weft", with: Environment.weftBinary).write(toFile: path, atomically: true, encoding: .utf8)
        let result = try run(["systemd-analyze", "verify", path], timeout: 60)
        #expect(result.status == 0 && result.errorOutput.isEmpty && result.output.isEmpty, "\(result)")
    }

    @Test("tools/install puts weft, the flanneld link and the unit in place; run again it changes nothing else")
    func install() throws {
        let root = try makeTemporaryDirectory("install")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let environment = ["WEFT_BIN": Environment.weftBinary, "WEFT_ALLOW_DYNAMIC": "1"]
        for round in 1...2 {
            let result = try run([Environment.tool("install"), "--destdir", root, "--prefix", "/opt/weft"], timeout: 60, environment: environment)
            #expect(result.status == 0, "round \(round): \(result.transcript)")
        }
        let manager = FileManager.default
        #expect(manager.isExecutableFile(atPath: root + "/opt/weft/bin/weft"))
        #expect(try manager.destinationOfSymbolicLink(atPath: root + "/opt/weft/bin/flanneld") == "weft")
        let version = try run([root + "/opt/weft/bin/flanneld", "-version"], timeout: 20)
        #expect(version.output.trimmingCharacters(in: .whitespacesAndNewlines) == "0.1.0", "\(version.transcript)")
        let unit = try String(contentsOfFile: root + "/etc/systemd/system/weft.service", encoding: .utf8)
        #expect(unit.contains("ExecStart=/opt/weft/bin/weft run $WEFT_OPTIONS"), "\(unit)")
        #expect(try manager.contentsOfDirectory(atPath: root + "/opt/weft/bin").sorted() == ["flanneld", "weft"], "no temporary file left")

        // The debug build under test links the Swift runtime, which a node without the toolchain
        // lacks: refused unless allowed.
        if try run(["ldd", Environment.weftBinary]).output.contains("libswift") {
            let refused = try run([Environment.tool("install"), "--destdir", root], timeout: 60, environment: ["WEFT_BIN": Environment.weftBinary])
            #expect(refused.status == 1 && refused.errorOutput.contains("links the Swift runtime dynamically"), "\(refused.transcript)")
        }
    }

    @Test("bad flags give one error line naming the problem", arguments: [
        (["run", "--subnet", "10.244.1.0/24"], "--subnet needs --network"),
        (["run", "--network", "10.244.0.0/33", "--subnet", "10.244.1.0/24"], "'10.244.0.0/33' is invalid for '--network <cidr>': the prefix length must be 0 to 32"),
        (["run", "--network", "10.244.0.0/16", "--subnet", "10.244.1.7/24"], "'10.244.1.7/24' is invalid for '--subnet <cidr>': host bits are set: the network is 10.244.1.0/24"),
        (["run", "--network", "10.244.0.0/16", "--subnet", "10.244.1.0/24", "--public-ip", "198.18.0.300"], "'198.18.0.300' is invalid for '--public-ip <ip>'"),
        (["bench", "client", "--server", "198.18"], "'198.18' is invalid for '--server <addr>'"),
        (["run", "--network", "10.244.0.0/16", "--subnet", "10.245.1.0/24"], "inside --network"),
        (["run", "--network", "10.244.0.0/16", "--subnet", "10.244.1.0/24", "--peer", "10.244.2.0/24"], "subnet=ip"),
        (["run", "--network", "10.244.0.0/16", "--subnet", "10.244.1.0/24", "--peer", "10.244.1.0/25=198.18.0.2"], "overlaps"),
        (["run", "--network", "10.244.0.0/16", "--subnet", "10.244.1.0/24", "--bogus"], "--bogus"),
        (["run", "--kube-subnet-mgr"], "--kube-subnet-mgr is a flanneld flag that Weft does not implement"),
        (["run", "--subnet-lease-renew-margin", "1440"], "1 to 1439 minutes"),
        (["run", "--peer", "10.244.2.0/24=198.18.0.2"], "--peer and --peers-file need --subnet"),
        (["run", "--iface-regex", "(198", "--network", "10.244.0.0/16", "--subnet", "10.244.1.0/24"], "--iface-regex '(198' is not a valid regular expression"),
        (["run", "--iface-can-reach", "198.18.0.9"], "--iface-can-reach is a flanneld flag that Weft does not implement"),
    ])
    func badFlags(arguments: [String], mention: String) throws {
        let result = try runWeft(arguments)
        #expect(result.status == 64, "a usage error exits 64 (EX_USAGE): \(result.status)")
        let lines = result.errorOutput.split(separator: "\n")
        #expect(lines.count == 1, "one line: \(result.errorOutput)")
        #expect(result.errorOutput.hasPrefix("weft: ") && result.errorOutput.contains(mention), "\(result.errorOutput)")
    }

    @Test("flanneld's variables set flanneld's flags: FLANNELD_PUBLIC_IP is checked like --public-ip")
    func environmentVariables() throws {
        let result = try runWeft(["run", "--network", "10.244.0.0/16", "--subnet", "10.244.1.0/24"], environment: ["FLANNELD_PUBLIC_IP=198.18.0.300"])
        #expect(result.status != 0)
        #expect(result.errorOutput.contains("FLANNELD_PUBLIC_IP '198.18.0.300' is not an IPv4 address"), "\(result.transcript)")
    }

    @Test("flannel0 has IPv6 turned off, so the kernel's IPv6 chatter never reaches the drop counters",
          .enabled(if: geteuid() == 0 && access("/dev/net/tun", R_OK | W_OK) == 0, "needs root and /dev/net/tun (runs weft in its own namespace)"))
    func noIPv6OnTheTun() throws {
        let script = """
            ip link add d1 type veth peer name d1p && ip addr add 198.18.6.1/24 dev d1 && ip link set d1 up &&
            sysctl -qw net.ipv6.conf.default.disable_ipv6=0 || exit 1
            '\(Environment.weftBinary)' run --iface d1 --network 10.244.0.0/16 --subnet 10.244.1.0/24 --peer 10.244.2.0/24=198.18.6.2 &
            weft=$!
            for i in $(seq 50); do [ -e /proc/sys/net/ipv6/conf/flannel0/disable_ipv6 ] && break; sleep 0.1; done
            sleep 1; echo "disable_ipv6=$(cat /proc/sys/net/ipv6/conf/flannel0/disable_ipv6)"; kill -TERM $weft; wait $weft
            """
        let result = try run(["unshare", "--net", "sh", "-c", script], timeout: 30)
        #expect(result.output.contains("disable_ipv6=1"), "\(result.transcript)")
        #expect(result.output.contains("drops: none"), "no ipv6 drops after a second up: \(result.transcript)")
    }

    @Test("a binary named flanneld is weft run with flanneld's command line")
    func invokedAsFlanneld() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-flanneld-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let flanneld = directory + "/flanneld"
        try FileManager.default.createSymbolicLink(atPath: flanneld, withDestinationPath: Environment.weftBinary)
        let help = try run([flanneld, "-help"], timeout: 20)
        #expect(help.status == 0 && help.output.contains("--etcd-endpoints"), "run's help: \(help.transcript)")
        let version = try run([flanneld, "-version"], timeout: 20)
        #expect(version.status == 0 && version.output.trimmingCharacters(in: .whitespacesAndNewlines) == "0.1.0", "\(version.transcript)")
        let refused = try run([flanneld, "-etcd-endpoints=http://198.18.0.1:2379", "-kube-subnet-mgr"], timeout: 20)
        #expect(refused.status == 64 && refused.errorOutput.hasPrefix("weft: --kube-subnet-mgr is a flanneld flag that Weft does not implement"), "\(refused.transcript)")
        let accepted = try run([flanneld, "-kube-subnet-mgr=false", "-ip-masq=true", "-subnet=10.244.1.0/24"], timeout: 20)
        #expect(accepted.errorOutput.contains("weft: note: --kube-subnet-mgr=false: accepted and ignored"), "\(accepted.transcript)")
        #expect(accepted.errorOutput.contains("--subnet needs --network"), "the rest is parsed as weft run's: \(accepted.transcript)")
    }

    @Test("--help explains run's flags, including flanneld's environment variables")
    func help() throws {
        let result = try runWeft(["run", "--help"])
        #expect(result.status == 0)
        for word in ["--iface", "--network", "--subnet", "--peer", "--port", "--public-ip", "FLANNELD_IFACE"] {
            #expect(result.output.contains(word), "\(word) in help")
        }
    }

    /// Runs weft in a new, empty network namespace when root, so that even an argument list that
    /// turned out valid could never create a device in this machine's own namespace.
    private func runWeft(_ arguments: [String], environment: [String] = []) throws -> CommandResult {
        let isolation = geteuid() == 0 ? ["unshare", "--net"] : []
        return try run(["env"] + environment + isolation + [Environment.weftBinary] + arguments, timeout: 20)
    }

    /// In a namespace of its own with two veth interfaces: the pattern matches an address of the
    /// second, and weft binds there (its start-up log line names the interface and address).
    @Test("--iface-regex picks the interface by address, then by name, as flanneld does",
          .enabled(if: geteuid() == 0 && access("/dev/net/tun", R_OK | W_OK) == 0, "needs root and /dev/net/tun (runs weft in its own namespace)"))
    func ifaceRegex() throws {
        for (patterns, expected) in [(["^198\\.18\\.7\\."], "via d2 198.18.7.1:8285"), (["nomatch", "^d1$"], "via d1 198.18.6.1:8285")] {
            let flags = patterns.map { "--iface-regex '\($0)'" }.joined(separator: " ")
            let script = """
                ip link add d1 type veth peer name d1p && ip addr add 198.18.6.1/24 dev d1 && ip link set d1 up &&
                ip link add d2 type veth peer name d2p && ip addr add 198.18.7.1/24 dev d2 && ip link set d2 up &&
                timeout --preserve-status -s TERM 2 '\(Environment.weftBinary)' run \(flags) --network 10.244.0.0/16 --subnet 10.244.1.0/24 --peer 10.244.2.0/24=198.18.6.2
                """
            let result = try run(["unshare", "--net", "sh", "-c", script], timeout: 20)
            #expect(result.status == 0, "\(result.transcript)")
            #expect(result.errorOutput.contains(expected), "\(patterns): \(result.errorOutput)")
        }
        let none = try run(["unshare", "--net", "sh", "-c", "ip link add d1 type veth peer name d1p && ip addr add 198.18.6.1/24 dev d1 && '\(Environment.weftBinary)' run --iface-regex '^10\\.' --network 10.244.0.0/16 --subnet 10.244.1.0/24"], timeout: 20)
        #expect(none.status != 0 && none.errorOutput.contains("--iface-regex ^10\\.: no interface with an IPv4 address matches (interfaces here: ") && none.errorOutput.contains("d1 198.18.6.1/24"), "\(none)")
    }
}
