import Foundation
import SluiceCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What went wrong with a spool's files: the operation, the path and the system's error.
public struct SpoolError: Error, Sendable, CustomStringConvertible, Equatable {
    public var operation: String
    public var path: String
    public var errno: Int32

    public init(_ operation: String, path: String, errno: Int32) {
        self.operation = operation
        self.path = path
        self.errno = errno
    }

    public var description: String { "\(self.operation) \(self.path): \(String(cString: strerror(self.errno)))" }

    /// The disk is full (or the spool's file system is): the write did not happen.
    public var isDiskFull: Bool { self.errno == ENOSPC || self.errno == EDQUOT }
}

/// What opening a spool found: the records waiting to be forwarded, and what was cut.
public struct SpoolRecovery: Sendable, Equatable {
    /// Records not yet acknowledged, to be forwarded again.
    public var pendingRecords = 0
    /// Of those, the ones a forwarder had handed to the sink before the restart (the `sent`
    /// mark): the sink may have them already, so forwarding them again may duplicate them.
    public var possiblyDuplicated = 0
    /// When the oldest segment holding pending records was last written (ms since the epoch).
    public var oldestSegmentWrittenAt: Int64?
    /// Bytes cut from the end of a segment: a record torn by a crash (or corrupted), never replayed.
    public var bytesCut = 0
    /// Segments in which a bad record was found before the last one (corruption, not a crash).
    public var damagedSegments: [String] = []
}

/// A spool directory's write-ahead log: size-rotated segment files of checksummed records
/// (`SpoolRecord`), named by the sequence number of their first record
/// (`00000000000000000000.spool`), and an `acknowledged` checkpoint: every record below it has
/// been settled by the sink. A segment wholly below the checkpoint is deleted.
///
/// Opening takes an exclusive lock on `<directory>/.lock` (one process per spool), finds the
/// checkpoint, scans every segment, and cuts a torn or corrupted tail where the first record
/// that does not read whole and intact starts. Not thread-safe: one serial owner drives it.
public final class SpoolLog {
    public let directory: String
    public let segmentBytes: Int
    /// The largest record payload read back; a frame that says more is not a record.
    public let maxRecordBytes: Int
    public private(set) var recovery = SpoolRecovery()
    /// The sequence number the next appended record gets.
    public private(set) var nextSequence: UInt64 = 0
    /// Every record below this has been acknowledged.
    public private(set) var acknowledged: UInt64 = 0
    /// fsyncs of appended records so far (group commit makes them fewer than appends).
    public private(set) var syncs = 0

    private struct Segment {
        var base: UInt64
        var path: String
        var bytes: Int
        /// The sequence after its last record (its next segment's base, once closed).
        var end: UInt64
    }

    private var segments: [Segment] = []
    private var fd: Int32 = -1
    private var lockFD: Int32 = -1
    private var dirty = false
    /// Where `readNext` continues: a segment's position in `segments`, a byte offset in it, and
    /// the sequence it expects next.
    private var cursor: (segment: Int, offset: Int)?

    /// Bytes of the segments on disk: what `max_bytes` bounds.
    public var bytesOnDisk: Int { self.segments.reduce(0) { $0 + $1.bytes } }

    /// Records appended and not yet acknowledged.
    public var pendingRecords: UInt64 { self.nextSequence - self.acknowledged }

