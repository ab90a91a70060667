import NIOCore

/// The `grpc-timeout` request header (gRPC over HTTP/2: "Timeout → TimeoutValue TimeoutUnit",
/// at most 8 digits, unit H M S m u n).
enum GRPCTimeout {
    static func parse(_ value: String) -> TimeAmount? {
        let bytes = Array(value.utf8)
        guard bytes.count >= 2, bytes.count <= 9, let unit = bytes.last else { return nil }
        var amount: Int64 = 0
        for digit in bytes.dropLast() {
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { return nil }
            amount = amount * 10 + Int64(digit - UInt8(ascii: "0"))
        }
        switch unit {
        case UInt8(ascii: "H"): return .hours(amount)
        case UInt8(ascii: "M"): return .minutes(amount)
        case UInt8(ascii: "S"): return .seconds(amount)
        case UInt8(ascii: "m"): return .milliseconds(amount)
        case UInt8(ascii: "u"): return .microseconds(amount)
        case UInt8(ascii: "n"): return .nanoseconds(amount)
        default: return nil
        }
    }

    /// What is left of a deadline, in the header's form (milliseconds, at least 1).
    static func format(_ remaining: TimeAmount) -> String {
        let milliseconds = max(1, (remaining.nanoseconds + 999_999) / 1_000_000)
        return "\(min(milliseconds, 99_999_999))m"
    }
}
