import ArgumentParser
import Foundation
import Glibc
import WeftLab

/// `weft lab`: the namespace lab (pod A, node A, node B, pod B, in network namespaces), and the
/// compare matrix.
struct LabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab",
        abstract: "Build a network-namespace lab of N nodes and compare Weft with kernel VXLAN and plain routing.",
        discussion: """
            Everything lives in network namespaces named P-* that the command creates and always \
            deletes (also on an error, Ctrl-C or SIGTERM); nothing is added to this machine's own \
            network. Requires root (and /dev/net/tun for weft, wireguard-go and nebula modes).

            Topology (tools/lab runs this command): node i (A, B, ...) has ul0 198.18.0.i/24 on the \
            underlay (a veth pair for 2 nodes; bridge br0 in P-ul for 3 or more, or --bridge) and \
            pod0 10.244.i.1/24; its pod has eth0 10.244.i.2/24 with gateway 10.244.i.1.

            Modes (pod MTU = the tunnel MTU, as each sets it up: 1472, 1450, 1500, 1420, 1300):
              weft          weft run in every node, file registry in /run/weft-lab/P
              vxlan         kernel VXLAN as flannel's vxlan backend: flannel.1, VNI 1,
                            UDP 8472, nolearning, per-peer route, neighbour and fdb
              route         plain routing between the nodes: the physical limit
              wireguard-go  WireGuard in userspace (wireguard-go + wg): keys from wg
                            genkey, UDP 51820, each peer's pod subnet as allowed IPs
              nebula        nebula with a lab CA, a certificate per node carrying its
                            pod subnet, static host map, unsafe_routes, UDP 4242
            """,
        subcommands: [LabUp.self, LabDown.self, LabExec.self, LabStatus.self, LabCompare.self]
    )
}

struct LabPrefixOption: ParsableArguments {
    @Option(help: ArgumentHelp("Namespace prefix (a-z, 0-9 and '-', 1 to 24 characters): the lab's namespaces are <prefix>-podA, <prefix>-nodeA, ...", valueName: "prefix"))
    var prefix = "wl"

    func validate() throws {
        do { try LabPlan.check(prefix: prefix) } catch { throw ValidationError(error.description) }
    }
}

extension LabMode: ExpressibleByArgument {}

struct LabUp: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Build the lab and, in weft mode, start weft run in every node.",
        discussion: """
            Refuses if namespaces P-* exist. In weft mode the forwarders run detached, with their \
            logs, subnet.env files and registry in /run/weft-lab/P/; up returns once every pod \
            answers a ping from every other pod. A failure or Ctrl-C half-way removes what it \
            created.

            With --no-forwarders (weft mode only) up builds the same namespaces, links, addresses \
            and pod MTU and writes /run/weft-lab/P/subnet-nodeA.env, ... (FLANNEL_SUBNET \
            10.244.i.1/24, FLANNEL_MTU 1472), but starts no weft run and does not wait for the \
            pods: start weft run --iface ul0 in each node yourself, with your own flags (weft lab \
            exec --prefix P nodeA -- weft run ...). weft lab down ends them with the lab.
            """
    )

    @OptionGroup var lab: LabPrefixOption

    @Option(help: "weft, vxlan, route, wireguard-go (Debian's wireguard-go and wireguard-tools) or nebula (Debian's nebula).")
    var mode: LabMode = .weft

    @Option(help: "Number of nodes, 2 to 8; 3 or more are joined by a bridge.")
    var nodes = 2

    @Flag(help: "Join the nodes by a bridge in P-ul even with 2 nodes.")
    var bridge = false

    @Option(help: ArgumentHelp("MTU of the pods' links. Default: the mode's tunnel MTU (weft 1472, vxlan 1450, route 1500, wireguard-go 1420, nebula 1300).", valueName: "bytes"))
    var podMTU: Int?

    @Flag(help: "Weft mode: build the lab and write the subnet.env files, but start no weft run.")
    var noForwarders = false

    @Option(help: ArgumentHelp("Weft mode: more flags for every node's weft run, as one string joined with = (e.g. --weft-args=\"--workers 1 --no-offload\").", valueName: "flags"))
    var weftArgs = ""

    func validate() throws {
        _ = try plan()
    }

    func run() throws {
        let plan = try plan()
        try runLab {
            let built = try Lab.up(plan, weftBinary: Lab.currentExecutable(), log: printError)
            printLine(plan.summary(stateDirectory: built.stateDirectory))
        }
    }

    private func plan() throws -> LabPlan {
        do {
            return try LabPlan(prefix: lab.prefix, mode: mode, nodeCount: nodes, bridge: bridge, podMTU: podMTU, forwarders: !noForwarders,
                               weftRunOptions: weftRunOptions(weftArgs))
        } catch {
            throw ValidationError(error.description)
        }
    }
}

