import Benchmark

// Every benchmark's inner loop (`benchmark.scaledIterations`) handles one packet, lookup or index
// per iteration, so the scaled figures the tool prints are per packet: throughput in packets (or
// lookups, or handoffs) per second, wall clock and mallocs per packet.
//
// Thresholds (`swift package benchmark thresholds check`) compare the p90 of each metric with the
// stored p90 in Thresholds/. Mallocs must match exactly: the packet paths allocate nothing, so one
// allocation more is a regression. Times may move by `timeTolerance` percent (more for benchmarks
// running several threads) either way before they count as a change: on the 2-vCPU VMs the
// project builds on, a single-threaded p90 moves by 20 % between quiet runs, and another
// process on the other vCPU moves it by more.
let benchmarks: @Sendable () -> Void = {
    routeLookupBenchmarks()
    packetRuleBenchmarks()
    queueBenchmarks()
    dataPathBenchmarks()
}

/// Percent a time or throughput p90 may move before `thresholds check` reports it.
let timeTolerance = 30.0

/// The same for benchmarks whose threads share the two cores with each other.
let threadedTimeTolerance = 50.0

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
