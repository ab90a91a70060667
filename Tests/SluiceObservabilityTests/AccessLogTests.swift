import Foundation
import SluiceCore
import Testing

@testable import SluiceObservability

@Suite(.timeLimit(.minutes(6))) struct AccessLogTests {
    static func record(_ index: Int) -> ExchangeRecord {
        var facts = ExchangeFacts(route: "ingest", sink: "events")
        facts.events = 3
        facts.identity = "tenant-a"
        facts.reject(1, reason: "event_too_large")
        return ExchangeRecord(
            transport: .http, listener: "main", method: "POST", path: "/v1/events/\"odd\"\n\(index)", protocolName: "HTTP/1.1",
            status: 200, facts: facts, bytesIn: 600, bytesOut: 80, duration: .microseconds(1_234_567), client: "127.0.0.1",
            startedAt: 1_796_237_427.5)
    }

    @Test func aLineIsOneJSONObjectWithTheRecordsFields() throws {
        let line = AccessLog.line(Self.record(7))
        #expect(line.last == UInt8(ascii: "\n"))
        #expect(line.dropLast().allSatisfy { $0 != UInt8(ascii: "\n") }, "one line, whatever the path holds")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
        #expect(object["time"] as? String == "2026-12-02T18:50:27.500Z")
        #expect(object["path"] as? String == "/v1/events/\"odd\"\n7")
        #expect(object["status"] as? Int == 200)
        #expect(object["events"] as? Int == 3)
        #expect((object["events_rejected"] as? [String: Int]) == ["event_too_large": 1])
        #expect(object["duration_ms"] as? Double == 1234.567)
        #expect(object["sink"] as? String == "events" && object["upstream"] == nil)
        #expect(object["identity"] as? String == "tenant-a" && object["client"] as? String == "127.0.0.1")
        #expect(object["protocol"] as? String == "HTTP/1.1" && object["listener"] as? String == "main")
    }

    /// A destination that stops taking lines (a pipe nobody reads: a disk that hangs) never
    /// holds up `observe`: past the queue bound lines are dropped and counted, and every line
    /// is either written or counted as dropped.
    @Test func aStuckDestinationDropsAndCountsInsteadOfBlocking() throws {
        let fifo = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-access-\(UUID().uuidString)").path
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        let reader = open(fifo, O_RDONLY | O_NONBLOCK)
        #expect(reader >= 0)
        defer { close(reader) }
        let exporter = PrometheusExporter(version: "test")
        let log = try AccessLog(destination: .file(fifo), maxQueuedLines: 100, metrics: exporter.factory)
        let total = 20_000
        for index in 0..<total { log.observe(Self.record(index)) }

        let closed = DispatchSemaphore(value: 0)
        Thread {
            log.close(timeout: 30)
            closed.signal()
        }.start()
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(reader, $0.baseAddress, $0.count) }
            if count > 0 {
                received.append(contentsOf: buffer[0..<count])
            } else if count == 0 {
                break  // the writer closed its end
            } else {
                #expect(errno == EAGAIN)
                usleep(5_000)
            }
        }
        closed.wait()
        let lines = received.split(separator: UInt8(ascii: "\n"))
        for line in lines.prefix(50) {
            #expect((try? JSONSerialization.jsonObject(with: Data(line))) != nil)
        }
        let scrape = String(decoding: exporter.scrape(), as: UTF8.self)
        let droppedLine = try #require(scrape.split(separator: "\n").first { $0.hasPrefix("sluice_access_log_dropped_lines_total ") })
        let dropped = try #require(Int(droppedLine.split(separator: " ")[1]))
        #expect(dropped > 0, "the pipe holds far fewer than \(total) lines")
        #expect(lines.count + dropped == total, "written \(lines.count) + dropped \(dropped)")
    }
}
