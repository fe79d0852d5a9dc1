// swift-tools-version: 6.1
// Weft's micro-benchmarks (ordo-one/benchmark), a package of their own so that `swift build` and
// `swift test` at the root never resolve or compile the benchmark framework (the SwiftNIO layout).
// Run from this directory: `swift package benchmark`; see the README's "Micro-benchmarks".
import PackageDescription

let package = Package(
    name: "WeftBenchmarks",
    dependencies: [
        // MallocInterposer alone: it also switches off the default RuntimeInterposer trait, whose
        // swift-runtime-interposer dependency cannot be resolved on the project's build machines.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        // Already in the graph through benchmark; named here for AllocationProbe's allocation hook.
        .package(url: "https://github.com/ordo-one/malloc-interposer.git", from: "1.5.0"),
        .package(name: "Weft", path: ".."),
    ],
    targets: [
        .executableTarget(
            name: "WeftBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "MallocInterposerSwift", package: "malloc-interposer"),
                .product(name: "WeftCore", package: "Weft"),
                .product(name: "WeftLinux", package: "Weft"),
                .product(name: "WeftDataPath", package: "Weft"),
                .product(name: "WeftDataPathTesting", package: "Weft"),
                .product(name: "WeftRegistry", package: "Weft"),
            ],
            path: "Benchmarks/WeftBenchmarks",
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
