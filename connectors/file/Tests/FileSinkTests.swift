import FileSink
import Foundation
import Logging
import NIOCore
import SluiceCore
import Testing

@Suite struct FileSinkTests {
    static func temporaryDirectory() -> String {
        let path = NSTemporaryDirectory() + "sluice-filesink-\(UUID().uuidString)"
        return path
    }

    static func budget() -> InFlightBudget { InFlightBudget(maxBytes: 1 << 20, maxEvents: 1000) }

    static func context(_ name: String) -> SinkContext {
        SinkContext(name: name, budget: Self.budget(), flushTimeout: .seconds(5), logger: Logger(label: "t"), environment: [:])
    }

    static func write(_ sink: FileSink, _ events: [Event], topic: String = "t") async -> [DeliveryResult] {
        let tracker = DeliveryTracker()
        let first = tracker.reserve(events.count)
        _ = await sink.enqueue(events, topic: topic, tracker: tracker, firstIndex: first, deadline: .now + .seconds(5))
        tracker.seal()
        return Array(await tracker.results())
    }

    static func lines(in directory: String) throws -> [String] {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".ndjson") }.sorted()
        return try names.flatMap { name in
            try String(contentsOfFile: directory + "/" + name, encoding: .utf8).split(separator: "\n").map(String.init)
        }
    }

    @Test func writesOneLinePerEventAndReportsOffsets() async throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let sink = try FileSink(config: FileSinkConfig(directory: directory), context: Self.context("f"))
        let results = await Self.write(sink, [
            Event(value: ByteBuffer(string: "{\"a\":\n 1}"), key: ByteBuffer(string: "k\"1"), headers: [EventHeader(name: "h", value: "v")], valueIsJSON: true),
            Event(value: ByteBuffer(bytes: [0, 1, 2, 255])),
        ])
        #expect(results == [.delivered(DeliveryReceipt(partition: 0, offset: 0)), .delivered(DeliveryReceipt(partition: 0, offset: 1))])
        let lines = try Self.lines(in: directory)
        #expect(lines.count == 2)
        #expect(lines[0].contains(#""topic":"t","key":"k\"1","headers":{"h":"v"},"value":{"a":  1}}"#))
        #expect(lines[1].hasSuffix(#""key":null,"headers":{},"value_base64":"AAEC/w=="}"#))
        for line in lines {
            #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil, "each line is one JSON document: \(line)")
        }
        await sink.shutdown()
    }

    @Test func continuesOffsetsAfterARestartAndDropsATornLastLine() async throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let sink = try FileSink(config: FileSinkConfig(directory: directory), context: Self.context("f"))
            _ = await Self.write(sink, (0..<3).map { Event(value: ByteBuffer(string: "\($0)"), valueIsJSON: true) })
            await sink.shutdown()
        }
        // Simulate a crash in the middle of a write.
        let segment = directory + "/00000000000000000000.ndjson"
        let handle = try #require(FileHandle(forWritingAtPath: segment))
        handle.seekToEndOfFile()
        handle.write(Data(#"{"ts":1,"topic":"#.utf8))
        handle.closeFile()

        let sink = try FileSink(config: FileSinkConfig(directory: directory), context: Self.context("f"))
        let results = await Self.write(sink, [Event(value: ByteBuffer(string: "3"), valueIsJSON: true)])
        #expect(results == [.delivered(DeliveryReceipt(partition: 0, offset: 3))])
        #expect(try Self.lines(in: directory).count == 4)
        await sink.shutdown()
    }

    @Test func aSecondWriterOnTheSameDirectoryIsRefused() async throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try FileSink(config: FileSinkConfig(directory: directory), context: Self.context("a"))
        do {
            _ = try FileSink(config: FileSinkConfig(directory: directory), context: Self.context("b"))
            Issue.record("two sinks must not append to the same segments")
        } catch let error as FileSinkError {
            #expect(error.description.contains("another Sluice"))
        }
        await first.shutdown()
    }

    @Test func rotatesSegmentsBySizeAndNamesThemByFirstOffset() async throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let sink = try FileSink(config: FileSinkConfig(directory: directory, segmentBytes: 4096, fsync: .never), context: Self.context("f"))
        let payload = String(repeating: "x", count: 1000)
        for _ in 0..<10 {
            _ = await Self.write(sink, [Event(value: ByteBuffer(string: payload))])
        }
        await sink.shutdown()
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".ndjson") }.sorted()
        #expect(names.count > 1)
        #expect(names.first == "00000000000000000000.ndjson")
        for name in names {
            let size = try FileManager.default.attributesOfItem(atPath: directory + "/" + name)[.size] as! Int
            #expect(size <= 4096)
        }
        #expect(try Self.lines(in: directory).count == 10)
    }
}
