@testable import KafkaSink
import Logging
import NIOCore
import SluiceCore
import Testing

/// KafkaSink against librdkafka's in-process mock cluster: the real producer path
/// (produceva, delivery reports, purge) without a broker. Broker integration is in EndToEndTests.
@Suite struct KafkaSinkMockClusterTests {
    func makeSink(
        _ extra: [KafkaProperty] = [], budget: InFlightBudget = InFlightBudget(maxBytes: 1 << 20, maxEvents: 1000),
        deliveryTimeout: Duration = .seconds(5)
    ) throws -> KafkaSink {
        let config = KafkaSinkConfig(
            bootstrapServers: ["127.0.0.1:1"],
            properties: [KafkaProperty("test.mock.num.brokers", "1")] + extra,
            deliveryTimeout: deliveryTimeout)
        return try KafkaSink(
            config: config,
            context: SinkContext(name: "mock", budget: budget, flushTimeout: .seconds(2), logger: Logger(label: "test"), environment: [:]))
    }

    @Test func deliversEveryEventWithItsOffsetInOrder() async throws {
        let sink = try self.makeSink()
        let tracker = DeliveryTracker()
        let events = (0..<20).map { Event(value: ByteBuffer(string: "{\"n\":\($0)}"), key: ByteBuffer(string: "k"), headers: [EventHeader(name: "h", value: "v")]) }
        let first = tracker.reserve(events.count)
        let taken = await sink.enqueue(events, topic: "mock-topic", tracker: tracker, firstIndex: first, deadline: .now + .seconds(5))
        #expect(taken == 20)
        tracker.seal()
        let results = await tracker.results()
        let offsets = results.compactMap { result -> Int64? in
            if case .delivered(let receipt) = result { return receipt.offset }
            return nil
        }
        #expect(offsets.count == 20)
        #expect(offsets == offsets.sorted(), "one key, one partition: offsets follow request order")
        await sink.shutdown()
    }

    @Test func rejectsAnOversizedEventAloneWith413() async throws {
        let sink = try self.makeSink([KafkaProperty("message.max.bytes", "2000")])
        let tracker = DeliveryTracker()
        let events = [
            Event(value: ByteBuffer(string: "small")),
            Event(value: ByteBuffer(repeating: UInt8(ascii: "x"), count: 5000)),
            Event(value: ByteBuffer(string: "small too")),
        ]
        let first = tracker.reserve(events.count)
        _ = await sink.enqueue(events, topic: "mock-topic", tracker: tracker, firstIndex: first, deadline: .now + .seconds(5))
        tracker.seal()
        let results = await tracker.results()
        guard case .failed(let failure) = results[1] else {
            Issue.record("the oversized event must fail, got \(results[1])")
            return
        }
        #expect(failure.code == "kafka_msg_size_too_large")
        #expect(failure.httpStatus == 413)
        #expect(!failure.isRetryable)
        if case .delivered = results[0] {} else { Issue.record("event 0 should be delivered: \(results[0])") }
        if case .delivered = results[2] {} else { Issue.record("event 2 should be delivered: \(results[2])") }
        await sink.shutdown()
    }

    @Test func refusesEventsAfterShutdownAsRetryable() async throws {
        let sink = try self.makeSink()
        await sink.shutdown()
        let tracker = DeliveryTracker()
        let first = tracker.reserve(2)
        let taken = await sink.enqueue(
            [Event(value: ByteBuffer(string: "a")), Event(value: ByteBuffer(string: "b"))], topic: "t", tracker: tracker,
            firstIndex: first, deadline: .now + .seconds(1))
        #expect(taken == 0)
        tracker.seal()
        for result in await tracker.results() {
            #expect(result == .failed(.shuttingDown(sink: "mock")))
        }
        #expect(!sink.isReady)
    }

    @Test func waitsForBudgetAndThenGivesUpAtTheDeadline() async throws {
        // A budget of 5 events and a linger far longer than the test: nothing is delivered
        // (so no budget comes back) until shutdown purges the queue.
        let budget = InFlightBudget(maxBytes: 1 << 20, maxEvents: 5)
        let sink = try self.makeSink([KafkaProperty("linger.ms", "60000")], budget: budget, deliveryTimeout: .seconds(120))
        let tracker = DeliveryTracker()
        let events = (0..<8).map { Event(value: ByteBuffer(string: "e\($0)")) }
        let first = tracker.reserve(events.count)
        let started = ContinuousClock.now
        let taken = await sink.enqueue(events, topic: "t", tracker: tracker, firstIndex: first, deadline: .now + .milliseconds(300))
        #expect(taken == 5)
        #expect(ContinuousClock.now - started >= .milliseconds(300))
        await sink.shutdown()
        tracker.seal()
        let results = await tracker.results()
        for index in 5..<8 {
            #expect(results[index] == .failed(.queueFull(sink: "mock")))
        }
        for index in 0..<5 {
            // Shutdown flushes (sending at once, whatever the linger) or purges: delivered, or retryable.
            if case .failed(let failure) = results[index] {
                #expect(failure.isRetryable, "event \(index): \(failure)")
            }
        }
        #expect(budget.inFlight == (0, 0), "every share came back, through delivery reports or purge")
    }

