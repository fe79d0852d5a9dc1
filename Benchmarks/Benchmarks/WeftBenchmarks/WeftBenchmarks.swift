import Benchmark

// Every benchmark's inner loop (`benchmark.scaledIterations`) handles one packet, lookup or index
// per iteration, so the scaled figures the tool prints are per packet: throughput in packets (or
// lookups, or handoffs) per second, wall clock and mallocs per packet.
//
// Thresholds (`swift package benchmark thresholds check`) compare the p90 of each metric with the
// stored p90 in Thresholds/. Mallocs must match exactly: the packet paths allocate nothing, so one
// allocation more is a regression. Times may move by `timeTolerance` percent before they count
// as a change, enough for the run-to-run spread of single-threaded p90s on a quiet 2-vCPU VM.
// Where several threads share the two vCPUs (handoffs, data path), the p90 depends on thread
// placement, idle-vCPU wake-ups and host steal time and was seen up to 4x apart between quiet
// runs, so only slowdowns beyond `threadedTimeTolerance` (3x) are flagged: a lost wake-up or a
// lock, not a few percent.
let benchmarks: @Sendable () -> Void = {
    routeLookupBenchmarks()
    packetRuleBenchmarks()
    packetPoolBenchmarks()
    dataPathBenchmarks()
    registryValueBenchmarks()
}

/// Percent a time or throughput p90 may move before `thresholds check` reports it.
let timeTolerance = 30.0

/// The same for benchmarks whose threads share the two cores with each other.
let threadedTimeTolerance = 200.0

/// Metrics and tolerances shared by all benchmarks.
///
/// No `instructions` (nor CPU time or other OS metrics): in benchmark 1.38.1 any of them makes the
/// executor read /proc/self/stat and /proc/self/io at the start and end of every iteration,
/// inside the window that counts mallocs, which adds 16 mallocs per iteration and would hide one
/// of ours (`operatingSystemsStatsProducerNeeded` is true for `.instructions`). This VM has no
/// hardware PMU for `instructions` anyway.
func configuration(
    scalingFactor: BenchmarkScalingFactor,
    warmupIterations: Int = 5,
    maxDuration: Duration = .seconds(2),
    timeTolerance: Double = timeTolerance
) -> Benchmark.Configuration {
    let time = BenchmarkThresholds(relative: [.p90: timeTolerance])
    return .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal],
        warmupIterations: warmupIterations,
        scalingFactor: scalingFactor,
        maxDuration: maxDuration,
        maxIterations: 1_000_000,
        thresholds: [.throughput: time, .wallClock: time, .mallocCountTotal: .strict]
    )
}
