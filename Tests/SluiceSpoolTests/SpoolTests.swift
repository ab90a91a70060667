import Foundation
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import SluiceCore
@testable import SluiceSpool
import Testing

/// The spool's concurrency: appends that arrive together share one fsync, an append past
/// max_bytes waits for acknowledgements or fails at its deadline, and the forwarder is handed
/// what was appended, in order, and told when the spool closes.
@Suite struct SpoolTests {
    static func withSpool<T>(maxBytes: Int = 1 << 20, segmentBytes: Int = 1 << 16, _ body: (Spool, String) async throws -> T) async throws -> T {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-spool-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let spool = try Spool(directory: directory, maxBytes: maxBytes, segmentBytes: segmentBytes, maxRecordBytes: 1 << 16)
        return try await body(spool, directory)
    }

    static func entries(_ values: [String]) -> [(topic: String, event: Event)] {
        values.map { ("t", Event(value: ByteBuffer(string: $0))) }
    }

    static var later: ContinuousClock.Instant { .now + .seconds(30) }

    /// Opens the spool at `directory` again once the earlier one is gone: its serial queue can
    /// hold it for a moment after the last call on it returned (the block that answered that
    /// call is still unwinding), and with it the directory's lock.
    static func reopen(_ directory: String, maxRecordBytes: Int) async throws -> Spool {
        let deadline = ContinuousClock.now + .seconds(5)
        while true {
            do throws(SpoolError) {
                return try Spool(directory: directory, maxBytes: 1 << 20, segmentBytes: 1 << 16, maxRecordBytes: maxRecordBytes)
            } catch {
                guard error.errno == EWOULDBLOCK, ContinuousClock.now < deadline else { throw error }
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    @Test func appendsWaitingTogetherShareOneFsync() async throws {
        try await Self.withSpool { spool, _ in
            // Hold the writer's queue so ten appends pile up, then let it go.
            let gate = DispatchSemaphore(value: 0)
            spool.queue.async { gate.wait() }
            let results = try await withThrowingTaskGroup(of: Range<UInt64>.self) { group in
                for index in 0..<10 {
                    group.addTask { try await spool.append(Self.entries(["\(index)a", "\(index)b"]), deadline: Self.later).get() }
                }
                while spool.appendsPending < 10 { try await Task.sleep(for: .milliseconds(5)) }
                gate.signal()
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(results.map(\.count) == Array(repeating: 2, count: 10))
            #expect(Set(results.flatMap { Array($0) }) == Set(0..<20), "every event its own sequence number")
            #expect(spool.syncs == 1, "one fsync for the ten appends")
        }
    }

    @Test func theForwarderIsHandedWhatWasAppendedInOrderAndToldWhenTheSpoolCloses() async throws {
        try await Self.withSpool { spool, _ in
            let reader = Task { () -> [String] in
                var seen: [String] = []
                while true {
                    let batch = try await spool.next(maxBytes: 1 << 20)
                    if batch.isEmpty { return seen }
                    seen += batch.map { String(buffer: $0.event.value) }
                    try await spool.acknowledge(below: batch.last!.sequence + 1)
                }
            }
            _ = try await spool.append(Self.entries(["1", "2"]), deadline: Self.later).get()
            try await Task.sleep(for: .milliseconds(50))
            _ = try await spool.append(Self.entries(["3"]), deadline: Self.later).get()
            while spool.pendingRecords > 0 { try await Task.sleep(for: .milliseconds(5)) }
            spool.close()
            #expect(try await reader.value == ["1", "2", "3"])
            #expect(await spool.append(Self.entries(["4"]), deadline: Self.later) == .failure(.closed))
        }
    }

    @Test func aFullSpoolHoldsAppendsUntilAcknowledgementsMakeRoomOrTheirDeadline() async throws {
        // Segments of ~2 records, at most ~4 records on disk.
        let value = String(repeating: "x", count: 200)
        try await Self.withSpool(maxBytes: 1000, segmentBytes: 500) { spool, _ in
            for _ in 0..<4 { _ = try await spool.append(Self.entries([value]), deadline: Self.later).get() }
            #expect(await spool.append(Self.entries([value]), deadline: .now + .milliseconds(100)) == .failure(.full))

            let waiting = Task { await spool.append(Self.entries([value]), deadline: Self.later) }
            try await Task.sleep(for: .milliseconds(50))
            let read = try await spool.next(maxBytes: 1 << 20)
            #expect(read.count == 4)
            try await spool.acknowledge(below: 4)
            let admitted = await waiting.value
            #expect((try? admitted.get()) == 4..<5, "\(admitted)")
            #expect(spool.bytesOnDisk <= 1000)
        }
    }

    @Test func whatWasNotAcknowledgedIsForwardedAgainAfterReopening() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-spool-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let spool = try Spool(directory: directory, maxBytes: 1 << 20, segmentBytes: 1 << 16, maxRecordBytes: 1 << 16)
            _ = try await spool.append(Self.entries(["1", "2", "3"]), deadline: Self.later).get()
            _ = try await spool.next(maxBytes: 1 << 20)
            try await spool.acknowledge(below: 1)
            spool.close()
        }
        let spool = try await Self.reopen(directory, maxRecordBytes: 1 << 16)
        #expect(spool.recovery.pendingRecords == 2)
        #expect(try await spool.next(maxBytes: 1 << 20).map { String(buffer: $0.event.value) } == ["2", "3"])
    }
}
