import CWeftLinux
import Glibc
import Synchronization

/// A layer-3 TUN device (`IFF_TUN | IFF_NO_PI`, single queue, not persistent), as flannel's udp
/// backend creates flannel0. The descriptor is non-blocking and close-on-exec: wait for it with
/// `Poll.waitReadable`. Closing it removes the device and every route through it.
///
/// Thread-safety: `read` and `write` may be called from different threads (one reader, one
/// writer); `close` must not race with a `read`/`write` still in progress (stop those threads
/// first, e.g. with an `EventFD` wakeup), as the descriptor number could be reused.
public final class TunDevice: @unchecked Sendable {
    /// The kernel's name for the device ("flannel0" when opened as "flannel%d").
    public let name: String
    public let fileDescriptor: Int32
    /// if_nametoindex at open time.
    public let interfaceIndex: Int32

    private let closed = Atomic<Bool>(false)

    private init(name: String, fileDescriptor: Int32, interfaceIndex: Int32) {
        self.name = name
        self.fileDescriptor = fileDescriptor
        self.interfaceIndex = interfaceIndex
    }

    /// Opens /dev/net/tun and creates (or attaches to) the TUN device `name`, which may hold a
    /// "%d" for the kernel to fill in. Must run in the network namespace the device belongs in.
    ///
    /// Errors: a name of 16 bytes or more → ENAMETOOLONG ("TUNSETIFF <name>") before anything is
    /// opened; no /dev/net/tun → ENOENT ("open /dev/net/tun"); no CAP_NET_ADMIN → EPERM
    /// ("TUNSETIFF <name>"); a non-TUN interface of that name exists → EINVAL or EBUSY.
    public static func open(name: String) throws(SystemError) -> TunDevice {
        guard name.utf8.count < Int(CWeftLinux_IFNAMSIZ), !name.utf8.contains(0) else {
            throw SystemError(errno: ENAMETOOLONG, operation: "TUNSETIFF \(name)")
        }
        let fd = try Syscall.open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK)
        do throws(SystemError) {
            let actual = try Syscall.tunSetInterface(
                fd, name: name, flags: CWeftLinux_IFF_TUN | CWeftLinux_IFF_NO_PI)
            let index = if_nametoindex(actual)
            if index == 0 {
                throw SystemError(errno: Glibc.errno, operation: "if_nametoindex \(actual)")
            }
            return TunDevice(name: actual, fileDescriptor: fd, interfaceIndex: Int32(bitPattern: index))
        } catch {
            _ = Glibc.close(fd)
            throw error
        }
    }

    /// Reads one packet. Returns its length, or nil when none is waiting. A packet longer than
    /// `buffer` is truncated by the kernel (size buffers for the MTU).
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int? {
        switch try Syscall.readNonBlocking(fileDescriptor, buffer, name) {
        case .processed(let count): return count
        case .wouldBlock: return nil
        }
    }

    /// Writes one whole IP packet. Returns false when the device queue is full (would block).
    /// A short write is reported as an EIO SystemError.
    public func write(_ packet: UnsafeRawBufferPointer) throws(SystemError) -> Bool {
        switch try Syscall.writeNonBlocking(fileDescriptor, packet, name) {
        case .processed(let count):
            guard count == packet.count else {
                throw SystemError(errno: EIO, operation: "write \(name) (short write: \(count) of \(packet.count) bytes)")
            }
            return true
        case .wouldBlock:
            return false
        }
    }

    /// Closes the descriptor, which removes the device with its addresses and routes. Idempotent.
    public func close() {
        if closed.exchange(true, ordering: .acquiringAndReleasing) { return }
        try? Syscall.close(fileDescriptor, name)
    }

    deinit {
        close()
    }
}