    @Test func givesBudgetBackForEveryDeliveredOrRefusedEvent() async throws {
        let budget = InFlightBudget(maxBytes: 1 << 20, maxEvents: 1000)
        let sink = try self.makeSink([KafkaProperty("message.max.bytes", "2000")], budget: budget)
        let tracker = DeliveryTracker()
        let events = [Event(value: ByteBuffer(string: "ok")), Event(value: ByteBuffer(repeating: 1, count: 5000))]
        let first = tracker.reserve(events.count)
        _ = await sink.enqueue(events, topic: "t", tracker: tracker, firstIndex: first, deadline: .now + .seconds(5))
        tracker.seal()
        _ = await tracker.results()
        #expect(budget.inFlight == (0, 0))
        await sink.shutdown()
    }

    @Test func aFullQueueBehindARaisedBudgetStillEndsAtTheDeadline() async throws {
        // The user raised the budget past librdkafka's queue: QUEUE_FULL is the bound then.
        let sink = try self.makeSink(
            [KafkaProperty("queue.buffering.max.messages", "5"), KafkaProperty("linger.ms", "60000")],
            budget: InFlightBudget(maxBytes: 1 << 20, maxEvents: 1000), deliveryTimeout: .seconds(120))
        let tracker = DeliveryTracker()
        let events = (0..<8).map { Event(value: ByteBuffer(string: "e\($0)")) }
        let first = tracker.reserve(events.count)
        let taken = await sink.enqueue(events, topic: "t", tracker: tracker, firstIndex: first, deadline: .now + .milliseconds(300))
        #expect(taken == 5)
        await sink.shutdown()
        tracker.seal()
        let results = await tracker.results()
        #expect(results[5] == .failed(.queueFull(sink: "mock")))
        #expect(sink.budget.inFlight == (0, 0))
    }

    @Test func replacesAProducerThatHitAFatalErrorAndServesAgain() async throws {
        // Events wait in the queue (linger) when the producer dies: none may be reported delivered.
        let budget = InFlightBudget(maxBytes: 1 << 20, maxEvents: 1000)
        let sink = try self.makeSink([KafkaProperty("linger.ms", "1500")], budget: budget, deliveryTimeout: .seconds(30))
        let runner = Task { try await sink.run() }
        defer { runner.cancel() }
        let tracker = DeliveryTracker()
        let held = (0..<10).map { Event(value: ByteBuffer(string: "held-\($0)")) }
        let first = tracker.reserve(held.count)
        #expect(await sink.enqueue(held, topic: "t", tracker: tracker, firstIndex: first, deadline: .now + .seconds(5)) == 10)
        sink.raiseFatalErrorForTesting()
        tracker.seal()
        for (index, result) in (await tracker.results()).enumerated() {
            guard case .failed(let failure) = result else {
                Issue.record("event \(index) of the dead producer was reported \(result)")
                continue
            }
            #expect(failure.isRetryable, "event \(index): \(failure)")
        }
        // Replaced (within a second or so; generous for a loaded machine), every budget share
        // back, and new events delivered. The wait counts its own turns, not wall time: when the
        // runner's threads stall (CI: a stall of ~30 s), a wall-clock deadline could pass while
        // the sink's watcher never had its turn.
        for _ in 0..<600 where sink.producerReplacements == 0 { try await Task.sleep(for: .milliseconds(50)) }
        #expect(sink.producerReplacements == 1)
        #expect(sink.counters.first?.value == 1)
        let after = DeliveryTracker()
        let fresh = (0..<5).map { Event(value: ByteBuffer(string: "fresh-\($0)")) }
        let next = after.reserve(fresh.count)
        #expect(await sink.enqueue(fresh, topic: "t", tracker: after, firstIndex: next, deadline: .now + .seconds(5)) == 5)
        after.seal()
        for (index, result) in (await after.results()).enumerated() {
            guard case .delivered = result else {
                Issue.record("event \(index) sent to the new producer: \(result)")
                continue
            }
        }
        #expect(budget.inFlight == (0, 0))
        runner.cancel()
        _ = try? await runner.value
    }
}
