import Glibc
import Testing
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
