#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CoreMetrics
import Foundation
import NIOConcurrencyHelpers
import SluiceCore

/// The JSON access log: one line per HTTP request and gRPC call, written by a thread of its own
/// so a slow disk never holds up a request. Lines wait in a queue of at most `maxQueuedLines`;
/// past it a line is dropped and counted (`sluice_access_log_dropped_lines_total`), never waited
/// for. Says who the client is as the policies established it — never a credential, a query
/// string or a header value.
public final class AccessLog: ExchangeObserver, @unchecked Sendable {
    // @unchecked: `fd` is set once in init; the queue is behind `state`.
    public static let droppedLines = MetricDescriptor(
        "sluice_access_log_dropped_lines_total", .counter,
        help: "Access log lines dropped because the queue to the writer was full (the disk or stdout could not keep up).")
    public static let writeErrors = MetricDescriptor(
        "sluice_access_log_write_errors_total", .counter, help: "Access log writes that failed (the lines they held are lost).")

    private let fd: Int32
    private let ownsDescriptor: Bool
    private let maxQueuedLines: Int
    private let dropped: Counter
    private let failedWrites: Counter
    /// Queued lines, and whether the writer should stop once they are written.
    private let state = ConditionLock(value: 0)
    private var queue: [[UInt8]] = []
    private var stopping = false
    private let done = ConditionLock(value: 0)

    public enum Destination: Sendable, Equatable {
        case stdout
        case file(String)
    }

    public struct OpenError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Opens (creating, appending) the destination and starts the writer thread.
    public init(destination: Destination, maxQueuedLines: Int, metrics: any MetricsFactory) throws(OpenError) {
        switch destination {
        case .stdout:
            self.fd = STDOUT_FILENO
            self.ownsDescriptor = false
        case .file(let path):
            let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
            guard fd >= 0 else {
                throw OpenError(description: "cannot open \(path): \(String(cString: strerror(errno)))")
            }
            self.fd = fd
            self.ownsDescriptor = true
        }
        self.maxQueuedLines = maxQueuedLines
        self.dropped = Self.droppedLines.counter(factory: metrics)
        self.failedWrites = Self.writeErrors.counter(factory: metrics)
        let thread = Thread { [self] in self.writeLoop() }
        thread.name = "sluice-access-log"
        thread.start()
    }

    public func observe(_ record: ExchangeRecord) {
        let line = Self.line(record)
        self.state.lock()
        guard !self.stopping, self.queue.count < self.maxQueuedLines else {
            self.state.unlock()
            self.dropped.increment()
            return
        }
        self.queue.append(line)
        self.state.unlock(withValue: 1)
    }

    /// Writes what is queued (waiting at most `timeout` seconds for a stuck disk), stops the
    /// writer and closes the file. Later lines are dropped. Blocking.
    public func close(timeout: Double = 5) {
        self.state.lock()
        self.stopping = true
        self.state.unlock(withValue: 1)
        if self.done.lock(whenValue: 1, timeoutSeconds: timeout) {
            self.done.unlock()
            if self.ownsDescriptor { _ = Glibc.close(self.fd) }
        }
    }

    private func writeLoop() {
        var batch: [UInt8] = []
        while true {
            self.state.lock(whenValue: 1)
            let lines = self.queue
            self.queue.removeAll(keepingCapacity: true)
            let stop = self.stopping
            self.state.unlock(withValue: 0)
            batch.removeAll(keepingCapacity: true)
            for line in lines { batch.append(contentsOf: line) }
            if !batch.isEmpty, !self.writeAll(batch) { self.failedWrites.increment() }
            if stop {
                // Lines queued after the flag was seen were refused by `observe`.
                self.done.lock()
                self.done.unlock(withValue: 1)
                return
            }
        }
    }

    private func writeAll(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(self.fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += written
            }
            return true
        }
    }

    // MARK: The line

    /// One record as a JSON object on one line.
    static func line(_ record: ExchangeRecord) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(320)
        var first = true
        func key(_ name: StaticString) {
            out.append(first ? UInt8(ascii: "{") : UInt8(ascii: ","))
            first = false
            out.append(UInt8(ascii: "\""))
            name.withUTF8Buffer { out.append(contentsOf: $0) }
            out.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
        }
        func string(_ name: StaticString, _ value: String?) {
            guard let value else { return }
            key(name)
            JSONString.append(value.utf8, to: &out)
        }
        func number(_ name: StaticString, _ value: Int) {
            key(name)
            out.append(contentsOf: String(value).utf8)
        }
        string("time", Self.timestamp(record.startedAt))
        string("protocol", record.protocolName)
        string("listener", record.listener)
        string("route", record.facts.route)
        string("method", record.method)
        string("path", record.path)
        number("status", record.status)
        string("grpc_status", record.statusName)
        number("events", record.facts.events)
        let tallies: [(StaticString, [String: Int])] = [
            ("events_rejected", record.facts.rejected), ("events_dead_lettered", record.facts.deadLettered), ("events_mirrored", record.facts.mirrored),
        ]
        for (name, counts) in tallies where !counts.isEmpty {
            key(name)
            out.append(UInt8(ascii: "{"))
            for (index, (reason, count)) in counts.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                JSONString.append(reason.utf8, to: &out)
                out.append(UInt8(ascii: ":"))
                out.append(contentsOf: String(count).utf8)
            }
            out.append(UInt8(ascii: "}"))
        }
        number("bytes_in", record.bytesIn)
        number("bytes_out", record.bytesOut)
        key("duration_ms")
        let (seconds, attoseconds) = record.duration.components
        let micros = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
        out.append(contentsOf: "\(micros / 1000).\(String(micros % 1000).leftPadded(to: 3))".utf8)
        string("sink", record.facts.sink)
        string("upstream", record.facts.upstream)
        string("client", record.client)
        string("identity", record.facts.identity)
        string("denied_by", record.facts.denial?.policy)
        string("denial", record.facts.denial?.reason)
        string("trace_id", record.traceID)
        out.append(contentsOf: [UInt8(ascii: "}"), UInt8(ascii: "\n")])
        return out
    }

    /// RFC 3339 in UTC with milliseconds: `2026-12-02T18:55:36.123Z`.
    static func timestamp(_ seconds: Double) -> String {
        let whole = seconds.rounded(.down)
        return RFC3339.string(milliseconds: Int64(whole) * 1000 + Int64((seconds - whole) * 1000))
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        self.count >= width ? self : String(repeating: "0", count: width - self.count) + self
    }
}
