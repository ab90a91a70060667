import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceCore
@testable import SluiceHTTP
import SluiceIngest
import SluiceSpool
import Testing

/// `ack: spooled`: a request is answered 202 once its events are in the spool and fsynced (none
/// reach the sink on the request's path); a full spool or a failed write is a 503 to retry; the
/// forwarder drains the spool into the sink with the sink's contract — retryable failures sent
/// again, refusals dead-lettered or counted — and acknowledges only what is settled.
@Suite struct SpooledIngestTests {
    static func withDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-spooled-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        return try await body(directory)
    }

    static func config(_ directory: String, maxBytes: Int = 1 << 20, deadLetter: Bool = false) -> IngestConfig {
        IngestHandlerTests.config {
            $0.ack = .spooled
            $0.spool = SpoolConfig(directory: directory, maxBytes: maxBytes, segmentBytes: 64 << 10)
            $0.maxWait = .milliseconds(200)
            if deadLetter { $0.deadLetter = DeadLetterConfig(sink: "letters", topic: "orders.dlq", envelope: false) }
        }
    }

    /// Opens the spool at `directory` again once the earlier one is gone: its serial queue can
    /// hold it for a moment after the last call on it returned (the block that answered that
    /// call is still unwinding), and with it the directory's lock.
    static func reopen(_ directory: String, maxRecordBytes: Int) async throws -> Spool {
        let deadline = ContinuousClock.now + .seconds(5)
        while true {
            do throws(SpoolError) {
                return try Spool(directory: directory, maxBytes: 1 << 20, segmentBytes: 64 << 10, maxRecordBytes: maxRecordBytes)
            } catch {
                guard error.errno == EWOULDBLOCK, ContinuousClock.now < deadline else { throw error }
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    static func pipeline(_ config: IngestConfig, sink: ScriptedSink, spool: Spool, deadLetters: ScriptedSink? = nil) -> IngestPipeline {
        IngestPipeline(routeName: "r", config: config, sink: sink, deadLetterSink: deadLetters, spool: spool, logger: Logger(label: "t"))
    }

    @Test func aRequestIsAnswered202OnceSpooledAndNothingReachesTheSinkOnItsPath() async throws {
        try await Self.withDirectory { directory in
            let spool = try Spool(directory: directory, maxBytes: 1 << 20, segmentBytes: 64 << 10, maxRecordBytes: 1 << 20)
            let sink = ScriptedSink()
            let handler = IngestHandler(pipeline: Self.pipeline(Self.config(directory), sink: sink, spool: spool))
            let (status, text, _) = await IngestHandlerTests.post(
                handler, headers: [("X-Tenant", "acme"), ("X-Event-Key", "k")], chunks: [#"{"a":1}"# + "\n" + #"{"b":2}"# + "\n"])
            #expect(status == .accepted, "\(text)")
            #expect(text == #"{"accepted":2}"#)
            #expect(sink.received.isEmpty, "the forwarder sends, not the request")
            let spooled = try await spool.next(maxBytes: 1 << 20)
            #expect(spooled.map { String(buffer: $0.event.value) } == [#"{"a":1}"#, #"{"b":2}"#])
            #expect(spooled.allSatisfy { $0.topic == "orders" && $0.event.key.map { String(buffer: $0) } == "k" })
            #expect(spooled.first?.event.headers == [EventHeader(name: "X-Tenant", value: "acme")], "as the sink would have had them")
        }
    }

    @Test func aFullSpoolIs503AfterMaxWaitAndAFailedWriteIs503Too() async throws {
        try await Self.withDirectory { directory in
            // Room for about one request of ~600 bytes.
            let spool = try Spool(directory: directory, maxBytes: 700, segmentBytes: 64 << 10, maxRecordBytes: 1 << 20)
            let handler = IngestHandler(pipeline: Self.pipeline(Self.config(directory), sink: ScriptedSink(), spool: spool))
            let body = [String](repeating: #"{"pad":""# + String(repeating: "x", count: 250) + #""}"#, count: 2).joined(separator: "\n")
            let (first, _, _) = await IngestHandlerTests.post(handler, chunks: [body])
            #expect(first == .accepted)
            let (full, text, headers) = await IngestHandlerTests.post(handler, chunks: [body])
            #expect(full == .serviceUnavailable, "\(text)")
            #expect(text.contains(#""code":"spool_full""#) && text.contains(#""accepted":0"#), "\(text)")
            #expect(headers.first(name: "retry-after") != nil)
        }
        try await Self.withDirectory { directory in
            // Tiny segments: the second request opens segment 1, which is /dev/full (every write ENOSPC).
            let spool = try Spool(directory: directory, maxBytes: 1 << 20, segmentBytes: 64, maxRecordBytes: 1 << 20)
            let handler = IngestHandler(pipeline: Self.pipeline(Self.config(directory), sink: ScriptedSink(), spool: spool))
            let (first, _, _) = await IngestHandlerTests.post(handler, chunks: [#"{"a":1}"#])
            #expect(first == .accepted)
            try FileManager.default.createSymbolicLink(atPath: directory + "/00000000000000000001.spool", withDestinationPath: "/dev/full")
            let (status, text, headers) = await IngestHandlerTests.post(handler, chunks: [#"{"a":2}"#])
            #expect(status == .serviceUnavailable, "\(text)")
            #expect(text.contains(#""code":"spool_write_failed","message":"the spool's disk is full""#), "\(text)")
            #expect(headers.first(name: "retry-after") != nil)
        }
    }

    @Test func theForwarderSendsAgainWhatFailsRetryablyAndAcknowledgesOnlyWhatIsSettled() async throws {
        try await Self.withDirectory { directory in
            let spool = try Spool(directory: directory, maxBytes: 1 << 20, segmentBytes: 64 << 10, maxRecordBytes: 1 << 20)
            // The second event fails retryably on its first two sends; the fourth is refused for good.
            let sink = ScriptedSink { n in
                switch n {
                case 1, 4: .failed(DeliveryFailure(code: "kafka_msg_timed_out", message: "timed out", isRetryable: true))
                case 3: .failed(DeliveryFailure(code: "kafka_msg_size_too_large", message: "too large", isRetryable: false, httpStatus: 413))
                default: .delivered(DeliveryReceipt(partition: 0, offset: Int64(n)))
                }
            }
            let letters = ScriptedSink()
            let config = Self.config(directory, deadLetter: true)
            let forwarder = SpoolForwarder(
                spool: spool, pipeline: Self.pipeline(config, sink: sink, spool: spool, deadLetters: letters), drainTimeout: .seconds(5),
                logger: Logger(label: "t"))
            let running = Task { try await forwarder.run() }
            _ = try await spool.append(["one", "two", "three", "four"].map { ("orders", Event(value: ByteBuffer(string: $0))) }, deadline: .now + .seconds(5)).get()
            while spool.pendingRecords > 0 { try await Task.sleep(for: .milliseconds(10)) }
            spool.close()
            try await running.value
            let delivered = sink.received.map { String(buffer: $0.event.value) }
            #expect(delivered == ["one", "two", "three", "four", "two", "two"], "\(delivered)")
            #expect(letters.received.map { String(buffer: $0.event.value) } == ["four"])
            #expect(letters.received.first?.event.headers.contains(EventHeader(name: "sluice-error-code", value: "kafka_msg_size_too_large")) == true)
            #expect(forwarder.totalsSoFar == SpoolForwarder.Totals(forwarded: 3, retried: 2, deadLettered: 1, dropped: 0, replayed: 0))
        }
    }

    @Test func whatTheForwarderHadNotSettledIsForwardedAgainAfterARestart() async throws {
        try await Self.withDirectory { directory in
            do {
                let spool = try Spool(directory: directory, maxBytes: 1 << 20, segmentBytes: 64 << 10, maxRecordBytes: 1 << 20)
                // A sink that never settles: the forwarder is stopped before anything is acknowledged.
                let stuck = ScriptedSink { _ in .failed(DeliveryFailure(code: "kafka_all_brokers_down", message: "down", isRetryable: true)) }
                let forwarder = SpoolForwarder(
                    spool: spool, pipeline: Self.pipeline(Self.config(directory), sink: stuck, spool: spool), drainTimeout: .zero, logger: Logger(label: "t"))
                let running = Task { try await forwarder.run() }
                _ = try await spool.append(["a", "b"].map { ("orders", Event(value: ByteBuffer(string: $0))) }, deadline: .now + .seconds(5)).get()
                while stuck.received.count < 2 { try await Task.sleep(for: .milliseconds(10)) }
                running.cancel()
                try await running.value
                #expect(spool.pendingRecords == 2)
            }
            let spool = try await Self.reopen(directory, maxRecordBytes: 1 << 20)
            let sink = ScriptedSink()
            let forwarder = SpoolForwarder(
                spool: spool, pipeline: Self.pipeline(Self.config(directory), sink: sink, spool: spool), drainTimeout: .seconds(5), logger: Logger(label: "t"))
            let running = Task { try await forwarder.run() }
            while spool.pendingRecords > 0 { try await Task.sleep(for: .milliseconds(10)) }
            spool.close()
            try await running.value
            #expect(sink.received.map { String(buffer: $0.event.value) } == ["a", "b"])
            #expect(forwarder.totalsSoFar.replayed == 2)
        }
    }
}
