import NIOConcurrencyHelpers

/// Holds one immutable value that is replaced whole: readers take the current value once (per
/// request) and keep using it, a writer swaps in the next. A read is a lock held for one
/// reference copy, never across a request.
public final class AtomicBox<Value: Sendable>: Sendable {
    private let value: NIOLockedValueBox<Value>

    public init(_ value: Value) {
        self.value = NIOLockedValueBox(value)
    }

    /// The current value.
    public func load() -> Value {
        self.value.withLockedValue { $0 }
    }

    /// Replaces the value; returns the one it replaced.
    @discardableResult
    public func exchange(_ next: Value) -> Value {
        self.value.withLockedValue { current in
            defer { current = next }
            return current
        }
    }
}
