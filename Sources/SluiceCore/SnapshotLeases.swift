import Synchronization

/// How many requests are running on one gateway snapshot. Every request takes a lease when it
/// reads the snapshot and gives it back when it is over, so a reload knows when the sinks and
/// upstreams only the old snapshot routed to have no more callers and can be drained and closed.
public final class SnapshotLeases: Sendable {
    private let count = Synchronization.Atomic<Int>(0)

    public init() {}

    /// A request started on this snapshot.
    public func acquire() {
        self.count.wrappingAdd(1, ordering: .relaxed)
    }

    /// That request is over.
    public func release() {
        self.count.wrappingSubtract(1, ordering: .releasing)
    }

    /// Requests running on this snapshot now.
    public var active: Int { self.count.load(ordering: .acquiring) }

    /// Waits until no request runs on this snapshot, or `deadline` passes; true if none runs.
    /// Polls (every 20 ms): it runs once per reload, never on a request's path.
    public func waitUntilUnused(deadline: ContinuousClock.Instant) async -> Bool {
        while self.active > 0 {
            guard ContinuousClock.now < deadline else { return false }
            do { try await Task.sleep(for: .milliseconds(20)) } catch { return self.active == 0 }
        }
        return true
    }
}
