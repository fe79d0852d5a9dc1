import Foundation
import Glibc
import WeftLinux

/// What `weft lab compare` measures and how.
public struct CompareOptions: Sendable {
    /// Labs are `<prefix>-<mode>`: namespaces `<prefix>-weft-podA`, …
    public var prefix: String
    public var nodes: Int
    public var durationSeconds: Double
    public var warmupSeconds: Double
    public var rounds: Int
    public var modes: [LabMode]
    public var cells: [CompareCell]
    /// The command line, for the report.
    public var command: String
    /// The weft binary for `weft run` and `weft bench`.
    public var weftBinary: String
    public var stateRoot: String
    /// weft bench's port.
    public var port: Int
    /// Flags added to `weft run` in the weft lab (e.g. `--workers 1`).
    public var weftRunOptions: [String]

    public init(prefix: String, nodes: Int = 2, durationSeconds: Double = 10, warmupSeconds: Double = 1, rounds: Int = 1,
                modes: [LabMode] = LabMode.allCases, cells: [CompareCell] = CompareCell.allCases, command: String,
                weftBinary: String, stateRoot: String = Lab.defaultStateRoot, port: Int = 5301, weftRunOptions: [String] = []) {
        self.prefix = prefix
        self.nodes = nodes
        self.durationSeconds = durationSeconds
        self.warmupSeconds = warmupSeconds
        self.rounds = rounds
        self.modes = modes
        self.cells = cells
        self.command = command
        self.weftBinary = weftBinary
        self.stateRoot = stateRoot
        self.port = port
        self.weftRunOptions = weftRunOptions
    }

    /// The labs' plans, checked.
    public func plans() throws(LabError) -> [LabPlan] {
        guard (0.5...3600).contains(durationSeconds) else { throw LabError("--duration must be 0.5 to 3600 seconds") }
        guard (0...60).contains(warmupSeconds) else { throw LabError("--warmup must be 0 to 60 seconds") }
        guard (1...100).contains(rounds) else { throw LabError("--rounds must be 1 to 100") }
        var plans: [LabPlan] = []
        for mode in modes {
            plans.append(try LabPlan(prefix: "\(prefix)-\(mode)", mode: mode, nodeCount: nodes, weftRunOptions: mode == .weft ? weftRunOptions : []))
        }
        return plans
    }
}

/// `weft lab compare`: one lab per mode, all built at once, then the matrix of cells over the
/// modes, interleaved (`CompareSchedule`), with weft bench (server in the last pod, client in
/// pod A). Every lab is torn down at the end, on an error and on a signal.
public enum Compare {
    /// A mode whose programs are not installed is skipped with a line that says so; missing
    /// privileges or TUN support stop the whole run.
    public static func run(_ options: CompareOptions, log: @escaping (String) -> Void) throws(LabError) -> CompareReport {
        var options = options
        options.modes = options.modes.filter { mode in
            guard let missing = mode.missingSupport else { return true }
            log("lab: skipping \(mode): \(missing)")
            return false
        }
        guard !options.modes.isEmpty else { throw LabError("no mode left to compare") }
        let plans = try options.plans()
        for mode in options.modes {
            if let missing = Lab.missingPrivileges(for: mode) { throw LabError(missing) }
        }
        let probe = try Subprocess.run([options.weftBinary, "bench", "client", "--help"], timeout: 15)
        guard probe.succeeded else { throw LabError("\(options.weftBinary) has no working 'weft bench' (\(probe))") }
        let taken = plans.flatMap { Namespaces.lab($0.prefix) }
        guard taken.isEmpty else {
            throw LabError("namespaces of an earlier compare exist (\(taken.prefix(4).joined(separator: " ")) …); run: weft lab down --prefix \(options.prefix)")
        }

        var labs: [LabMode: MeasuredLab] = [:]
        do {
            for plan in plans {
                log("lab: building \(plan.mode) lab (\(plan.prefix)-*)")
                let lab = try Lab.up(plan, weftBinary: options.weftBinary, stateRoot: options.stateRoot, log: log)
                labs[plan.mode] = MeasuredLab(lab: lab)
                try labs[plan.mode]?.startServer(weft: options.weftBinary, port: options.port)
            }
            let schedule = CompareSchedule(rounds: options.rounds, cells: options.cells, modes: options.modes)
            var runs: [CompareRun] = []
            for slot in schedule.slots {
                for mode in slot.modes {
                    guard let lab = labs[mode] else { continue }
                    try pause(0.3)  // let the previous run's packets and timers drain
                    let run = try lab.measure(slot.cell, round: slot.round, options: options)
                    runs.append(run)
                    log("lab: [\(runs.count)/\(schedule.runCount)] round \(slot.round) \(slot.cell) \(mode): \(CompareReport.describe(run))")
                }
            }
            for lab in labs.values { lab.lab.tearDown() }
            return CompareReport(setup: setup(options, plans: plans), runs: runs)
        } catch {
            if error.signal == nil { for lab in labs.values { lab.lab.showLogs() } }
            for lab in labs.values { lab.lab.tearDown() }
            throw error
        }
    }

