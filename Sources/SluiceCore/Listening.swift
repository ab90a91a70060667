/// A listener whose state the admin API reports.
public protocol Listening: Sendable {
    var name: String { get }
    /// Bound and not draining.
    var isAccepting: Bool { get }
}
