// fuzz-sources: Sources/WeftRegistry/SubnetRegistry.swift Sources/WeftEtcd/EtcdModel.swift
// A line of etcd's watch stream, as a broken or hostile gateway might send it (after the
// first 8 bytes, the revision the watcher already has). Invariants: a line is events, a
// compaction or a failure with a reason, never a crash; no event at or below the revision the
// watcher has comes out again; a compaction names a revision.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 8 else { return 0 }
    var revision: Int64 = 0
    for index in 0..<8 { revision = revision << 8 | Int64(data[index]) }
    let line = UnsafeBufferPointer(start: data + 8, count: size - 8)
    let message = WatchLine.read(line, after: revision)
    switch message.outcome {
    case .events(let events):
        for event in events where event.revision <= revision {
            violated("event at revision \(event.revision) delivered again after \(revision)")
        }
    case .compacted(let compacted):
        guard compacted > 0 else { violated("compaction at revision \(compacted)") }
    case .failed(let reason):
        guard !reason.isEmpty else { violated("a failure without a reason") }
    }
    return 0
}
