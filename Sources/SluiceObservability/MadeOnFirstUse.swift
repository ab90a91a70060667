/// Values by key, each made the first time its key is asked for and kept; the last one asked for
/// is kept beside the dictionary, so that a run of requests with the same key (the common case:
/// one route, one listener, one status) compares the key instead of hashing its names.
/// Not synchronized: its owner keeps it under a lock.
struct MadeOnFirstUse<Key: Hashable, Value> {
    private(set) var all: [Key: Value] = [:]
    private var last: (key: Key, value: Value)?

    mutating func value(for key: Key, make: () -> Value) -> Value {
        if let last = self.last, last.key == key { return last.value }
        let value: Value
        if let kept = self.all[key] {
            value = kept
        } else {
            value = make()
            self.all[key] = value
        }
        self.last = (key, value)
        return value
    }
}

extension MadeOnFirstUse: Sendable where Key: Sendable, Value: Sendable {}
