import Benchmark
import WeftCore
import WeftRegistry

/// Reading the values other nodes write under the registry prefix: every Weft node decodes each
/// lease at start-up, on every watch update and on every re-list, so a hostile value must cost
/// little. One iteration is one decode.
///
/// Before the values were capped and unknown keys skipped, a 1 KB lease value with one extra key
/// holding 500 nested arrays took 0.8 s, and 4 KB took 3.3 s.
func registryValueBenchmarks() {
    let perValue = configuration(scalingFactor: .one, warmupIterations: 3)

    func lease(extraDepth depth: Int, padTo size: Int) -> [UInt8] {
        var value = Array(#"{"PublicIP":"198.18.0.9","PublicIPv6":null,"Pad":""#.utf8)
        let tail = Array(#"","Extra":"#.utf8) + Array(repeating: UInt8(ascii: "["), count: depth)
            + Array(repeating: UInt8(ascii: "]"), count: depth) + [UInt8(ascii: "}")]
        value += Array(repeating: UInt8(ascii: "x"), count: max(0, size - value.count - tail.count)) + tail
        return value
    }

    let cases: [(name: String, value: [UInt8], accepted: Bool)] = [
        ("SubnetLease.decodeValue-flanneld", SubnetLease.encodeValue(publicIP: IPv4Address(198, 18, 0, 9)), true),
        ("SubnetLease.decodeValue-1KB-unknown-key-31-deep", lease(extraDepth: 31, padTo: 1024), true),
        ("SubnetLease.decodeValue-1KB-500-deep", lease(extraDepth: 500, padTo: 1024), false),
        ("SubnetLease.decodeValue-1.5MiB-nested", lease(extraDepth: 700_000, padTo: 1_572_864), false),
        ("SubnetLease.decodeValue-64KB-largest-accepted", lease(extraDepth: 1, padTo: 64 * 1024), true),
    ]
    for (name, value, accepted) in cases {
        Benchmark(name, configuration: perValue) { benchmark in
            for _ in benchmark.scaledIterations {
                let decoded = try? SubnetLease.decodeValue(value)
                precondition((decoded != nil) == accepted, "\(name): expected accepted \(accepted)")
                blackHole(decoded)
            }
        }
    }

    let config = Array(#"{"Network":"10.244.0.0/16","Backend":{"Type":"udp","Port":8285}}"#.utf8)
    Benchmark("NetworkConfig.parse-kube-flannel", configuration: perValue) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try? NetworkConfig.parse(config))
        }
    }
}
