import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceConfigReader
import SluiceCore
@testable import SluiceHTTP
@testable import SluiceIngest
import SluiceSpool
import Testing

/// An ingest route with several sinks: `sinks` with `mode: all | any` (every event to every
/// target, each target's result in the answer) and `split` (each event to one target, by
/// fraction or by a hash of its key).
@Suite struct RouteTargetsTests {
    static func template(_ text: String) -> ParameterTemplate { try! ParameterTemplate.parse(text).get() }

    static func handler(_ mode: IngestTargets.Mode, _ targets: [(ScriptedSink, String, Double)], key: KeySource? = nil) -> IngestHandler {
        let config = IngestHandlerTests.config {
            $0.maxEvents = 5000
            $0.key = key
            $0.targets = IngestTargets(
                mode: mode, targets: targets.map { IngestTarget(sink: $0.0.name, topic: Self.template($0.1), fraction: $0.2) })
        }
        let sinks = Dictionary(uniqueKeysWithValues: targets.map { ($0.0.name, $0.0 as any Sink) })
        let sink = RouteSinks.sink(for: config, among: sinks)!
        return IngestHandler(pipeline: IngestPipeline(routeName: "r", config: config, sink: sink, logger: Logger(label: "t")))
    }

    static func post(_ handler: IngestHandler, _ lines: [String]) async -> (status: HTTPResponseStatus, json: [String: Any]) {
        let (status, body, _) = await IngestHandlerTests.post(handler, chunks: [lines.joined(separator: "\n")])
        return (status, (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? ["unparsed": body])
    }

    static func results(_ json: [String: Any]) -> [[String: Any]] { json["results"] as? [[String: Any]] ?? [] }
    static func sinks(_ result: [String: Any]) -> [[String: Any]] { result["sinks"] as? [[String: Any]] ?? [] }

    static let refused = DeliveryFailure(code: "kafka_msg_size_too_large", message: "too large for the broker", isRetryable: false, httpStatus: 413)

    @Test func fanOutAllSendsEveryEventToEveryTargetAndAnswersEachTargetsResult() async {
        let kafka = ScriptedSink(name: "kafka")
        let lake = ScriptedSink(name: "lake", fate: { .delivered(DeliveryReceipt(offset: Int64(100 + $0))) })
        let (status, json) = await Self.post(Self.handler(.all, [(kafka, "{topic}", 1), (lake, "archive.{topic}", 1)]), [#"{"n":0}"#, #"{"n":1}"#])
        #expect(status == .ok)
        #expect(kafka.received.map(\.topic) == ["orders", "orders"])
        #expect(lake.received.map(\.topic) == ["archive.orders", "archive.orders"])
        let results = Self.results(json)
        #expect(results.count == 2)
        // Each target's receipt is listed under sinks, none stands for the event alone.
        #expect(results[1]["partition"] as? Int == nil, "\(results[1])")
        let sinks = Self.sinks(results[1])
        #expect(sinks.map { $0["sink"] as? String } == ["kafka", "lake"])
        #expect(sinks.map { $0["topic"] as? String } == ["orders", "archive.orders"])
        #expect(sinks[0]["offset"] as? Int == 1 && sinks[0]["partition"] as? Int == 0)
        #expect(sinks[1]["offset"] as? Int == 101)
    }

    @Test func fanOutAllFailsAnEventOneTargetRefusedAndSaysWhich() async {
        let kafka = ScriptedSink(name: "kafka")
        let lake = ScriptedSink(name: "lake", fate: { $0 == 1 ? .failed(Self.refused) : .delivered(DeliveryReceipt(offset: Int64($0))) })
        let (status, json) = await Self.post(Self.handler(.all, [(kafka, "{topic}", 1), (lake, "{topic}", 1)]), [#"{"n":0}"#, #"{"n":1}"#, #"{"n":2}"#])
        #expect(status == HTTPResponseStatus(statusCode: 413), "\(json)")
        #expect(json["accepted"] as? Int == 2 && json["failed"] as? Int == 1)
        let failed = Self.results(json)[1]
        #expect((failed["error"] as? [String: Any])?["code"] as? String == "kafka_msg_size_too_large")
        let sinks = Self.sinks(failed)
        #expect(sinks[0]["offset"] as? Int == 1, "kafka took it: \(sinks)")
        #expect((sinks[1]["error"] as? [String: Any])?["code"] as? String == "kafka_msg_size_too_large")
    }

    @Test func aRetryableAndARefusalTogetherAreNotRetryable() {
        let outcomes = [
            TargetOutcome(sink: "a", topic: "t", result: .failed(.queueFull(sink: "a"))),
            TargetOutcome(sink: "b", topic: "t", result: .failed(Self.refused)),
        ]
        guard case .failed(let failure) = FanOutSink.join(outcomes, requireAll: false) else {
            Issue.record("expected a failure")
            return
        }
        #expect(failure.code == "kafka_msg_size_too_large" && !failure.isRetryable && failure.targets == outcomes)
        let retryable = [TargetOutcome(sink: "a", topic: "t", result: .failed(.queueFull(sink: "a")))] + [outcomes[0]]
        guard case .failed(let both) = FanOutSink.join(retryable, requireAll: true) else { return }
        #expect(both.isRetryable && both.httpStatus == 503)
    }

    @Test func fanOutAnyDeliversWhatOneTargetSettled() async {
        let kafka = ScriptedSink(name: "kafka", fate: { _ in .failed(DeliveryFailure(code: "kafka_timed_out", message: "broker down", isRetryable: true)) })
        let lake = ScriptedSink(name: "lake")
        let (status, json) = await Self.post(Self.handler(.any, [(kafka, "{topic}", 1), (lake, "{topic}", 1)]), [#"{"n":0}"#, #"{"n":1}"#])
        #expect(status == .ok, "\(json)")
        #expect(json["accepted"] as? Int == 2)
        let sinks = Self.sinks(Self.results(json)[0])
        #expect((sinks[0]["error"] as? [String: Any])?["code"] as? String == "kafka_timed_out")
        #expect(sinks[1]["offset"] as? Int == 0)
    }

    @Test func aTargetWithoutRoomSaturatesAnAllRouteButNotAnAnyRoute() async {
        let (all, allJSON) = await Self.post(
            Self.handler(.all, [(ScriptedSink(name: "kafka"), "{topic}", 1), (ScriptedSink(name: "lake", capacity: 0), "{topic}", 1)]), [#"{"n":0}"#])
        #expect(all == .serviceUnavailable, "\(allJSON)")
        #expect((allJSON["error"] as? [String: Any])?["code"] as? String == "sink_saturated")
        let (any, anyJSON) = await Self.post(
            Self.handler(.any, [(ScriptedSink(name: "kafka"), "{topic}", 1), (ScriptedSink(name: "lake", capacity: 0), "{topic}", 1)]), [#"{"n":0}"#])
        #expect(any == .ok, "\(anyJSON)")
    }

    @Test func aRandomSplitSendsEachEventToOneTargetByItsFraction() async {
        let old = ScriptedSink(name: "old")
        let new = ScriptedSink(name: "new")
        let lines = (0..<2000).map { #"{"n":\#($0)}"# }
        let (status, json) = await Self.post(Self.handler(.split(.random), [(old, "{topic}", 0.75), (new, "{topic}", 0.25)]), lines)
        #expect(status == .ok)
        #expect(old.received.count + new.received.count == 2000)
        // 2000 draws at 0.25: mean 500, standard deviation ~19; 400...600 is over five of them.
        #expect((400...600).contains(new.received.count), "\(new.received.count)")
        // Each result names the one target the event went to, in request order.
        let named = Self.results(json).map { Self.sinks($0).map { $0["sink"] as? String } }
        #expect(named.allSatisfy { $0.count == 1 })
        #expect(named.filter { $0 == ["new"] }.count == new.received.count)
        let newValues = Set(new.received.map { String(buffer: $0.event.value) })
        #expect(zip(lines, named).allSatisfy { newValues.contains($0.0) == ($0.1 == ["new"]) })
    }

    @Test func aKeySplitKeepsEachKeyOnOneTarget() async {
        let old = ScriptedSink(name: "old")
        let new = ScriptedSink(name: "new")
        let lines = (0..<600).map { #"{"user":"u\#($0 % 60)","n":\#($0)}"# }
        let (status, _) = await Self.post(
            Self.handler(.split(.key), [(old, "{topic}", 0.5), (new, "{topic}", 0.5)], key: .jsonPointer(["user"])), lines)
        #expect(status == .ok)
        let oldKeys = Set(old.received.compactMap { $0.event.key.map { String(buffer: $0) } })
        let newKeys = Set(new.received.compactMap { $0.event.key.map { String(buffer: $0) } })
        #expect(oldKeys.isDisjoint(with: newKeys) && oldKeys.count + newKeys.count == 60)
        #expect(!oldKeys.isEmpty && !newKeys.isEmpty)
    }

    @Test func movingAFractionMovesOnlyTheKeysInBetween() {
        func split(_ fractions: [Double]) -> SplitSink {
            SplitSink(targets: fractions.map { RouteTarget(sink: ScriptedSink(), topic: Self.template("{topic}"), fraction: $0) }, by: .key)
        }
        let before = split([0.9, 0.1])
        let after = split([0.8, 0.2])
        var moved = 0
        for n in 0..<10_000 {
            let point = Array("key-\(n)".utf8).withUnsafeBytes { SplitSink.point(ofKey: $0) }
            let (was, now) = (before.target(at: point), after.target(at: point))
            if was == 1 { #expect(now == 1, "a key on the new target stays there") }
            if was != now { moved += 1 }
        }
        // About a tenth of the keys move (the share between 0.8 and 0.9), and only those.
        #expect((800...1200).contains(moved), "\(moved)")
    }

    @Test func aKeysPointIsTheSameInEveryProcess() {
        // FNV-1a 64 then SplitMix64's finalizer, computed independently (Python) for these keys.
        let expected: [(String, Double)] = [("user-42", 0.4768919313585631), ("", 0.9576734252420561), ("a", 0.010753497314070604)]
        for (key, point) in expected {
            #expect(Array(key.utf8).withUnsafeBytes { SplitSink.point(ofKey: $0) } == point, "\(key)")
        }
    }

    @Test func aTargetsTopicRulesApplyToTheRoutesTopic() {
        let kafka = ScriptedSink(name: "kafka")
        let config = IngestHandlerTests.config {
            $0.targets = IngestTargets(mode: .all, targets: [IngestTarget(sink: "kafka"), IngestTarget(sink: "kafka", topic: Self.template("{topic}!"))])
        }
        let sink = RouteSinks.sink(for: config, among: ["kafka": kafka])!
        #expect(sink.destinationProblem("orders")?.hasPrefix("sink \"kafka\": topic name \"orders!\"") == true, "\(sink.destinationProblem("orders") ?? "")")
        #expect(sink.sinkNames == ["kafka", "kafka"] && sink.name == "kafka+kafka")
    }

    @Test func aSpoolsForwarderFansOutAndRetriesWhatOneTargetFailed() async throws {
        try await SpooledIngestTests.withDirectory { directory in
            let spool = try Spool(directory: directory, maxBytes: 1 << 20, segmentBytes: 64 << 10, maxRecordBytes: 1 << 20)
            let kafka = ScriptedSink(name: "kafka") {
                $0 == 1 ? .failed(DeliveryFailure(code: "kafka_timed_out", message: "slow broker", isRetryable: true)) : .delivered(DeliveryReceipt(offset: Int64($0)))
            }
            let lake = ScriptedSink(name: "lake")
            var config = SpooledIngestTests.config(directory)
            config.targets = IngestTargets(mode: .all, targets: [IngestTarget(sink: "kafka"), IngestTarget(sink: "lake", topic: Self.template("archive.{topic}"))])
            let sink = RouteSinks.sink(for: config, among: ["kafka": kafka, "lake": lake])!
            let pipeline = IngestPipeline(routeName: "r", config: config, sink: sink, spool: spool, logger: Logger(label: "t"))
            let forwarder = SpoolForwarder(spool: spool, pipeline: pipeline, drainTimeout: .seconds(5), logger: Logger(label: "t"))
            let running = Task { try await forwarder.run() }
            _ = try await spool.append(["one", "two", "three"].map { ("orders", Event(value: ByteBuffer(string: $0))) }, deadline: .now + .seconds(5)).get()
            while spool.pendingRecords > 0 { try await Task.sleep(for: .milliseconds(10)) }
            spool.close()
            try await running.value
            // "two" failed in kafka: sent again to both targets (at least once), then settled.
            #expect(kafka.received.map { String(buffer: $0.event.value) } == ["one", "two", "three", "two"])
            #expect(lake.received.map { String(buffer: $0.event.value) } == ["one", "two", "three", "two"])
            #expect(lake.received.allSatisfy { $0.topic == "archive.orders" })
            #expect(forwarder.totalsSoFar.forwarded == 3 && forwarder.totalsSoFar.retried == 1)
        }
    }
}
