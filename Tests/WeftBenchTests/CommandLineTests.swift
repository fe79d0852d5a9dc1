import Dispatch
import Foundation
import Testing
@testable import WeftBench
import WeftCore
import WeftLinux
import WeftTestSupport

/// The built `weft` binary (WEFT_BINARY, else .build/debug/weft) on 127.0.0.1.
@Suite(.serialized, .enabled(if: WeftBinary.exists, "no weft binary at \(WeftBinary.path)"))
struct CommandLineTests {
    @Test(arguments: [
        ["--size", "63"],
        ["--size", "1473"],
        ["--mode", "latency", "--size", "2000"],
        ["--mode", "tcp", "--streams", "0"],
        ["--mode", "udp", "--streams", "2"],
        ["--duration", "0"],
        ["--duration", "-1"],
        ["--duration", "nan"],
        ["--warmup", "-1"],
        ["--mode", "sctp"],
        ["--port", "0"],
        ["--port", "70000"],
        ["--bogus"],
    ])
    func badClientFlagsAreOneLine(_ flags: [String]) throws {
        let result = try weft(["bench", "client", "--server", "127.0.0.1"] + flags)
        expectOneLineFailure(result)
    }

    @Test func badServerAddressAndMissingServer() throws {
        expectOneLineFailure(try weft(["bench", "client", "--server", "example.org"]))
        expectOneLineFailure(try weft(["bench", "client"]))
        expectOneLineFailure(try weft(["bench", "server", "--bind", "not-an-address"]))
    }

    @Test func unreachableServerIsOneLine() throws {
        let listener = try WeftLinux.TCPSocket.listen(on: loopback, port: 0)
        let port = try listener.localPort
        listener.close()
        let result = try weft(["bench", "client", "--server", "127.0.0.1", "--port", "\(port)", "--duration", "0.2"])
        expectOneLineFailure(result)
        #expect(result.errorOutput.contains("cannot connect to 127.0.0.1:\(port)"), "\(result.transcript)")
    }

    @Test func portInUseIsOneLine() throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        let result = try weft(["bench", "server", "--bind", "127.0.0.1", "--port", "\(harness.port)"])
        expectOneLineFailure(result)
        #expect(result.errorOutput.contains("\(harness.port)"), "\(result.transcript)")
    }

    @Test(arguments: ["udp", "tcp", "latency"])
    func clientJSONIsOneObject(_ mode: String) throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        var arguments = ["bench", "client", "--server", "127.0.0.1", "--port", "\(harness.port)", "--mode", mode,
                         "--duration", "0.3", "--warmup", "0.1", "--json"]
        if mode == "tcp" { arguments += ["--streams", "2"] }
        if mode == "udp" { arguments += ["--size", "64"] }
        let result = try weft(arguments)
        #expect(result.status == 0, "\(result.transcript)")
        let lines = result.output.split(separator: "\n")
        #expect(lines.count == 1, "stdout: \(result.output)")
        switch mode {
        case "udp":
            try checkUDPSchema(result.output, size: 64)
        case "tcp":
            let values = try checkSchema(result.output, mode: "tcp", integers: ["streams", "bytes"], numbers: ["duration_s", "bits_per_second"])
            #expect(values["streams"] == 2 && values["bytes"]! > 0)
        default:
            let values = try checkSchema(result.output, mode: "latency", integers: ["size", "samples", "lost"],
                                         numbers: ["duration_s", "min_us", "mean_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"])
            #expect(values["size"] == 64 && values["samples"]! > 0)
            let ordered = ["min_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"].map { values[$0]! }
            #expect(ordered == ordered.sorted())
        }
    }

    @Test func clientHumanLineWithoutJSON() throws {
        let harness = try ServerHarness()
        defer { harness.stop() }
        let result = try weft(["bench", "client", "--server", "127.0.0.1", "--port", "\(harness.port)", "--size", "64",
                               "--duration", "0.2", "--warmup", "0"])
        #expect(result.status == 0, "\(result.transcript)")
        #expect(result.output.split(separator: "\n").count == 1 && result.output.hasPrefix("udp 64 B: sent "), "\(result.transcript)")
    }

    @Test func serverOnceExitsZeroAfterOneTest() throws {
        let (server, port) = try startServerProcess(["--once"])
        let client = try weft(["bench", "client", "--server", "127.0.0.1", "--port", "\(port)", "--mode", "latency",
                               "--duration", "0.2", "--warmup", "0", "--json"])
        #expect(client.status == 0, "\(client)")
        let result = server.wait(seconds: 10)
        #expect(result.status == 0, "\(result.transcript)")
        #expect(result.errorOutput.contains("latency test"), "\(result.transcript)")
    }

    @Test(arguments: [SIGTERM, SIGINT])
    func serverStopsCleanlyOnSignal(_ signal: Int32) throws {
        let (server, _) = try startServerProcess()
        usleep(100_000)
        server.signal(signal)
        let result = server.wait(seconds: 5)
        #expect(result.status == 0, "\(result.transcript)")
        #expect(result.errorOutput.contains("stopped"), "\(result.transcript)")
    }

    /// The server process is killed mid-test: the client ends with one line, within bounds.
    @Test(arguments: ["udp", "tcp", "latency"])
    func serverGoneMidTestIsOneLine(_ mode: String) throws {
        let (server, port) = try startServerProcess()
        DispatchQueue(label: "killer").asyncAfter(deadline: .now() + .milliseconds(400)) { server.signal(SIGKILL) }
        let started = Date()
        let result = try weft(["bench", "client", "--server", "127.0.0.1", "--port", "\(port)", "--mode", mode,
                               "--duration", "30", "--warmup", "0"])
        _ = server.wait(seconds: 5)
        expectOneLineFailure(result)
        #expect(result.errorOutput.contains("127.0.0.1:\(port)"), "\(result.transcript)")
        #expect(Date().timeIntervalSince(started) < 10, "took \(Date().timeIntervalSince(started)) s")
    }
}

/// A non-zero exit (not a signal, not killed by the timeout), nothing on stdout, and exactly one
/// line on stderr (progress lines, which start with a space, aside).
func expectOneLineFailure(_ result: CommandResult, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(result.status != 0 && result.status < 128, "\(result.transcript)", sourceLocation: sourceLocation)
    #expect(result.output.isEmpty, "\(result.transcript)", sourceLocation: sourceLocation)
    let errors = result.errorOutput.split(separator: "\n").filter { !$0.hasPrefix(" ") }
    #expect(errors.count == 1 && errors[0].hasPrefix("weft: "), "\(result.transcript)", sourceLocation: sourceLocation)
}
