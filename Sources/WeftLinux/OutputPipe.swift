import Glibc

/// A pipe that collects what a child writes to its stdout or stderr: the child gets
/// `writeEnd` (`ChildProcess.Output.descriptor`), we read the other end until end of file.
public final class OutputPipe {
    /// For the child; close it here with `closeWriteEnd()` once the child has its copy, so the
    /// read end sees end of file when the child is done.
    public let writeEnd: Int32
    private var readEnd: Int32
    private var writeEndOpen = true
    /// Everything read so far.
    public private(set) var bytes: [UInt8] = []

    public init() throws(SystemError) {
        (readEnd, writeEnd) = try Syscall.pipe()
    }

    deinit {
        closeWriteEnd()
        closeReadEnd()
    }

    public func closeWriteEnd() {
        guard writeEndOpen else { return }
        writeEndOpen = false
        try? Syscall.close(writeEnd, "pipe")
    }

    /// False once the writer closed its end (or reading failed): nothing more will come.
    public var isOpen: Bool { readEnd >= 0 }

    /// What was read, as UTF-8 (invalid bytes replaced).
    public var text: String { String(decoding: bytes, as: UTF8.self) }

    /// Waits at most `milliseconds` for any open pipe of `pipes` to have data and reads one
    /// chunk from each that has; returns at once when none is open.
    public static func collect(_ pipes: [OutputPipe], waitingAtMost milliseconds: Int32) throws(SystemError) {
        let open = pipes.filter(\.isOpen)
        guard !open.isEmpty else { return }
        var descriptors = open.map { pollfd(fd: $0.readEnd, events: Int16(POLLIN), revents: 0) }
        let ready = try descriptors.withUnsafeMutableBufferPointer { (buffer) throws(SystemError) -> Int32 in
            try Syscall.poll(buffer.baseAddress!, buffer.count, milliseconds)
        }
        guard ready > 0 else { return }
        for (index, pipe) in open.enumerated() where descriptors[index].revents != 0 {
            pipe.readChunk()
        }
    }

    /// One read(2); end of file or an error closes the read end.
    private func readChunk() {
        var chunk = [UInt8](repeating: 0, count: 16384)
        let count = chunk.withUnsafeMutableBytes { buffer in
            (try? Syscall.read(readEnd, buffer, "pipe")) ?? 0
        }
        if count > 0 {
            bytes += chunk[0..<count]
        } else {
            closeReadEnd()
        }
    }

    private func closeReadEnd() {
        guard readEnd >= 0 else { return }
        try? Syscall.close(readEnd, "pipe")
        readEnd = -1
    }
}
