import Testing
import WeftCore
import WeftDataPathTesting

/// A 28-byte ICMP echo request, TTL 1, 10.244.1.5 → 10.244.9.9, id 1, seq 7.
private let echoOffender: [UInt8] = [
    0x45, 0x00, 0x00, 0x1C,
    0x12, 0x34, 0x40, 0x00,
    0x01, 0x01, 0x47, 0xB8,
    0x0A, 0xF4, 0x01, 0x05,
    0x0A, 0xF4, 0x09, 0x09,
    0x08, 0x00, 0xF7, 0xF7,
    0x00, 0x01, 0x00, 0x07,
]

private let expectedTimeExceeded: [UInt8] = [
    0x45, 0x00, 0x00, 0x38,
    0x00, 0x00, 0x00, 0x00,
    0x40, 0x01, 0x62, 0xD9,
    0x0A, 0xF4, 0x01, 0x00,
    0x0A, 0xF4, 0x01, 0x05,
    0x0B, 0x00, 0xF4, 0xFF,
    0x00, 0x00, 0x00, 0x00,
] + echoOffender

private let expectedFragmentationNeeded: [UInt8] = [
    0x45, 0x00, 0x00, 0x38,
    0x00, 0x00, 0x00, 0x00,
    0x40, 0x01, 0x62, 0xD9,
    0x0A, 0xF4, 0x01, 0x00,
    0x0A, 0xF4, 0x01, 0x05,
    0x03, 0x04, 0xF7, 0x3B,
    0x00, 0x00, 0x05, 0xC0,
] + echoOffender

private let localSource = IPv4Address(10, 244, 1, 0)

/// Builds out of place into a fresh buffer pre-filled with junk, returning exactly the written bytes.
private func buildOutOfPlace(_ message: ICMPMessage, about offender: [UInt8]) -> [UInt8] {
    var buffer = [UInt8](repeating: 0xEE, count: 200)
    let length = offender.withUnsafeBytes { offenderBytes in
        buffer.withUnsafeMutableBytes { ICMPBuilder.build(message, about: offenderBytes, from: localSource, into: $0) }
    }
    return Array(buffer[0..<length])
}

/// Builds in the buffer that holds the offender, as the data path does with a pool slot.
private func buildInPlace(_ message: ICMPMessage, about offender: [UInt8]) -> [UInt8] {
    var buffer = offender + [UInt8](repeating: 0xEE, count: 200 - offender.count)
    let length = buffer.withUnsafeMutableBytes { slot in
        ICMPBuilder.build(
            message, about: UnsafeRawBufferPointer(rebasing: slot[0..<offender.count]), from: localSource, into: slot)
    }
    return Array(buffer[0..<length])
}

@Suite struct ICMPBuilderTests {
    @Test func timeExceededBytes() {
        #expect(buildOutOfPlace(.timeExceeded, about: echoOffender) == expectedTimeExceeded)
    }

    @Test func fragmentationNeededBytes() {
        #expect(buildOutOfPlace(.fragmentationNeeded(nextHopMTU: 1472), about: echoOffender) == expectedFragmentationNeeded)
    }

    @Test func netUnreachableHeader() {
        let bytes = buildOutOfPlace(.netUnreachable, about: echoOffender)
        #expect(bytes.count == 56)
        #expect(bytes[20] == 3 && bytes[21] == 0)
        #expect(Array(bytes[24..<28]) == [0, 0, 0, 0])
        #expect(referenceChecksum(bytes[20...]) == 0)
        #expect(headerChecksumVerifies(bytes))
    }

    @Test(arguments: [ICMPMessage.timeExceeded, .netUnreachable, .fragmentationNeeded(nextHopMTU: 1400)])
    func inPlaceEqualsOutOfPlace(_ message: ICMPMessage) {
        let udpWithOptions = makePacket(options: [0x94, 0x04, 0, 0], payload: Array(0..<40))
        for offender in [echoOffender, makePacket(), udpWithOptions] {
            let outOfPlace = buildOutOfPlace(message, about: offender)
            #expect(buildInPlace(message, about: offender) == outOfPlace)
            #expect(headerChecksumVerifies(outOfPlace))
            #expect(referenceChecksum(outOfPlace[20...]) == 0)
        }
        let quoted = buildOutOfPlace(message, about: udpWithOptions)
        #expect(quoted.count == 28 + 24 + 8)
        #expect(Array(quoted[28...]) == Array(udpWithOptions[0..<32]))
    }

    @Test func quotesOnlyExistingBytes() {
        let short = makePacket(payload: [1, 2, 3])
        let bytes = buildOutOfPlace(.netUnreachable, about: short)
        #expect(bytes.count == 28 + 23)
        #expect(Array(bytes[28...]) == short)
        #expect(Int(bytes[2]) << 8 | Int(bytes[3]) == bytes.count)
        #expect(referenceChecksum(bytes[20...]) == 0)
        #expect(buildInPlace(.netUnreachable, about: short) == bytes)
    }

    @Test func fragmentationNeededClampsMTU() {
        let bytes = buildOutOfPlace(.fragmentationNeeded(nextHopMTU: 100_000), about: echoOffender)
        #expect(bytes[26] == 0xFF && bytes[27] == 0xFF)
    }
}

@Suite struct MayAnswerTests {
    private func mayAnswer(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { ICMPBuilder.mayAnswer($0) }
    }

    private func icmp(type: UInt8) -> [UInt8] {
        makePacket(protocolNumber: 1, payload: [type, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test func answersOrdinaryPacketsAndEchoes() {
        #expect(mayAnswer(makePacket()))
        #expect(mayAnswer(echoOffender))
        #expect(mayAnswer(icmp(type: 0)))
        #expect(mayAnswer(icmp(type: 8)))
        #expect(mayAnswer(makePacket(flagsAndOffset: 0x2000)))  // first fragment
    }

    @Test(arguments: [UInt8(3), 4, 5, 11, 12])
    func neverAboutICMPErrors(_ type: UInt8) {
        #expect(!mayAnswer(icmp(type: type)))
    }

    @Test func neverAboutNonFirstFragments() {
        #expect(!mayAnswer(makePacket(flagsAndOffset: 0x0001)))
        #expect(!mayAnswer(makePacket(flagsAndOffset: 0x2010)))
    }

    @Test(arguments: [IPv4Address(0, 0, 0, 0), IPv4Address(255, 255, 255, 255), IPv4Address(224, 0, 0, 1),
                      IPv4Address(239, 255, 255, 250), IPv4Address(127, 0, 0, 1), IPv4Address(127, 9, 9, 9)])
    func neverToUnanswerableSources(_ source: IPv4Address) {
        #expect(!mayAnswer(makePacket(source: source)))
    }

    @Test func neverAboutBroadcastOrMulticastDestinations() {
        #expect(!mayAnswer(makePacket(destination: IPv4Address(255, 255, 255, 255))))
        #expect(!mayAnswer(makePacket(destination: IPv4Address(224, 0, 0, 251))))
    }

    @Test func neverAboutUnreadablePackets() {
        #expect(!mayAnswer([]))
        #expect(!mayAnswer(Array(makePacket().prefix(19))))
        #expect(!mayAnswer(makePacket(protocolNumber: 1, payload: [])))
    }
}