struct LabDown: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "down",
        abstract: "Kill every process in the lab's namespaces, delete them and the lab's state; never fails if absent."
    )

    @OptionGroup var lab: LabPrefixOption

    func run() throws {
        guard geteuid() == 0 else { throw RunError("must be run as root (it deletes network namespaces)") }
        do { try LabSignals.install() } catch { throw RunError("lab: \(error)") }  // finish the teardown even on Ctrl-C
        let removed = Lab.down(prefix: lab.prefix)
        printLine("lab: down prefix=\(lab.prefix) (\(removed.count) namespaces removed)")
    }
}

struct LabExec: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command in one of the lab's namespaces; the exit status is the command's.",
        discussion: "Example: weft lab exec podA -- ping -c 3 10.244.2.2"
    )

    @OptionGroup var lab: LabPrefixOption

    @Argument(help: ArgumentHelp("podA..podH, nodeA..nodeH or ul.", valueName: "node"))
    var node: String

    @Argument(parsing: .postTerminator, help: ArgumentHelp("The command, after --.", valueName: "command"))
    var command: [String] = []

    func validate() throws {
        guard LabPlan.isNodeName(node) else { throw ValidationError("unknown node '\(node)' (podA..podH, nodeA..nodeH, ul)") }
        guard !command.isEmpty else { throw ValidationError("exec needs a command after --") }
    }

    func run() throws {
        let namespace = "\(lab.prefix)-\(node)"
        guard Namespaces.exists(namespace) else { throw RunError("namespace \(namespace) does not exist") }
        let arguments = ["ip", "netns", "exec", namespace] + command
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        argv.append(nil)
        execvp("ip", argv)
        throw RunError("cannot run ip: \(String(cString: strerror(errno)))")
    }
}

struct LabStatus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the lab's namespaces, links, addresses, routes and processes."
    )

    @OptionGroup var lab: LabPrefixOption

    func run() throws {
        try runLab { printLine(try Lab.status(prefix: lab.prefix)) }
    }
}

