import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Backpressure end to end: a slow sink slows the client instead of filling Sluice's memory.
@Suite(.timeLimit(.minutes(5))) struct BackpressureTests {
    @Test func aPausedBrokerStallsTheUploadAndMemoryStaysBounded() async throws {
        let broker = try await BrokerProcess()
        let config = """
            listeners: [{ name: main, address: "127.0.0.1:{PORT}" }]
            admin: { address: "127.0.0.1:{ADMIN_PORT}" }
            sinks:
              - name: events
                max_in_flight_bytes: 8MiB
                kafka: { bootstrap_servers: ["\(broker.bootstrap)"], delivery_timeout: 120s }
            routes:
              - name: ingest
                match: { path: "/v1/events/{topic}", methods: [POST] }
                ingest: { sink: events, topic: "{topic}", max_body_bytes: 1GiB, max_events: 100000, max_event_bytes: 1MB, max_wait: 120s }
            """
        let sluice = try await SluiceProcess(config: config)
        let topic = uniqueTopic("backpressure")

        // 1400 events of 300 KB: a 420 MB body, larger than the 256 MiB memory bound.
        let eventCount = 1400
        let file = sluice.workDirectory.appendingPathComponent("upload.ndjson")
        FileManager.default.createFile(atPath: file.path, contents: nil)
        let writer = try FileHandle(forWritingTo: file)
        let filler = String(repeating: "z", count: 300_000)
        for i in 0..<eventCount {
            writer.write(Data(#"{"seq":\#(i),"fill":"\#(filler)"}"#.utf8 + [0x0A]))
        }
        try writer.close()
        let fileSize = try FileManager.default.attributesOfItem(atPath: file.path)[.size] as! Int

        broker.pause()
        let output = sluice.workDirectory.appendingPathComponent("response.json")
        let upload = Process()
        upload.executableURL = URL(fileURLWithPath: try which("curl"))
        upload.arguments = ["-sS", "-o", output.path, "-w", "%{http_code}", "-H", "content-type: application/x-ndjson",
                            "-X", "POST", "-T", file.path, "\(sluice.baseURL)/v1/events/\(topic)"]  // -T streams the file
        let statusPipe = Pipe()
        upload.standardOutput = statusPipe
        try upload.run()

        // While the broker is paused the upload stalls: curl stops reading its file.
        try await Task.sleep(for: .seconds(3))
        let readAt3s = procReadBytes(upload.processIdentifier) ?? 0
        try await Task.sleep(for: .seconds(1))
        let readAt4s = procReadBytes(upload.processIdentifier) ?? 0
        #expect(upload.isRunning, "the upload must not finish while the sink is paused")
        #expect(readAt4s - readAt3s < 4 << 20, "curl kept sending \(readAt4s - readAt3s) bytes/s into a paused sink")
        #expect(readAt4s < fileSize / 2, "only a bounded part of the body was taken in (\(readAt4s) of \(fileSize) bytes)")

        broker.resume()
        let statusData = statusPipe.fileHandleForReading.readDataToEndOfFile()
        upload.waitUntilExit()
        let peak = procStatusBytes(sluice.process.processIdentifier, "VmHWM") ?? Int.max
        #expect(String(decoding: statusData, as: UTF8.self) == "200")
        let response = (try? JSONSerialization.jsonObject(with: Data(contentsOf: output))) as? [String: Any] ?? [:]
        #expect(response["accepted"] as? Int == eventCount)
        #expect(peak < 256 << 20, "peak RSS \(peak >> 20) MiB for a \(fileSize >> 20) MiB upload")

        // Every event arrived once the broker resumed.
        let counted = try runProgram("kcat", ["-C", "-b", broker.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%S\\n", "-m", "10"])
        let sizes = counted.stdout.split(separator: "\n")
        #expect(sizes.count == eventCount)
        #expect(sizes.allSatisfy { Int($0) ?? 0 > 300_000 })
    }
}
