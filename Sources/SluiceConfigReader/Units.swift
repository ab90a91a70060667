/// Parses sizes with units: `512`, `64KiB`, `1MiB`, `10MB`, `2GiB` (bytes when no unit).
public enum ByteSize {
    private static let units: [(String, Int)] = [
        ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30),
        ("KB", 1000), ("MB", 1_000_000), ("GB", 1_000_000_000),
        ("B", 1),
    ]

    public static func parse(_ text: String) -> Int? {
        let trimmed = text.trimmingSpaces()
        for (suffix, factor) in self.units where trimmed.hasSuffix(suffix) {
            let number = String(trimmed.dropLast(suffix.count)).trimmingSpaces()
            guard let value = Int(number), value >= 0 else { return nil }
            let (product, overflow) = value.multipliedReportingOverflow(by: factor)
            return overflow ? nil : product
        }
        guard let value = Int(trimmed), value >= 0 else { return nil }
        return value
    }

    /// Renders a byte count the way a config would write it.
    public static func format(_ bytes: Int) -> String {
        for (suffix, factor) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] where bytes >= factor && bytes % factor == 0 {
            return "\(bytes / factor)\(suffix)"
        }
        return "\(bytes)B"
    }
}

/// Parses durations with units: `250ms`, `5s`, `2m`, `1h`, `100us`. A bare number is an error.
public enum DurationText {
    public static func parse(_ text: String) -> Duration? {
        let trimmed = text.trimmingSpaces()
        let units: [(String, (Int64) -> Duration?)] = [
            ("ms", { .milliseconds($0) }), ("us", { .microseconds($0) }), ("ns", { .nanoseconds($0) }),
            ("s", { .seconds($0) }), ("m", { Self.seconds($0, times: 60) }), ("h", { Self.seconds($0, times: 3600) }),
        ]
        for (suffix, make) in units where trimmed.hasSuffix(suffix) {
            let number = String(trimmed.dropLast(suffix.count))
            // "5ms" must not parse as "5m" + "s".
            guard let value = Int64(number), value >= 0 else { continue }
            return make(value)
        }
        return nil
    }

    /// `value * factor` seconds, or nil past what a duration in seconds can hold.
    private static func seconds(_ value: Int64, times factor: Int64) -> Duration? {
        let (product, overflow) = value.multipliedReportingOverflow(by: factor)
        return overflow ? nil : .seconds(product)
    }

    public static func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        // Whole seconds when there is no fraction, or when milliseconds would overflow.
        if attoseconds == 0 || seconds > Int64.max / 1000 - 1 { return "\(seconds)s" }
        return "\(seconds * 1000 + attoseconds / 1_000_000_000_000_000)ms"
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let first = s.first, first == " " || first == "\t" { s.removeFirst() }
        while let last = s.last, last == " " || last == "\t" { s.removeLast() }
        return String(s)
    }
}
