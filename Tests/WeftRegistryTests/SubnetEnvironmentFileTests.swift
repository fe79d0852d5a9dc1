import Foundation
import Testing
import WeftCore
import WeftRegistry

@Suite struct SubnetEnvironmentFileTests {
    private let network = IPv4Prefix("10.244.0.0/16")!
    private let subnet = IPv4Prefix("10.244.1.0/24")!

    /// A fresh directory under /tmp for one test, removed afterwards by the caller.
    private func scratchDirectory() -> String {
        let path = NSTemporaryDirectory() + "weft-subnet-env-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func rendersFlanneldsFourLines() {
        let text = SubnetEnvironmentFile.render(network: network, subnet: subnet, mtu: 1472, ipMasquerade: false)
        #expect(text == "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n")
        let masquerading = SubnetEnvironmentFile.render(
            network: network, subnet: IPv4Prefix("10.244.7.64/26")!, mtu: 8972, ipMasquerade: true)
        #expect(masquerading == "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.65/26\nFLANNEL_MTU=8972\nFLANNEL_IPMASQ=true\n")
    }

    @Test func writesA0644FileAndReadsTheSubnetBack() throws {
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/subnet.env"
        try SubnetEnvironmentFile.write(to: path, network: network, subnet: subnet, mtu: 1472, ipMasquerade: false)
        let contents = try String(contentsOfFile: path, encoding: .utf8)
        #expect(contents == SubnetEnvironmentFile.render(network: network, subnet: subnet, mtu: 1472, ipMasquerade: false))
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o644)
        #expect(SubnetEnvironmentFile.previousSubnet(at: path) == subnet)
        #expect(SubnetEnvironmentFile.previousNetwork(at: path) == network)
        // Only the target is left: the temporary file was renamed, not copied.
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["subnet.env"])
    }

    @Test func replacesAnExistingFileWhole() throws {
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/subnet.env"
        try String(repeating: "stale line that is much longer than the new file\n", count: 20)
            .write(toFile: path, atomically: false, encoding: .utf8)
        let other = IPv4Prefix("10.244.9.0/24")!
        try SubnetEnvironmentFile.write(to: path, network: network, subnet: other, mtu: 1400, ipMasquerade: true)
        #expect(try String(contentsOfFile: path, encoding: .utf8)
            == SubnetEnvironmentFile.render(network: network, subnet: other, mtu: 1400, ipMasquerade: true))
        #expect(SubnetEnvironmentFile.previousSubnet(at: path) == other)
    }

    @Test func createsMissingDirectoriesWithMode0755() throws {
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/run/flannel/subnet.env"
        try SubnetEnvironmentFile.write(to: path, network: network, subnet: subnet, mtu: 1472, ipMasquerade: false)
        #expect(SubnetEnvironmentFile.previousSubnet(at: path) == subnet)
        let attributes = try FileManager.default.attributesOfItem(atPath: directory + "/run/flannel")
        // The umask may only remove bits, and a usual umask (022) keeps 0755 as it is.
        #expect(((attributes[.posixPermissions] as? NSNumber)?.intValue ?? 0) & ~0o755 == 0)
    }

    @Test func reportsTheFailingStep() throws {
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "not a directory".write(toFile: directory + "/file", atomically: false, encoding: .utf8)
        let error = #expect(throws: SubnetEnvironmentFileError.self) {
            try SubnetEnvironmentFile.write(
                to: directory + "/file/subnet.env", network: network, subnet: subnet, mtu: 1472, ipMasquerade: false)
        }
        #expect(error?.operation == "mkdir \(directory)/file")
        #expect(error?.errno == ENOTDIR)
        #expect(error?.description == "subnet.env: mkdir \(directory)/file: Not a directory (errno 20)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["file"], "nothing left behind")
    }

    @Test func previousSubnetIsNilWhenAbsentOrUnparsable() throws {
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(SubnetEnvironmentFile.previousSubnet(at: directory + "/missing.env") == nil)
        let path = directory + "/subnet.env"
        try "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=garbage\n".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(SubnetEnvironmentFile.previousSubnet(at: path) == nil)
        try "FLANNEL_NETWORK=10.244.0.0/16\n".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(SubnetEnvironmentFile.previousSubnet(at: path) == nil)
    }

    @Test func previousSubnetReadsDotenvVariants() throws {
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/subnet.env"
        try "# written by hand\n\nexport FLANNEL_SUBNET=\"10.244.3.1/24\"\r\nFLANNEL_MTU=1472\n"
            .write(toFile: path, atomically: false, encoding: .utf8)
        #expect(SubnetEnvironmentFile.previousSubnet(at: path) == IPv4Prefix("10.244.3.0/24"))
    }
}
