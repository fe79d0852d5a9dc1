import ArgumentParser
import Glibc
import WeftBench
import WeftCore
import WeftLinux

/// `weft bench`: measure a path with Weft's own batched sockets, like iperf3.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure UDP packet rate, TCP throughput or UDP latency between two hosts.",
        discussion: """
            Run `weft bench server` on one end and `weft bench client --server ADDR` on the other. \
            The client opens a TCP control connection to the server's port (5301), runs one test, \
            and gets the server's counts back over it, as iperf3 does.

              udp      datagrams of --size bytes as fast as sendmmsg goes, each
                       numbered; the server counts received, lost, reordered and
                       duplicate ones; rates are its received count over the
                       measured interval.
              tcp      --streams parallel TCP streams; bits/s the server read over
                       the measured interval.
              latency  UDP request/response, one outstanding; round-trip
                       percentiles from an HDR histogram; a request unanswered
                       for 1 s counts as lost.

            The warm-up (--warmup seconds) sends traffic that is not counted. Progress goes to \
            stderr every second; the result is one line on stdout, or one JSON object with --json.

            Examples:
              weft bench server
              weft bench client --server 10.244.2.2 --mode udp --size 64 --json
              weft bench client --server 10.244.2.2 --mode tcp --streams 4 --duration 10
              weft bench client --server 10.244.2.2 --mode latency
            """,
        subcommands: [BenchServerCommand.self, BenchClientCommand.self]
    )
}

struct BenchServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Serve weft bench tests on one TCP and UDP port until SIGINT or SIGTERM.",
        discussion: """
            Listens on TCP (control connections and TCP streams) and UDP (packet-rate sink and \
            latency echo) on the same port, and serves tests one after another; a client that \
            comes while a test runs is told the server is busy. One line per finished test goes \
            to stderr. SIGINT or SIGTERM stop it (a running test is abandoned) with exit status 0.
            """
    )

    @Option(help: ArgumentHelp("IPv4 address to listen on.", valueName: "addr"))
    var bind = IPv4Address(0, 0, 0, 0)

    @Option(help: ArgumentHelp("TCP and UDP port (0: any free port, printed at start).", valueName: "port"))
    var port: UInt16 = BenchOptions.defaultPort

    @Flag(help: "Exit after one test: status 0 if it completed.")
    var once = false

    func run() throws {
        let address = bind
        let server: BenchServer
        do { server = try BenchServer(bind: address, port: port) } catch { throw RunError("\(error)") }
        defer { server.close() }
        // The server looks at it at least every 100 ms.
        let signals: SignalWatch
        do { signals = try SignalWatch([SIGINT, SIGTERM]) } catch { throw RunError("\(error)") }
        defer { signals.cancel() }
        printError("weft bench server: listening on \(address):\(server.port) (TCP and UDP)")
        let outcome: BenchServer.Outcome?
        do {
            outcome = try server.serve(once: once, shouldStop: { signals.received != nil },
                                       log: printError)
        } catch { throw RunError("\(error)") }
        if signals.received != nil {
            printError("weft bench server: stopped")
            return
        }
        if once, case .failed = outcome {
            throw RunError("the test did not complete")
        }
    }
}

extension BenchMode: ExpressibleByArgument {}

struct BenchClientCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "client",
        abstract: "Run one test against a weft bench server and print the result.",
        discussion: """
            With --json the result is one JSON object on stdout, keys in this order:
              udp      mode size duration_s sent received lost reordered duplicates
                       packets_per_second bits_per_second
              tcp      mode streams duration_s bytes bits_per_second
              latency  mode size duration_s samples lost min_us mean_us p50_us
                       p90_us p99_us p999_us max_us
            mode is a string, counts are integers, the rest numbers. udp rates come \
            from the server's received count over the measured interval (duration_s); \
            bits are UDP payload bits; a datagram the kernel refused counts as sent and \
            lost. tcp counts the bytes the server read in the measured interval.
            """
    )

    @Option(help: ArgumentHelp("The server's IPv4 address.", valueName: "addr"))
    var server: IPv4Address

    @Option(help: ArgumentHelp("The server's TCP and UDP port.", valueName: "port"))
    var port: UInt16 = BenchOptions.defaultPort

    @Option(help: ArgumentHelp("udp (packet rate), tcp (throughput) or latency (round trips).", valueName: "mode"))
    var mode: BenchMode = .udp

    @Option(help: ArgumentHelp(
        "udp, latency: UDP payload bytes, 64 to 1472 (default 1472 for udp, 64 for latency). tcp: bytes per send(), 64 to 16777216 (default 131072).",
        valueName: "bytes"))
    var size: Int?

    @Option(help: ArgumentHelp("tcp: parallel streams, 1 to 128.", valueName: "n"))
    var streams: Int = 1

    @Option(help: ArgumentHelp("Measured seconds, after the warm-up.", valueName: "seconds"))
    var duration: Double = 10

    @Option(help: ArgumentHelp("Seconds of traffic first that are not counted.", valueName: "seconds"))
    var warmup: Double = 1

    @Flag(help: "Print the result as one JSON object.")
    var json = false

    func validate() throws {
        _ = try options()
    }

    func run() throws {
        let options = try options()
        let result: BenchResult
        do {
            result = try BenchClient.run(options, progress: printError)
        } catch { throw RunError("\(error)") }
        printLine(json ? result.json : result.summary)
    }

    private func options() throws -> BenchOptions {
        let options = BenchOptions(server: server, port: port, mode: mode, size: size, streams: streams,
                                   duration: duration, warmup: warmup)
        do { try options.validate() } catch { throw ValidationError(error.description) }
        return options
    }
}