struct LabCompare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Measure weft against kernel VXLAN, plain routing and the userspace tunnels, each in its own lab, in one run.",
        discussion: """
            Builds one lab per mode at once (prefixes <prefix>-weft, <prefix>-vxlan, \
            <prefix>-route, <prefix>-wireguard-go, <prefix>-nebula), starts weft bench server in the last pod of each, then runs weft bench \
            client from pod A for every cell: tcp1 and tcp4 (TCP, 1 and 4 streams), udp64 and \
            udp1400 (UDP packet rate at 64 and 1400 bytes) and latency (64-byte round trips). For \
            each round and each cell every mode runs once, the modes in rotating order, so that \
            drifting noise spreads over all of them.

            Prints a table of absolute figures (medians over the rounds), their ratios to route \
            and to vxlan, and for the modes with forwarder processes the CPU seconds (user + system \
            of both nodes' weft, wireguard-go or nebula processes, from /proc/PID/stat, over each measurement) per GB of payload \
            delivered. Writes every run and the medians as JSON (--json) and grouped bars of the \
            ratio to route per cell and mode as SVG (--chart). Only ratios from one run are \
            comparable on a shared machine. Every lab is removed on exit, on an error and on \
            Ctrl-C or SIGTERM.
            """
    )

    @Option(help: ArgumentHelp("Namespace prefix of the labs. Default: wlc<pid>.", valueName: "prefix"))
    var prefix: String?

    @Option(help: "Nodes per lab, 2 to 8 (traffic goes from pod A to the last pod).")
    var nodes = 2

    @Option(help: ArgumentHelp("Seconds each cell measures, per mode and round.", valueName: "seconds"))
    var duration: Double = 10

    @Option(help: ArgumentHelp("Seconds of traffic before each measurement. Default: 1, or a quarter of --duration when that is shorter than 4 s.", valueName: "seconds"))
    var warmup: Double?

    @Option(help: "How many times to run the whole matrix; the table shows medians.")
    var rounds = 1

    @Option(help: ArgumentHelp("Modes to compare, comma-separated: weft, vxlan, route, wireguard-go, nebula. A mode whose programs are not installed is skipped with a line that says so.", valueName: "list"))
    var modes = LabMode.allCases.map(\.rawValue).joined(separator: ",")

    @Option(help: ArgumentHelp("Cells to run, comma-separated: tcp1, tcp4, udp64, udp1400, latency.", valueName: "list"))
    var cells = CompareCell.allCases.map(\.rawValue).joined(separator: ",")

    @Option(help: ArgumentHelp("More flags for weft run in the weft lab, as one string joined with = (e.g. --weft-args=\"--workers 1\").", valueName: "flags"))
    var weftArgs = ""

    @Option(help: ArgumentHelp("Where to write the results as JSON.", valueName: "file"))
    var json = "lab-compare.json"

    @Option(help: ArgumentHelp("Where to write the SVG chart.", valueName: "file"))
    var chart = "lab-compare.svg"

    func validate() throws {
        _ = try options()
    }

    func run() throws {
        let options = try options()
        try runLab {
            let report = try Compare.run(options, log: printError)
            printLine(report.table)
            do {
                try report.json.write(toFile: json, atomically: true, encoding: .utf8)
                try report.svg.write(toFile: chart, atomically: true, encoding: .utf8)
            } catch {
                throw RunError("lab: cannot write the results: \(error)")
            }
            printError("lab: wrote \(json) and \(chart)")
        }
    }

    private func options() throws -> CompareOptions {
        let modeList: [LabMode], cellList: [CompareCell]
        do {
            modeList = try LabMode.parseList(modes)
            cellList = try CompareCell.parseList(cells)
        } catch {
            throw ValidationError(error.description)
        }
        let options = CompareOptions(
            prefix: prefix ?? "wlc\(getpid())", nodes: nodes, durationSeconds: duration,
            warmupSeconds: warmup ?? min(1, duration / 4), rounds: rounds, modes: modeList, cells: cellList,
            command: (["weft"] + CommandLine.arguments.dropFirst()).map(shellQuoted).joined(separator: " "),
            weftBinary: Lab.currentExecutable(), weftRunOptions: weftRunOptions(weftArgs))
        do { _ = try options.plans() } catch { throw ValidationError(error.description) }
        return options
    }
}

/// A word as a shell would need it: quoted only when it holds more than safe characters.
private func shellQuoted(_ word: String) -> String {
    let safe = word.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || "-_./=,:@%+".unicodeScalars.contains($0) }
    return safe && !word.isEmpty ? word : "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// Runs lab work with Ctrl-C/SIGTERM turned into a clean stop: a failure is one line and exit
/// 1, a signal one line and exit 128 + signal, after the work removed what it built.
func runLab(_ body: () throws -> Void) throws {
    do {
        try LabSignals.install()
        try body()
    } catch let error as LabError {
        if let signal = error.signal {
            printError("weft: lab: \(error); everything it created was removed")
            exit(128 + signal)
        }
        throw RunError("lab: \(error)")
    }
}

/// `--weft-args`: one string of `weft run` flags, split at whitespace.
private func weftRunOptions(_ text: String) -> [String] {
    text.split(whereSeparator: \.isWhitespace).map(String.init)
}
