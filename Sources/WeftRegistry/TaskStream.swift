extension AsyncThrowingStream where Failure == Error {
    /// A stream fed by `produce` on a task of its own, as every registry watch is: the stream
    /// finishes when `produce` returns or is cancelled, carries any other error it throws, and
    /// cancels the task when the consumer stops listening.
    package static func producedByTask(_ produce: @escaping @Sendable (_ yield: @escaping @Sendable (Element) -> Void) async throws -> Void)
        -> AsyncThrowingStream<Element, Error> where Element: Sendable
    {
        AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    try await produce { continuation.yield($0) }
                    continuation.finish()
                } catch is CancellationError {
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}
