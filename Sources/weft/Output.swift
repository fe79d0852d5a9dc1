import Glibc

/// One line on stdout, written at once (no buffering to lose on exit).
func printLine(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { _ = Glibc.write(1, $0.baseAddress, $0.count) }
}

/// One line on stderr, written at once.
func printError(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
}
