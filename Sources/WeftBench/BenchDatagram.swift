import Glibc

/// The header every `weft bench` UDP datagram starts with, in network byte order; the rest of
/// the datagram, up to the chosen size, is zeros.
///
/// ```
///  0  magic     UInt32  0x57464254 ("WFBT")
///  4  test id   UInt32  chosen by the server per test: stray datagrams of other tests are ignored
///  8  kind      UInt8   1 rate, 2 rate warm-up, 3 echo request, 4 echo reply
///  9  reserved  7 bytes (zero)
/// 16  sequence  UInt64  from 0 in each phase of a test
/// 24  sent at   UInt64  client's CLOCK_MONOTONIC in ns (echo requests; the server copies it back)
/// ```
public enum BenchDatagram {
    public static let magic: UInt32 = 0x5746_4254
    /// Bytes of header: the smallest datagram the server looks at.
    public static let headerSize = 32

    public enum Kind: UInt8, Sendable {
        /// Counted by the server's sequence tracker (UDP packet rate, measured interval).
        case rate = 1
        /// Sent during the warm-up: received and dropped uncounted.
        case rateWarmUp = 2
        /// Latency mode: the server sends the datagram back as `echoReply`.
        case echoRequest = 3
        case echoReply = 4
    }

    public struct Header: Equatable, Sendable {
        public var test: UInt32
        public var kind: Kind
        public var sequence: UInt64
        public var sentAt: UInt64

        public init(test: UInt32, kind: Kind, sequence: UInt64, sentAt: UInt64 = 0) {
            self.test = test
            self.kind = kind
            self.sequence = sequence
            self.sentAt = sentAt
        }
    }

    /// Writes `header` to the first `headerSize` bytes at `pointer` (any alignment).
    @inline(__always)
    public static func write(_ header: Header, to pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: magic.bigEndian, as: UInt32.self)
        pointer.storeBytes(of: header.test.bigEndian, toByteOffset: 4, as: UInt32.self)
        pointer.storeBytes(of: UInt64(0), toByteOffset: 8, as: UInt64.self)   // kind + reserved
        pointer.storeBytes(of: header.kind.rawValue, toByteOffset: 8, as: UInt8.self)
        pointer.storeBytes(of: header.sequence.bigEndian, toByteOffset: 16, as: UInt64.self)
        pointer.storeBytes(of: header.sentAt.bigEndian, toByteOffset: 24, as: UInt64.self)
    }

    /// Overwrites only the sequence number (the per-packet work of the UDP sender).
    @inline(__always)
    public static func setSequence(_ sequence: UInt64, at pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: sequence.bigEndian, toByteOffset: 16, as: UInt64.self)
    }

    /// Overwrites only the kind byte (an echo request becomes a reply in place).
    @inline(__always)
    public static func setKind(_ kind: Kind, at pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: kind.rawValue, toByteOffset: 8, as: UInt8.self)
    }

    /// The header of `bytes`, or nil when it is too short, has another magic or an unknown kind.
    @inline(__always)
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> Header? {
        guard bytes.count >= headerSize, let base = bytes.baseAddress,
              UInt32(bigEndian: base.loadUnaligned(as: UInt32.self)) == magic,
              let kind = Kind(rawValue: base.load(fromByteOffset: 8, as: UInt8.self))
        else { return nil }
        return Header(test: UInt32(bigEndian: base.loadUnaligned(fromByteOffset: 4, as: UInt32.self)),
                      kind: kind,
                      sequence: UInt64(bigEndian: base.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
                      sentAt: UInt64(bigEndian: base.loadUnaligned(fromByteOffset: 24, as: UInt64.self)))
    }
}

