import Glibc
import MallocInterposerSwift
import Synchronization

/// Finds out where the data path allocates, on Linux (the tool's `--allocation-stacks` needs
/// macOS 26). With `WEFT_ALLOCATION_STACKS=<file>` in the environment, every allocation any thread
/// makes while a data-path iteration runs is counted, and the stacks of the first few are written
/// to `<file>` (the tool sends the benchmark's own stderr to /dev/null while it measures):
///
///     WEFT_ALLOCATION_STACKS=/tmp/stacks swift package benchmark --filter 'DataPath.*'
///     swift demangle < /tmp/stacks
///
/// Frames print as `binary(+offset)`; `addr2line -f -C -e <binary> <offset>` gives file:line.
/// Off (the default), nothing is installed and nothing is measured differently.
enum AllocationProbe {
    static let path: String? = getenv("WEFT_ALLOCATION_STACKS").map { String(cString: $0) }
    static var enabled: Bool { path != nil }
    static let stacksToPrint = 20

    /// Installs the interposer's allocation hook once; it does nothing until `open()`.
    static func install() {
        guard let path, !installed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let descriptor = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        precondition(descriptor >= 0, "cannot open \(path) for WEFT_ALLOCATION_STACKS")
        output.store(descriptor, ordering: .releasing)
        // backtrace() loads libgcc's unwinder on first use, which allocates: do it here.
        _ = backtraceFunction(frames, Int32(frameCapacity))
        MallocInterposerSwift.setAllocationHook(allocationHook)
    }

    /// Counts allocations from here to `close()`.
    @inline(__always)
    static func open() {
        if enabled { window.store(true, ordering: .releasing) }
    }

    @inline(__always)
    static func close() {
        if enabled { window.store(false, ordering: .releasing) }
    }

    /// Prints how many allocations the iterations of `benchmark` made, and starts again from zero.
    static func report(_ benchmark: String) {
        guard enabled else { return }
        let count = allocations.exchange(0, ordering: .acquiringAndReleasing)
        printed.store(0, ordering: .relaxed)
        let line = "weft: \(count) allocation(s) inside the iterations of '\(benchmark)'\n"
        _ = line.withCString { write(output.load(ordering: .acquiring), $0, strlen($0)) }
    }
}

private let installed = Atomic<Bool>(false)
private let output = Atomic<Int32>(2)
private let window = Atomic<Bool>(false)
private let allocations = Atomic<Int>(0)
private let printed = Atomic<Int>(0)
private let printing = Atomic<Bool>(false)
private let frameCapacity = 64
private nonisolated(unsafe) let frames = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: frameCapacity)

// execinfo.h is not part of the Glibc module.
private typealias Backtrace = @convention(c) (UnsafeMutablePointer<UnsafeMutableRawPointer?>, Int32) -> Int32
private typealias BacktraceSymbols = @convention(c) (UnsafeMutablePointer<UnsafeMutableRawPointer?>, Int32, Int32) -> Void
private nonisolated(unsafe) let backtraceFunction = unsafeBitCast(dlsym(nil, "backtrace")!, to: Backtrace.self)
private nonisolated(unsafe) let backtraceSymbolsFunction = unsafeBitCast(dlsym(nil, "backtrace_symbols_fd")!, to: BacktraceSymbols.self)

/// Runs on the allocating thread, inside malloc: it must not allocate. One thread prints at a
/// time; allocations meanwhile (including any the printing makes) are only counted.
private func allocationHook(_ size: Int) {
    guard window.load(ordering: .acquiring) else { return }
    allocations.add(1, ordering: .relaxed)
    guard printed.load(ordering: .relaxed) < AllocationProbe.stacksToPrint,
          !printing.exchange(true, ordering: .acquiring) else { return }
    printed.add(1, ordering: .relaxed)
    let descriptor = output.load(ordering: .acquiring)
    let header: StaticString = "weft: allocation inside a data-path iteration:\n"
    _ = write(descriptor, header.utf8Start, header.utf8CodeUnitCount)
    let count = backtraceFunction(frames, Int32(frameCapacity))
    backtraceSymbolsFunction(frames, count, descriptor)
    printing.store(false, ordering: .releasing)
}
