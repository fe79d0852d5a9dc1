// swift-tools-version: 6.1
// Weft: a userspace flannel-udp forwarder. Modules follow one concern each; dependencies
// point down: weft (CLI) → WeftDataPath → WeftLinux → CWeftLinux, and everything → WeftCore.
// The data path (WeftCore, WeftLinux, WeftDataPath) uses no third-party package.
import PackageDescription

let package = Package(
    name: "Weft",
    products: [
        .executable(name: "weft", targets: ["weft"]),
        .library(name: "WeftCore", targets: ["WeftCore"]),
        // For Benchmarks/ (a separate package): the data path and the I/O types its
        // PacketTunnel and DatagramTransport interfaces use, so fakes can implement them.
        .library(name: "WeftLinux", targets: ["WeftLinux"]),
        .library(name: "WeftDataPath", targets: ["WeftDataPath"]),
        // For Benchmarks/: decoding registry values (net config, leases).
        .library(name: "WeftRegistry", targets: ["WeftRegistry"]),
        // In-memory TUN and UDP socket for the data-path tests and Benchmarks/.
        .library(name: "WeftDataPathTesting", targets: ["WeftDataPathTesting"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // What Swift cannot import from Glibc: TUN ioctls, mmsghdr, eventfd. No logic.
        .target(name: "CWeftLinux", cSettings: [.define("_GNU_SOURCE")]),
        // Packet rules with no I/O: IPv4 validation, TTL, ICMP, routes, pool, rings, counters.
        .target(name: "WeftCore"),
        // Linux I/O: TUN, UDP batches, rtnetlink, interfaces. Each syscall wrapped once.
        .target(name: "WeftLinux", dependencies: ["CWeftLinux", "WeftCore"]),
        // Threads that move packets between the TUN and the UDP socket.
        .target(name: "WeftDataPath", dependencies: ["WeftCore", "WeftLinux"]),
        // In-memory PacketTunnel and DatagramTransport fakes that record what the threads wrote
        // and sent, inject packets and faults, or (for benchmarks) replay a packet set without
        // allocating; packet builders and a seeded random generator for both.
        .target(name: "WeftDataPathTesting", dependencies: ["WeftCore", "WeftLinux", "WeftDataPath"]),
        // Subnet leases as flanneld keeps them: net config, lease keys and values, subnet.env,
        // subnet choice, and the registries that store leases. Never touches packets.
        .target(name: "WeftRegistry", dependencies: ["WeftCore", "WeftLinux"]),
        // Subnet leases in etcd v3 through its JSON gateway, on a small SwiftNIO HTTP/1.1 client.
        .target(
            name: "WeftEtcd",
            dependencies: [
                "WeftRegistry", "WeftCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        // What operators see of a running node: /healthz, /readyz, /metrics (Prometheus text,
        // from swift-prometheus) and the status that `weft status` prints, served by a small
        // SwiftNIO HTTP/1.1 server on loopback TCP and a Unix socket. Reads the data path's
        // counters at request time; never on the packet path.
        .target(
            name: "WeftOperations",
            dependencies: [
                "WeftCore", "WeftLinux",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // flanneld's masquerade and FORWARD rules (--ip-masq, --iptables-forward-rules) as data,
        // and their installation, re-check and removal through the host's iptables or nft.
        .target(name: "WeftFirewall", dependencies: ["WeftCore", "WeftLinux"]),
        // libpcap (Debian's libpcap-dev) as a system library: capture and pcap files.
        .systemLibrary(name: "CPcap", pkgConfig: "libpcap", providers: [.apt(["libpcap-dev"])]),
        // Packet capture: flannel-udp decoding and verdicts, pcap files, live capture.
        .target(name: "WeftCapture", dependencies: ["CPcap", "WeftCore", "WeftLinux"]),
        // `weft bench`: UDP packet rate, TCP throughput and UDP latency between two hosts, on
        // WeftLinux's batched sockets; latency percentiles from an HDR histogram.
        .target(
            name: "WeftBench",
            dependencies: [
                "WeftLinux", "WeftCore",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        // The namespace lab (`weft lab`): topology plan, bounded command runner, lab set-up and
        // teardown, and the compare matrix with its table, JSON and SVG. Shells out to `ip`;
        // never used by the forwarder. WeftRegistry writes the nodes' subnet.env files.
        .target(name: "WeftLab", dependencies: ["WeftLinux", "WeftCore", "WeftRegistry"]),
        .executableTarget(
            name: "weft",
            dependencies: [
                "WeftCore", "WeftLinux", "WeftDataPath", "WeftRegistry", "WeftEtcd", "WeftCapture", "WeftBench", "WeftLab", "WeftOperations", "WeftFirewall",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Shared by the test targets: subprocesses with bounded waits, temporary directories.
        .target(name: "WeftTestSupport", dependencies: ["WeftLinux"], path: "Tests/WeftTestSupport"),
        .testTarget(name: "WeftCoreTests", dependencies: ["WeftCore", "WeftDataPathTesting"]),
        .testTarget(name: "WeftLinuxTests", dependencies: ["WeftLinux", "WeftCore", "CWeftLinux"]),
        .testTarget(name: "WeftDataPathTests", dependencies: ["WeftDataPath", "WeftDataPathTesting", "WeftLinux", "WeftCore"]),
        .testTarget(name: "WeftRegistryTests", dependencies: ["WeftRegistry", "WeftCore", "WeftLinux", "WeftTestSupport", "WeftDataPathTesting"]),
        .testTarget(name: "WeftEtcdTests", dependencies: ["WeftCore", "WeftEtcd", "WeftRegistry", "WeftTestSupport"]),
        .testTarget(name: "WeftCaptureTests", dependencies: ["WeftCapture", "WeftCore", "WeftLinux", "WeftTestSupport"]),
        .testTarget(name: "WeftIntegrationTests", dependencies: ["WeftCore", "WeftLinux", "WeftRegistry", "WeftCapture", "WeftLab", "WeftTestSupport"]),
        .testTarget(name: "WeftBenchTests", dependencies: ["WeftBench", "WeftLinux", "WeftCore", "WeftTestSupport", "WeftDataPathTesting"]),
        .testTarget(name: "WeftLabTests", dependencies: ["WeftLab", "WeftLinux"]),
        .testTarget(name: "WeftFirewallTests", dependencies: ["WeftFirewall", "WeftCore", "WeftLinux", "WeftTestSupport"]),
        .testTarget(name: "WeftOperationsTests", dependencies: ["WeftOperations", "WeftCore", "WeftTestSupport"]),
        // The CLI's own rules (static peers, argument types), through @testable import.
        .testTarget(name: "WeftCommandTests", dependencies: ["weft", "WeftCore"]),
    ],
    swiftLanguageModes: [.v6]
)
