import Glibc
import Testing
import WeftCore
@testable import WeftLinux

@Suite struct SystemErrorTests {
    @Test func descriptionHasOperationAndStrerror() {
        let error = SystemError(errno: ENOENT, operation: "open /dev/net/tun")
        #expect(error.description == "open /dev/net/tun: No such file or directory (errno 2)")
        #expect(error == SystemError(errno: 2, operation: "open /dev/net/tun"))
    }

    @Test func openingAMissingFileReportsThePath() {
        #expect(throws: SystemError(errno: ENOENT, operation: "open /nonexistent/weft")) {
            _ = try Syscall.open("/nonexistent/weft", O_RDONLY)
        }
    }
}

@Suite struct TunDeviceTests {
    /// Fails in Swift before /dev/net/tun is even opened, so nothing is created (safe in the
    /// root namespace).
    @Test func overlongNameIsRejectedBeforeOpening() {
        #expect(throws: SystemError(errno: ENAMETOOLONG, operation: "TUNSETIFF weftnametoolong12345")) {
            _ = try TunDevice.open(name: "weftnametoolong12345")
        }
        #expect(if_nametoindex("weftnametoolong12345") == 0)
    }
}

@Suite struct NetworkInterfaceTests {
    @Test func parsesDefaultRouteWithLowestMetric() {
        let text = """
        Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
        eth1\t00000000\t0101A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0
        eth0\t00000000\t010010AC\t0003\t0\t0\t100\t00000000\t0\t0\t0
        eth0\t000010AC\t00000000\t0001\t0\t0\t0\t00F0FFFF\t0\t0\t0
        """
        #expect(NetworkInterface.defaultRouteInterfaceName(procNetRoute: text) == "eth0")
        let noDefault = """
        Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
        eth0\t000010AC\t00000000\t0001\t0\t0\t0\t00F0FFFF\t0\t0\t0
        """
        #expect(NetworkInterface.defaultRouteInterfaceName(procNetRoute: noDefault) == nil)
    }

    @Test func loopbackInterface() throws {
        let lo = try NetworkInterface.named("lo")
        #expect(lo.index > 0)
        #expect(lo.mtu > 0)
        #expect(lo.ipv4.contains(.init(address: IPv4Address("127.0.0.1")!, prefixLength: 8)))
        #expect(lo.firstIPv4Address != nil)
    }

    @Test func missingInterfaceThrows() {
        #expect(throws: SystemError.self) { _ = try NetworkInterface.named("weftnosuchif0") }
    }

    @Test func sysctlRejectsTraversal() {
        #expect(throws: SystemError(errno: EINVAL, operation: "sysctl net/../../etc/passwd")) {
            try Sysctl.set("net/../../etc/passwd", to: "1")
        }
        #expect((try? Sysctl.get("net/ipv4/ip_forward")) != nil)
    }
}
