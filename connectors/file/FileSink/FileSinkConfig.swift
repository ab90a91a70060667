/// A validated file sink configuration (`sinks[].file`).
public struct FileSinkConfig: Sendable, Equatable {
    /// Where segment files are written; created if missing.
    public var directory: String
    /// A segment is closed and a new one started once it reaches this size.
    public var segmentBytes: Int
    /// When written events are forced to disk.
    public var fsync: FsyncPolicy

    public init(directory: String, segmentBytes: Int = 64 * 1024 * 1024, fsync: FsyncPolicy = .always) {
        self.directory = directory
        self.segmentBytes = segmentBytes
        self.fsync = fsync
    }

    public enum FsyncPolicy: Sendable, Equatable {
        /// fsync before acknowledging each batch of events: an ack survives a power loss.
        case always
        /// fsync at most once per interval; an ack survives a process crash, not a power loss.
        case interval(Duration)
        /// never fsync; the OS writes back when it chooses.
        case never
    }
}
