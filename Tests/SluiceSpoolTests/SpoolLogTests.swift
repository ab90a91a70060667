import Foundation
import NIOCore
import SluiceCore
@testable import SluiceSpool
import Testing

/// The spool's write-ahead log on real files: records round-trip whole, a torn or corrupted
/// tail is cut and never read back, the checkpoint survives reopening, acknowledged segments go,
/// and one process owns a directory.
@Suite struct SpoolLogTests {
    static func withDirectory<T>(_ body: (String) throws -> T) throws -> T {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-spool-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        return try body(directory)
    }

    static func event(_ value: String) -> Event {
        Event(value: ByteBuffer(string: value))
    }

    static func values(_ entries: [SpoolEntry]) -> [String] {
        entries.map { String(buffer: $0.event.value) }
    }

    @Test func crc32cMatchesTheCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    @Test func aRecordRoundTripsEveryPartOfTheEvent() throws {
        let event = Event(
            value: ByteBuffer(string: #"{"a":1}"#), key: ByteBuffer(bytes: [0, 0xFF]), headers: [EventHeader(name: "traceparent", value: "00-ab"), EventHeader(name: "é", value: "")],
            valueIsJSON: true, timestampMilliseconds: -5, partition: 3)
        var frame: [UInt8] = []
        let size = SpoolRecord.append(SpoolEntry(sequence: 1 << 40, topic: "orders", event: event), to: &frame)
        #expect(size == frame.count)
        let read = frame.withUnsafeBytes { SpoolRecord.read($0, maxPayloadBytes: 1 << 20) }
        #expect(read?.size == frame.count)
        let back = try #require(read?.entry)
        #expect(back.sequence == 1 << 40 && back.topic == "orders")
        #expect(String(buffer: back.event.value) == #"{"a":1}"# && back.event.key.map { Array($0.readableBytesView) } == [0, 0xFF])
        #expect(back.event.headers == event.headers && back.event.valueIsJSON && back.event.timestampMilliseconds == -5 && back.event.partition == 3)
        #expect(!back.event.valueIsNull)

        var tombstone: [UInt8] = []
        SpoolRecord.append(SpoolEntry(sequence: 0, topic: "t", event: Event(value: ByteBuffer(), valueIsNull: true)), to: &tombstone)
        let none = tombstone.withUnsafeBytes { SpoolRecord.read($0, maxPayloadBytes: 1 << 20) }?.entry.event
        #expect(none?.valueIsNull == true && none?.key == nil && none?.partition == nil && none?.timestampMilliseconds == nil)

        // Any flipped byte, and any cut, is not a record.
        for position in frame.indices {
            var damaged = frame
            damaged[position] ^= 0x40
            #expect(damaged.withUnsafeBytes { SpoolRecord.read($0, maxPayloadBytes: 1 << 20) } == nil, "byte \(position)")
        }
        for length in 0..<frame.count {
            #expect(frame.prefix(length).withUnsafeBytes { SpoolRecord.read($0, maxPayloadBytes: 1 << 20) } == nil, "\(length) bytes")
        }
        #expect(frame.withUnsafeBytes { SpoolRecord.read($0, maxPayloadBytes: 8) } == nil, "past maxPayloadBytes")
    }

    @Test func recordsAreReadBackInOrderAfterReopening() throws {
        try Self.withDirectory { directory in
            do {
                let log = try SpoolLog(directory: directory, segmentBytes: 1 << 20, maxRecordBytes: 1 << 16)
                #expect(try log.append([("a", Self.event("1")), ("b", Self.event("2"))]) == 0..<2)
                #expect(try log.append([("a", Self.event("3"))]) == 2..<3)
                try log.sync()
                #expect(Self.values(try log.readNext(maxBytes: 1 << 20)) == ["1", "2", "3"])
                #expect(try log.readNext(maxBytes: 1 << 20).isEmpty)
            }
            let reopened = try SpoolLog(directory: directory, segmentBytes: 1 << 20, maxRecordBytes: 1 << 16)
            #expect(reopened.recovery.pendingRecords == 3 && reopened.recovery.bytesCut == 0 && reopened.recovery.damagedSegments.isEmpty)
            #expect(reopened.recovery.possiblyDuplicated == 0, "nothing was handed to a sink")
            #expect(reopened.recovery.oldestSegmentWrittenAt != nil)
            #expect(reopened.nextSequence == 3)
            let entries = try reopened.readNext(maxBytes: 1 << 20)
            #expect(entries.map(\.sequence) == [0, 1, 2] && entries.map(\.topic) == ["a", "b", "a"])
            #expect(try reopened.append([("c", Self.event("4"))]) == 3..<4)
            #expect(Self.values(try reopened.readNext(maxBytes: 1 << 20)) == ["4"])
        }
    }

    @Test func aTornTailIsCutAndNeverReadBack() throws {
        try Self.withDirectory { directory in
            let segment = directory + "/" + SpoolLog.segmentName(0)
            var whole = 0
            do {
                let log = try SpoolLog(directory: directory, segmentBytes: 1 << 20, maxRecordBytes: 1 << 16)
                try log.append([("a", Self.event("one")), ("a", Self.event("two"))])
                try log.sync()
                whole = log.bytesOnDisk
            }
            // A crash mid-write: half of a third record.
            var third: [UInt8] = []
            SpoolRecord.append(SpoolEntry(sequence: 2, topic: "a", event: Self.event("three")), to: &third)
            let handle = try #require(FileHandle(forWritingAtPath: segment))
            handle.seekToEndOfFile()
            handle.write(Data(third.prefix(third.count / 2)))
            handle.closeFile()

            let log = try SpoolLog(directory: directory, segmentBytes: 1 << 20, maxRecordBytes: 1 << 16)
            #expect(log.recovery.bytesCut == third.count / 2 && log.recovery.pendingRecords == 2)
            #expect(log.nextSequence == 2 && log.bytesOnDisk == whole)
            #expect((try FileManager.default.attributesOfItem(atPath: segment)[.size] as? Int) == whole, "cut on disk too")
            try log.append([("a", Self.event("three again"))])
            #expect(Self.values(try log.readNext(maxBytes: 1 << 20)) == ["one", "two", "three again"])
        }
    }

    @Test func aCorruptedRecordIsCutWithEverythingAfterItInItsSegment() throws {
        try Self.withDirectory { directory in
            let segment = directory + "/" + SpoolLog.segmentName(0)
            do {
                let log = try SpoolLog(directory: directory, segmentBytes: 1 << 20, maxRecordBytes: 1 << 16)
                try log.append([("a", Self.event("one")), ("a", Self.event("two")), ("a", Self.event("three"))])
                try log.sync()
            }
            var bytes = try #require(FileManager.default.contents(atPath: segment))
            var first: [UInt8] = []
            SpoolRecord.append(SpoolEntry(sequence: 0, topic: "a", event: Self.event("one")), to: &first)
            bytes[first.count + 12] ^= 0x01  // inside the second record's payload
            try bytes.write(to: URL(fileURLWithPath: segment))
            let log = try SpoolLog(directory: directory, segmentBytes: 1 << 20, maxRecordBytes: 1 << 16)
            #expect(log.recovery.pendingRecords == 1 && log.nextSequence == 1)
            #expect(Self.values(try log.readNext(maxBytes: 1 << 20)) == ["one"])
        }
    }

    @Test func acknowledgedSegmentsAreDeletedAndTheCheckpointSurvivesReopening() throws {
        try Self.withDirectory { directory in
            do {
                let log = try SpoolLog(directory: directory, segmentBytes: 100, maxRecordBytes: 1 << 16)
                for index in 0..<10 { try log.append([("t", Self.event(String(repeating: "x", count: 30) + String(index)))]) }
                try log.sync()
                let segments = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".spool") }
                #expect(segments.count >= 4, "\(segments)")
                #expect(log.pendingRecords == 10)
                _ = try log.readNext(maxBytes: 1 << 20)
                try log.acknowledge(below: 7)
                #expect(log.acknowledged == 7 && log.pendingRecords == 3)
                let left = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".spool") }.sorted()
                #expect(left.count < segments.count && left.first.flatMap { UInt64($0.prefix(20)) }.map { $0 <= 7 } == true, "\(left)")
            }
            let log = try SpoolLog(directory: directory, segmentBytes: 100, maxRecordBytes: 1 << 16)
            #expect(log.acknowledged == 7 && log.recovery.pendingRecords == 3 && log.nextSequence == 10)
            #expect(try log.readNext(maxBytes: 1 << 20).map(\.sequence) == [7, 8, 9])
        }
    }

    @Test func aDamagedCheckpointForwardsEverythingAgain() throws {
        try Self.withDirectory { directory in
            do {
                let log = try SpoolLog(directory: directory, segmentBytes: 1 << 20, maxRecordBytes: 1 << 16)
                try log.append([("t", Self.event("1")), ("t", Self.event("2"))])
                try log.sync()
                try log.acknowledge(below: 1)
            }
            var checkpoint = try #require(FileManager.default.contents(atPath: directory + "/acknowledged"))
            checkpoint[0] ^= 0xFF
            try checkpoint.write(to: URL(fileURLWithPath: directory + "/acknowledged"))
            let log = try SpoolLog(directory: directory, segmentBytes: 1 << 20, maxRecordBytes: 1 << 16)
            #expect(log.acknowledged == 0, "at-least-once: a checkpoint that does not read is none")
            #expect(Self.values(try log.readNext(maxBytes: 1 << 20)) == ["1", "2"])
        }
    }

    @Test func oneProcessOwnsASpoolDirectory() throws {
        try Self.withDirectory { directory in
            let owner = try SpoolLog(directory: directory, segmentBytes: 1 << 20, maxRecordBytes: 1 << 16)
            // flock is per open file description: a second open in this process conflicts too.
            #expect(throws: SpoolError.self) { try SpoolLog(directory: directory, segmentBytes: 1 << 20, maxRecordBytes: 1 << 16) }
            _ = owner
        }
    }

    @Test func readsAreBoundedByMaxBytesAndContinueWhereTheyStopped() throws {
        try Self.withDirectory { directory in
            let log = try SpoolLog(directory: directory, segmentBytes: 1 << 20, maxRecordBytes: 1 << 16)
            try log.append((0..<20).map { ("t", Self.event(String(repeating: "v", count: 100) + String($0))) })
            var seen: [UInt64] = []
            while true {
                let batch = try log.readNext(maxBytes: 500)
                if batch.isEmpty { break }
                #expect(batch.count <= 5, "\(batch.count) records of ~120 bytes in 500")
                seen += batch.map(\.sequence)
            }
            #expect(seen == Array(0..<20))
        }
    }
}
