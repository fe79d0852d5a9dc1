import Benchmark

// Every benchmark's inner loop (`benchmark.scaledIterations`) handles one packet, lookup or index
// per iteration, so the scaled figures the tool prints are per packet: throughput in packets (or
// lookups, or handoffs) per second, wall clock and mallocs per packet.
//
// Thresholds (`swift package benchmark thresholds check`) compare the p90 of each metric with the
// stored p90 in Thresholds/. Mallocs must match exactly: the packet paths allocate nothing, so one
// allocation more is a regression. Times may drift by `timeTolerance` percent either way before
// they count as a change: the 2-core VMs the project builds on vary that much between quiet runs.
let benchmarks: @Sendable () -> Void = {
    routeLookupBenchmarks()
    packetRuleBenchmarks()
    queueBenchmarks()
    dataPathBenchmarks()
}

/// Percent a time or throughput p90 may move before `thresholds check` reports it.
let timeTolerance = 25.0

/// Metrics and tolerances shared by all benchmarks.
///
/// `instructions` (perf_events) counts the benchmark thread only, so it is asked for only where
/// all the work runs on that thread; wall clock and throughput cover the others.
func configuration(
    scalingFactor: BenchmarkScalingFactor,
    singleThreaded: Bool,
    warmupIterations: Int = 5,
    maxDuration: Duration = .seconds(2),
    timeTolerance: Double = timeTolerance
) -> Benchmark.Configuration {
    var metrics: [BenchmarkMetric] = [.throughput, .wallClock, .mallocCountTotal]
    let time = BenchmarkThresholds(relative: [.p90: timeTolerance])
    var thresholds: [BenchmarkMetric: BenchmarkThresholds] = [
        .throughput: time,
        .wallClock: time,
        .mallocCountTotal: .strict,
    ]
    if singleThreaded {
        metrics.append(.instructions)
        thresholds[.instructions] = BenchmarkThresholds(relative: [.p90: 5.0])
    }
    return .init(
        metrics: metrics,
        warmupIterations: warmupIterations,
        scalingFactor: scalingFactor,
        maxDuration: maxDuration,
        maxIterations: 1_000_000,
        thresholds: thresholds
    )
}
