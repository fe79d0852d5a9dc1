import Testing
import WeftCore
import WeftLinux

/// The entry points an in-memory `DatagramTransport` uses to fill a batch as recvmmsg does.
@Suite struct DatagramBatchTests {
    @Test func setReceivedReadsBackAsAReceivedDatagram() {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 64)
        defer { buffer.deallocate() }
        let batch = DatagramBatch(capacity: 4)
        batch.setReceiveBuffer(2, buffer)
        #expect(batch.receiveBuffer(2).baseAddress == buffer.baseAddress)
        #expect(batch.receiveBuffer(2).count == 2048)

        let peer = IPv4Address(198, 18, 0, 2)
        batch.setReceived(2, length: 84, from: peer, port: 8285)
        #expect(batch.length(2) == 84)
        #expect(batch.sender(2).address == peer)
        #expect(batch.sender(2).port == 8285)
        #expect(!batch.isTruncated(2))
        #expect(batch.segmentSize(2) == nil)

        // Longer than the buffer: reported as MSG_TRUNC would be, with the real length.
        batch.setReceived(2, length: 4000, from: peer, port: 8285)
        #expect(batch.isTruncated(2))
        #expect(batch.length(2) == 4000)
    }
}
