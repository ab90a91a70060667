/// A set of ASCII bytes as one bit per byte below 128, in two words (bytes 0-63 and 64-127);
/// nothing at or above 128 is in it. Shared by the byte sets the HTTP rules are made of (a
/// header token's, a request target's): one test of a constant mask per byte.
@usableFromInline
enum ASCIIByteMask {
    @inlinable @inline(__always)
    static func contains(_ byte: UInt8, low: UInt64, high: UInt64) -> Bool {
        if byte < 64 { return low & (1 << UInt64(byte)) != 0 }
        if byte < 128 { return high & (1 << UInt64(byte - 64)) != 0 }
        return false
    }
}
