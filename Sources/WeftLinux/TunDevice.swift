import CWeftLinux
import Glibc
import Synchronization

/// A layer-3 TUN device, or one queue of it (`IFF_TUN | IFF_NO_PI`, not persistent), as flannel's udp
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
    /// Bytes of virtio-net header in front of every packet read and written: 10 (the legacy
    /// `struct virtio_net_hdr`, host byte order) when opened with offloads, else 0.
    public let vnetHeaderSize: Int
    /// Whether the kernel takes UDP super-packets written with a virtio header
    /// (VIRTIO_NET_HDR_GSO_UDP_L4, Linux 6.2+), probed at open: it accepts TUN_F_USO4|USO6 then.
    /// Weft does not keep USO switched on, so reads never hand over UDP super-packets.
    public let acceptsUDPSuperPackets: Bool

    /// The vnet header size used with offloads (legacy `struct virtio_net_hdr`).
    public static let offloadVnetHeaderSize = 10

    private let closed = Atomic<Bool>(false)

    private init(name: String, fileDescriptor: Int32, interfaceIndex: Int32, vnetHeaderSize: Int, acceptsUDPSuperPackets: Bool) {
        self.name = name
        self.fileDescriptor = fileDescriptor
        self.interfaceIndex = interfaceIndex
        self.vnetHeaderSize = vnetHeaderSize
        self.acceptsUDPSuperPackets = acceptsUDPSuperPackets
    }

    /// Opens /dev/net/tun and creates (or attaches to) the TUN device `name`, which may hold a
    /// "%d" for the kernel to fill in. Must run in the network namespace the device belongs in.
    ///
    /// Errors: a name of 16 bytes or more → ENAMETOOLONG ("TUNSETIFF <name>") before anything is
    /// opened; no /dev/net/tun → ENOENT ("open /dev/net/tun"); no CAP_NET_ADMIN → EPERM
    /// ("TUNSETIFF <name>"); a non-TUN interface of that name exists → EINVAL or EBUSY.
    public static func open(name: String) throws(SystemError) -> TunDevice {
        try open(name: name, offloads: false)
    }

    /// As `open(name:)`; with `offloads`, the device is created with `IFF_VNET_HDR`, its vnet
    /// header size set to 10 (TUNSETVNETHDRSZ) and `TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4)`
    /// (IPv4 TSO only: no TSO6, no USO, so the kernel never hands over UDP or IPv6
    /// super-packets). Every read then returns [10-byte virtio_net_hdr][packet of up to 64 KiB],
    /// which may be a TCP super-packet (gso_type TCPV4) or carry a partial checksum
    /// (VIRTIO_NET_HDR_F_NEEDS_CSUM); every write must start with a virtio_net_hdr.
    ///
    /// Errors: as `open(name:)`, plus "TUNSETVNETHDRSZ <name>" and "TUNSETOFFLOAD <name>" (a
    /// kernel refusing the offloads is an error, never silently ignored).
    public static func open(name: String, offloads: Bool) throws(SystemError) -> TunDevice {
        try open(name: name, offloads: offloads, multiQueue: false)
    }

    /// `count` queues of one TUN device, each its own descriptor (`IFF_MULTI_QUEUE`): the kernel
    /// hands each transmitted packet to one queue by a hash of its flow, so a thread per queue
    /// reads its share and one flow stays on one queue; a packet may be written to any queue.
    /// With `count` 1 it is the single-queue device of `open(name:offloads:)`, which is what
    /// flanneld creates. The device goes when the last queue is closed.
    ///
    /// Errors: as `open(name:offloads:)`; a single-queue device of that name that already exists
    /// refuses more queues with EINVAL.
    public static func openQueues(name: String, offloads: Bool, count: Int) throws(SystemError) -> [TunDevice] {
        precondition(count >= 1, "a TUN needs at least one queue")
        guard count > 1 else { return [try open(name: name, offloads: offloads)] }
        let first = try open(name: name, offloads: offloads, multiQueue: true)
        var queues = [first]
        for _ in 1..<count {
            // By the kernel's name, so a "flannel%d" pattern cannot create a second device.
            queues.append(try open(name: first.name, offloads: offloads, multiQueue: true))
        }
        return queues
    }

    private static func open(name: String, offloads: Bool, multiQueue: Bool) throws(SystemError) -> TunDevice {
        guard name.utf8.count < Int(CWeftLinux_IFNAMSIZ), !name.utf8.contains(0) else {
            throw SystemError(errno: ENAMETOOLONG, operation: "TUNSETIFF \(name)")
        }
        let fd = try Syscall.open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK)
        do throws(SystemError) {
            var flags = CWeftLinux_IFF_TUN | CWeftLinux_IFF_NO_PI
            if offloads { flags |= CWeftLinux_IFF_VNET_HDR }
            if multiQueue { flags |= CWeftLinux_IFF_MULTI_QUEUE }
            let actual = try Syscall.tunSetInterface(fd, name: name, flags: flags)
            var acceptsUSO = false
            if offloads {
                try Syscall.tunSetVnetHeaderSize(fd, Int32(offloadVnetHeaderSize), actual)
                let offload = CWeftLinux_TUN_F_CSUM | CWeftLinux_TUN_F_TSO4
                // The same kernel change (6.2) taught TUN writes GSO_UDP_L4 and TUNSETOFFLOAD the
                // USO flags: a kernel that takes the flags takes the writes. Set back at once.
                acceptsUSO = (try? Syscall.tunSetOffload(fd, offload | CWeftLinux_TUN_F_USO4 | CWeftLinux_TUN_F_USO6, actual)) != nil
                try Syscall.tunSetOffload(fd, offload, actual)
            }
            let index = if_nametoindex(actual)
            if index == 0 {
                throw SystemError(errno: Glibc.errno, operation: "if_nametoindex \(actual)")
            }
            return TunDevice(name: actual, fileDescriptor: fd, interfaceIndex: Int32(bitPattern: index),
                             vnetHeaderSize: offloads ? offloadVnetHeaderSize : 0, acceptsUDPSuperPackets: acceptsUSO)
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

    /// writev(2) of one whole packet gathered from `vectors` (with offloads: [virtio_net_hdr]
    /// [IP header][payload slices…], without copying). Returns false when the device queue is
    /// full (would block). A short write is reported as an EIO SystemError.
    public func write(vectors: UnsafeBufferPointer<iovec>) throws(SystemError) -> Bool {
        var total = 0
        for vector in vectors { total += vector.iov_len }
        switch try Syscall.writevNonBlocking(fileDescriptor, vectors, name) {
        case .processed(let count):
            guard count == total else {
                throw SystemError(errno: EIO, operation: "writev \(name) (short write: \(count) of \(total) bytes)")
            }
            return true
        case .wouldBlock:
            return false
        }
    }

    /// What already holds a device name, as /sys/class/net shows it.
    public enum ExistingDevice: Sendable, Equatable, CustomStringConvertible {
        /// A TUN that outlives its users (`ip tuntap add`, or one a flanneld made persistent).
        case persistentTUN
        /// A TUN some process has open (another weft, or a flanneld).
        case tunInUse
        /// Some other kind of interface.
        case otherInterface

        public var description: String {
            switch self {
            case .persistentTUN: "a persistent TUN device (made by ip tuntap add, or left by a flanneld)"
            case .tunInUse: "a TUN device another process has open (another weft or flanneld?)"
            case .otherInterface: "a network interface that is not a TUN device"
            }
        }
    }

    /// The device called `name` in this namespace, if there is one. A name with "%d" (the kernel
    /// picks a free one) is never taken.
    public static func existingDevice(named name: String) -> ExistingDevice? {
        guard !name.contains("%"), !name.contains("/"), !name.isEmpty, if_nametoindex(name) != 0 else { return nil }
        // tun_flags exists for TUN and TAP devices only; IFF_PERSIST is 0x800.
        guard let flags = interfaceAttribute(name, "tun_flags", radix: 16) else { return .otherInterface }
        return flags & 0x800 != 0 ? .persistentTUN : .tunInUse
    }

    /// Packets the kernel dropped on their way into the device's queues since it was created
    /// (`tx_dropped`): the TUN driver detaches each packet from its sending socket and drops it
    /// when the queue's ring is full, so a sender that outpaces the reader loses packets here,
    /// never in Weft, and feels no backpressure. nil when the counter cannot be read.
    public var kernelDrops: Int? {
        Self.interfaceAttribute(name, "statistics/tx_dropped", radix: 10)
    }

    /// A number from /sys/class/net/`name`/`attribute` ("0x" allowed in base 16); nil when the
    /// file is missing or holds something else.
    private static func interfaceAttribute(_ name: String, _ attribute: String, radix: Int) -> Int? {
        guard let text = try? FileContents.read("/sys/class/net/\(name)/\(attribute)"),
              var word = text.split(whereSeparator: \.isWhitespace).first
        else { return nil }
        if radix == 16, word.hasPrefix("0x") { word = word.dropFirst(2) }
        return Int(word, radix: radix)
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
