import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Appends bytes to size-rotated segment files named by the offset of their first record
/// (`00000000000000000000.ndjson`), like Kafka's log segments. Not thread-safe: the file
/// sink drives it from one serial queue.
final class SegmentWriter {
    let directory: String
    let segmentBytes: Int
    private var fd: Int32 = -1
    private var segmentSize = 0
    private(set) var nextOffset: Int64 = 0
    private var lastSync = ContinuousClock.now
    private var dirty = false

    private var lockFD: Int32 = -1

    init(directory: String, segmentBytes: Int) throws(FileSinkError) {
        self.directory = directory
        self.segmentBytes = segmentBytes
        try self.createDirectory()
        try self.lockDirectory()
        try self.recover()
    }

    deinit {
        if self.fd >= 0 { close(self.fd) }
        if self.lockFD >= 0 { close(self.lockFD) }
    }

    /// Two writers appending to the same segments would interleave and corrupt them: hold an
    /// exclusive lock on `<directory>/.lock` for as long as this writer lives.
    private func lockDirectory() throws(FileSinkError) {
        let path = self.directory + "/.lock"
        let fd = Foundation.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileSinkError(operation: "open", path: path, errno: errno) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            close(fd)
            throw FileSinkError(operation: "lock (is another Sluice writing to this directory?)", path: path, errno: code)
        }
        self.lockFD = fd
    }

    private func createDirectory() throws(FileSinkError) {
        do {
            try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        } catch {
            throw FileSinkError(operation: "create directory", path: self.directory, errno: EACCES)
        }
    }

    static func segmentName(_ offset: Int64) -> String {
        let digits = String(offset)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".ndjson"
    }

    /// Finds the newest segment, drops a torn last line left by a crash, and continues after it.
    private func recover() throws(FileSinkError) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: self.directory)) ?? []
        let bases = names.compactMap { name -> Int64? in
            guard name.hasSuffix(".ndjson"), name.count == 27 else { return nil }
            return Int64(name.prefix(20))
        }
        guard let base = bases.max() else {
            try self.open(base: 0)
            return
        }
        let path = self.directory + "/" + Self.segmentName(base)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FileSinkError(operation: "read", path: path, errno: EIO)
        }
        var lines: Int64 = 0
        var lastNewline = -1
        for (index, byte) in data.enumerated() where byte == UInt8(ascii: "\n") {
            lines += 1
            lastNewline = index
        }
        let validLength = lastNewline + 1
        if validLength < data.count, truncate(path, off_t(validLength)) != 0 {
            throw FileSinkError(operation: "truncate", path: path, errno: errno)
        }
        self.nextOffset = base + lines
        try self.open(base: base)
        self.segmentSize = validLength
    }

    private func open(base: Int64) throws(FileSinkError) {
        if self.fd >= 0 {
            close(self.fd)
            self.fd = -1
        }
        let path = self.directory + "/" + Self.segmentName(base)
        let fd = Foundation.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileSinkError(operation: "open", path: path, errno: errno) }
        self.fd = fd
        self.segmentSize = 0
        // Make the new file's directory entry durable too.
        let dirfd = Foundation.open(self.directory, O_RDONLY | O_CLOEXEC)
        if dirfd >= 0 {
            _ = fsync(dirfd)
            close(dirfd)
        }
    }

    /// Writes `count` records held in `bytes` (one line each). Returns the first record's offset.
    func append(_ bytes: [UInt8], count: Int, fsyncPolicy: FileSinkConfig.FsyncPolicy) throws(FileSinkError) -> Int64 {
        guard self.lockFD >= 0 else { throw FileSinkError(operation: "write (sink closed)", path: self.currentPath, errno: EBADF) }
        if self.segmentSize > 0, self.segmentSize + bytes.count > self.segmentBytes {
            try self.sync()
            try self.open(base: self.nextOffset)
        }
        let failure: Int32? = bytes.withUnsafeBytes { raw in
            var written = 0
            while written < raw.count {
                let n = write(self.fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    let code = errno
                    // Drop a partial write so the segment never holds a torn line.
                    if written > 0 { _ = ftruncate(self.fd, off_t(self.segmentSize)) }
                    return code
                }
                written += n
            }
            return nil
        }
        if let failure {
            throw FileSinkError(operation: "write", path: self.currentPath, errno: failure)
        }
        self.segmentSize += bytes.count
        self.dirty = true
        let first = self.nextOffset
        self.nextOffset += Int64(count)
        switch fsyncPolicy {
        case .always:
            try self.sync()
        case .interval(let interval):
            if ContinuousClock.now - self.lastSync >= interval { try self.sync() }
        case .never:
            break
        }
        return first
    }

    /// Closes the segment and releases the directory lock at once, rather than whenever the
    /// last reference goes (a new writer for the directory may follow right away). Appends
    /// after this fail.
    func closeFiles() {
        if self.fd >= 0 { closeDescriptor(self.fd) }
        if self.lockFD >= 0 { closeDescriptor(self.lockFD) }
        self.fd = -1
        self.lockFD = -1
    }

    func sync() throws(FileSinkError) {
        guard self.dirty, self.fd >= 0 else { return }
        if fsync(self.fd) != 0 {
            throw FileSinkError(operation: "fsync", path: self.currentPath, errno: errno)
        }
        self.dirty = false
        self.lastSync = .now
    }

    private var currentPath: String {
        self.directory + "/" + Self.segmentName(self.nextOffset)
    }
}

/// close(2), reachable from SegmentWriter, whose own `closeFiles` would shadow a bare `close`.
private func closeDescriptor(_ fd: Int32) {
    close(fd)
}
