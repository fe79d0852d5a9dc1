import ArgumentParser
import Glibc

/// The `weft` command: a flannel-udp compatible overlay forwarder.
@main
struct Weft: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "weft",
        abstract: "A fast, checked userspace overlay forwarder that speaks flannel's udp backend wire format.",
        discussion: """
            Weft carries pod traffic between nodes as flanneld's "udp" backend does: every inner IPv4 \
            packet travels alone as the payload of a UDP datagram (port 8285 by default), so Weft \
            and flanneld nodes interoperate. Unlike flannel it batches system calls, uses several \
            threads, accepts datagrams only from known peers, and answers with ICMP errors instead \
            of dropping silently.
            """,
        version: "0.1.0",
        subcommands: [RunCommand.self, StatusCommand.self, CaptureCommand.self, BenchCommand.self, LabCommand.self],
        defaultSubcommand: nil
    )

    /// A bad flag or a failed start is one line on stderr and a non-zero exit; `--help` and
    /// `--version` print in full.
    ///
    /// flanneld's command line is translated first (`FlanneldFlags`), and a binary invoked as
    /// `flanneld` runs `weft run`.
    static func main() async {
        let program = CommandLine.arguments.first.map { String($0.split(separator: "/").last ?? "") } ?? "weft"
        let arguments: [String]
        switch FlanneldFlags.translate(Array(CommandLine.arguments.dropFirst()), program: program, environment: Environment()) {
        case .refused(let refusal):
            printError("weft: " + refusal)
            Glibc.exit(ExitCode.validationFailure.rawValue)
        case .arguments(let translated, let notes):
            for note in notes { printError("weft: note: " + note) }
            arguments = translated
        }
        do {
            var command = try parseAsRoot(arguments)
            if var asynchronous = command as? AsyncParsableCommand {
                try await asynchronous.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            if code == .success { exit(withError: error) }
            // A start-up failure explains itself; a parsing error points at the help.
            let hint = error is RunError ? "" : " (see 'weft --help')"
            printError("weft: " + message(for: error) + hint)
            Glibc.exit(code.rawValue)
        }
    }
}