    static func setup(_ options: CompareOptions, plans: [LabPlan]) -> CompareReport.Setup {
        let kernel = ((try? String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8)) ?? "?").trimmingCharacters(in: .whitespacesAndNewlines)
        return CompareReport.Setup(
            date: Date(), command: options.command, kernel: kernel, cpus: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), nodes: options.nodes,
            durationSeconds: options.durationSeconds, warmupSeconds: options.warmupSeconds, rounds: options.rounds,
            modes: options.modes, cells: options.cells,
            podMTU: Dictionary(uniqueKeysWithValues: plans.map { ($0.mode, $0.podMTU) }))
    }
}

/// A lab with weft bench's server running in its last pod.
private final class MeasuredLab {
    let lab: Lab
    private var server: ChildProcess?

    init(lab: Lab) { self.lab = lab }

    private var plan: LabPlan { lab.plan }
    private var serverLog: String { "\(lab.stateDirectory)/bench-server.log" }

    /// Starts `weft bench server` bound to the last pod's address and waits (at most 10 s)
    /// until it listens.
    func startServer(weft: String, port: Int) throws(LabError) {
        let pod = plan.namespace(plan.lastNode.podName)
        server = try Subprocess.spawnDetached(
            ["ip", "netns", "exec", pod, weft, "bench", "server", "--bind", plan.lastNode.podAddress, "--port", String(port)],
            logFile: serverLog)
        let deadline = MonotonicClock.seconds() + 10
        while true {
            try checkServer()
            let listening = try Subprocess.run(["ip", "netns", "exec", pod, "ss", "-Hltn", "sport = :\(port)"], timeout: 5)
            if listening.succeeded && !listening.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return }
            if MonotonicClock.seconds() > deadline { throw LabError("weft bench server in \(pod) did not listen on port \(port) within 10 s") }
            try pause(0.05)
        }
    }

    private func checkServer() throws(LabError) {
        if let status = server?.poll() {
            let text = (try? String(contentsOfFile: serverLog, encoding: .utf8)) ?? ""
            throw LabError("weft bench server in \(plan.namespace(plan.lastNode.podName)) ended (status \(status)): \(text.trimmingCharacters(in: .whitespacesAndNewlines).suffix(300))")
        }
    }

    /// One bench client run from pod A; the forwarders' CPU time is taken when the warm-up
    /// ends and when the client exits.
    func measure(_ cell: CompareCell, round: Int, options: CompareOptions) throws(LabError) -> CompareRun {
        try checkServer()
        try lab.checkForwarders()
        let arguments = ["ip", "netns", "exec", plan.namespace(plan.nodes[0].podName), options.weftBinary]
            + cell.clientArguments(server: plan.lastNode.podAddress, port: options.port, duration: options.durationSeconds, warmup: options.warmupSeconds)
        let measuresCPU = !lab.forwarders.isEmpty
        let cpuAtStart = measuresCPU ? lab.forwarderCPUSeconds() : 0
        var cpuAfterWarmup: Double?
        let result = try Subprocess.run(arguments, timeout: options.durationSeconds + options.warmupSeconds + 30) { elapsed in
            if measuresCPU && cpuAfterWarmup == nil && elapsed >= options.warmupSeconds {
                cpuAfterWarmup = self.lab.forwarderCPUSeconds()
            }
        }
        let cpuAtEnd = measuresCPU ? lab.forwarderCPUSeconds() : 0
        guard result.succeeded else {
            throw LabError("weft bench client (\(cell), \(plan.mode) lab) failed: \(result)")
        }
        let figures = try BenchFigures.parse(result.output, cell: cell)
        return CompareRun(round: round, cell: cell, mode: plan.mode, figures: figures,
                          cpuSeconds: measuresCPU ? max(0, cpuAtEnd - (cpuAfterWarmup ?? cpuAtStart)) : nil)
    }
}