    public init(directory: String, segmentBytes: Int, maxRecordBytes: Int) throws(SpoolError) {
        self.directory = directory
        self.segmentBytes = segmentBytes
        self.maxRecordBytes = maxRecordBytes
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw SpoolError("create directory", path: directory, errno: EACCES)
        }
        try self.lock()
        try self.recover()
    }

    deinit {
        if self.fd >= 0 { close(self.fd) }
        if self.sentFD >= 0 { close(self.sentFD) }
        if self.lockFD >= 0 { close(self.lockFD) }
    }

    private func lock() throws(SpoolError) {
        let path = self.directory + "/.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SpoolError("open", path: path, errno: errno) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            close(fd)
            throw SpoolError("lock (is another Sluice using this spool?)", path: path, errno: code)
        }
        self.lockFD = fd
    }

    static func segmentName(_ base: UInt64) -> String {
        let digits = String(base)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".spool"
    }

    private var checkpointPath: String { self.directory + "/acknowledged" }
    private var sentPath: String { self.directory + "/sent" }
    private var sentFD: Int32 = -1

    /// Reads a mark file (8 bytes, then their CRC-32C); a missing or damaged one is 0 — for the
    /// checkpoint, that forwards everything again (at-least-once).
    private func readMark(_ path: String) -> UInt64 {
        guard let data = FileManager.default.contents(atPath: path), data.count == 12 else { return 0 }
        let bytes = [UInt8](data)
        let value = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        let checksum = bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) }
        return CRC32C.checksum(Array(bytes[0..<8])) == checksum ? value : 0
    }

    private static func mark(_ value: UInt64) -> [UInt8] {
        var bytes: [UInt8] = []
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: CRC32C.checksum(bytes).littleEndian) { bytes.append(contentsOf: $0) }
        return bytes
    }

    private func recover() throws(SpoolError) {
        self.acknowledged = self.readMark(self.checkpointPath)
        let sent = self.readMark(self.sentPath)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: self.directory)) ?? []
        let bases = names.compactMap { name -> UInt64? in
            guard name.hasSuffix(".spool"), name.count == 26 else { return nil }
            return UInt64(name.prefix(20))
        }.sorted()
        for (position, base) in bases.enumerated() {
            let path = self.directory + "/" + Self.segmentName(base)
            guard let data = FileManager.default.contents(atPath: path) else { throw SpoolError("read", path: path, errno: EIO) }
            var offset = 0
            var end = base
            var records = 0
            data.withUnsafeBytes { raw in
                while offset < raw.count, let (entry, size) = SpoolRecord.read(UnsafeRawBufferPointer(rebasing: raw[offset...]), maxPayloadBytes: self.maxRecordBytes),
                    entry.sequence == end
                {
                    if entry.sequence >= self.acknowledged {
                        records += 1
                        if entry.sequence < sent { self.recovery.possiblyDuplicated += 1 }
                    }
                    offset += size
                    end += 1
                }
            }
            if offset < data.count {
                guard truncate(path, off_t(offset)) == 0 else { throw SpoolError("truncate", path: path, errno: errno) }
                self.recovery.bytesCut += data.count - offset
                if position < bases.count - 1 { self.recovery.damagedSegments.append(Self.segmentName(base)) }
            }
            self.recovery.pendingRecords += records
            if records > 0, self.recovery.oldestSegmentWrittenAt == nil,
                let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
            {
                self.recovery.oldestSegmentWrittenAt = Int64(modified.timeIntervalSince1970 * 1000)
            }
            self.segments.append(Segment(base: base, path: path, bytes: offset, end: end))
        }
        // A later segment starts where the records it holds start, so a cut one leaves a gap
        // in the sequence, not a duplicate.
        self.nextSequence = max(self.segments.last?.end ?? 0, self.acknowledged)
        try self.deleteAcknowledgedSegments()
        if let last = self.segments.last, last.end == self.nextSequence, last.bytes < self.segmentBytes {
            try self.openForAppend(last.path)
        } else {
            try self.startSegment()
        }
        self.cursor = self.segments.isEmpty ? nil : (0, 0)
    }

    private func openForAppend(_ path: String) throws(SpoolError) {
        if self.fd >= 0 { close(self.fd) }
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SpoolError("open", path: path, errno: errno) }
        self.fd = fd
    }

    private func startSegment() throws(SpoolError) {
        let path = self.directory + "/" + Self.segmentName(self.nextSequence)
        try self.openForAppend(path)
        self.segments.append(Segment(base: self.nextSequence, path: path, bytes: 0, end: self.nextSequence))
        try self.syncDirectory()
    }

    private func syncDirectory() throws(SpoolError) {
        let dirfd = open(self.directory, O_RDONLY | O_CLOEXEC)
        guard dirfd >= 0 else { throw SpoolError("open", path: self.directory, errno: errno) }
        defer { close(dirfd) }
        guard fsync(dirfd) == 0 else { throw SpoolError("fsync", path: self.directory, errno: errno) }
    }

    /// Writes `entries` (their sequence numbers are assigned here, from `nextSequence`); not
    /// durable until `sync`. A failed write leaves the segment as it was.
    /// - Returns: the sequence numbers given.
    @discardableResult
    public func append(_ entries: [(topic: String, event: Event)]) throws(SpoolError) -> Range<UInt64> {
        let first = self.nextSequence
        guard !entries.isEmpty else { return first..<first }
        var frames: [UInt8] = []
        for (offset, entry) in entries.enumerated() {
            SpoolRecord.append(SpoolEntry(sequence: first + UInt64(offset), topic: entry.topic, event: entry.event), to: &frames)
        }
        if let last = self.segments.last, last.bytes > 0, last.bytes + frames.count > self.segmentBytes {
            try self.sync()
            try self.startSegment()
        }
        let path = self.segments[self.segments.count - 1].path
        let size = self.segments[self.segments.count - 1].bytes
        let failure: Int32? = frames.withUnsafeBytes { raw in
            var written = 0
            while written < raw.count {
                let n = write(self.fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    let code = errno
                    // Cut a partial write: the segment never holds half a record.
                    if written > 0 { _ = ftruncate(self.fd, off_t(size)) }
                    return code
                }
                written += n
            }
            return nil
        }
        if let failure { throw SpoolError("write", path: path, errno: failure) }
        self.segments[self.segments.count - 1].bytes += frames.count
        self.nextSequence += UInt64(entries.count)
        self.segments[self.segments.count - 1].end = self.nextSequence
        self.dirty = true
        return first..<self.nextSequence
    }

    /// Makes everything appended durable (one fsync for however many appends came before).
    public func sync() throws(SpoolError) {
        guard self.dirty else { return }
        guard fsync(self.fd) == 0 else { throw SpoolError("fsync", path: self.segments.last?.path ?? self.directory, errno: errno) }
        self.dirty = false
        self.syncs += 1
    }

    /// The next records after those already read, up to about `maxBytes` (at least one), in
    /// sequence order; empty when every appended record has been read. Starts, after opening,
    /// at the first record not acknowledged.
    public func readNext(maxBytes: Int) throws(SpoolError) -> [SpoolEntry] {
        var entries: [SpoolEntry] = []
        var bytes = 0
        while var cursor = self.cursor, cursor.segment < self.segments.count, bytes < maxBytes || entries.isEmpty {
            let segment = self.segments[cursor.segment]
            guard cursor.offset < segment.bytes else {
                guard cursor.segment + 1 < self.segments.count else { break }
                self.cursor = (cursor.segment + 1, 0)
                continue
            }
            let handle = open(segment.path, O_RDONLY | O_CLOEXEC)
            guard handle >= 0 else { throw SpoolError("open", path: segment.path, errno: errno) }
            defer { close(handle) }
            let length = min(segment.bytes - cursor.offset, max(maxBytes - bytes, 0) + self.maxRecordBytes + SpoolRecord.frameHeaderBytes)
            var buffer = [UInt8](repeating: 0, count: length)
            let got = buffer.withUnsafeMutableBytes { pread(handle, $0.baseAddress!, length, off_t(cursor.offset)) }
            guard got > 0 else { throw SpoolError("read", path: segment.path, errno: got < 0 ? errno : EIO) }
            var offset = 0
            buffer.withUnsafeBytes { raw in
                while offset < got, bytes < maxBytes || entries.isEmpty,
                    let (entry, size) = SpoolRecord.read(UnsafeRawBufferPointer(rebasing: raw[offset..<got]), maxPayloadBytes: self.maxRecordBytes)
                {
                    if entry.sequence >= self.acknowledged { entries.append(entry) }
                    offset += size
                    bytes += size
                }
            }
            guard offset > 0 else { throw SpoolError("read (a record does not read whole)", path: segment.path, errno: EIO) }
            cursor.offset += offset
            self.cursor = cursor
        }
        return entries
    }

    /// Records that every sequence below `sequence` is settled: the checkpoint is rewritten
    /// (write, fsync, rename) and segments wholly below it are deleted.
    public func acknowledge(below sequence: UInt64) throws(SpoolError) {
        let sequence = min(sequence, self.nextSequence)
        guard sequence > self.acknowledged else { return }
        // Segments wholly below it go first: that needs no room, and on a full disk it is what
        // makes room for the checkpoint (a crash before the checkpoint only replays more).
        self.acknowledged = sequence
        try self.deleteAcknowledgedSegments()
        let bytes = Self.mark(sequence)
        let temporary = self.checkpointPath + ".new"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SpoolError("open", path: temporary, errno: errno) }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
        let synced = fsync(fd) == 0
        let code = errno
        close(fd)
        guard written == bytes.count, synced else { throw SpoolError("write", path: temporary, errno: code) }
        guard rename(temporary, self.checkpointPath) == 0 else { throw SpoolError("rename", path: temporary, errno: errno) }
        try self.syncDirectory()
    }

    /// Notes that every record below `sequence` has been handed to the sink (not yet settled),
    /// so that after a crash the ones forwarded again are known to be possible duplicates.
    /// Written in place and not fsynced: a process crash keeps it, a power cut may lose it.
    public func noteSent(below sequence: UInt64) {
        if self.sentFD < 0 { self.sentFD = open(self.sentPath, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644) }
        guard self.sentFD >= 0 else { return }
        let bytes = Self.mark(sequence)
        _ = bytes.withUnsafeBytes { pwrite(self.sentFD, $0.baseAddress!, $0.count, 0) }
    }

    /// Deletes closed segments whose records are all acknowledged (never the one appended to).
    private func deleteAcknowledgedSegments() throws(SpoolError) {
        var deleted = 0
        while self.segments.count > 1, let first = self.segments.first, first.end <= self.acknowledged {
            guard unlink(first.path) == 0 || errno == ENOENT else { throw SpoolError("delete", path: first.path, errno: errno) }
            self.segments.removeFirst()
            deleted += 1
        }
        if deleted > 0, let cursor = self.cursor {
            self.cursor = cursor.segment >= deleted ? (cursor.segment - deleted, cursor.offset) : (0, 0)
        }
    }
}
