import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle
import SluiceConfigReader
import SluiceCore

/// The contract every sink keeps, checked the same way for every connector against its real
/// backend (or the emulator CI runs), so a new connector proves itself like the others:
///
/// - every event handed to `enqueue` is settled exactly once — delivered, or failed with a reason;
/// - the budget each event took comes back, and the recorder in the sink's context sees every
///   settled event (with a latency for those the sink took);
/// - at shutdown the sink settles what it holds (delivered, within its flush timeout: 60 s here) and refuses
///   later events as `sink_shutting_down`, retryable;
/// - a backend that cannot be reached fails events as retryable, never as the client's fault.
///
/// `check()` returns the violations, in words; an empty list means the sink keeps the contract.
public struct SinkContract: Sendable {
    /// Builds the sink under test from the context the contract gives it.
    public var make: @Sendable (SinkContext) throws -> any RunnableSink
    /// A destination (`topic`) the backend accepts.
    public var destination: String
    /// Builds a sink whose backend cannot be reached (its settle time short); nil for a kind with
    /// no remote backend (the file sink).
    public var makeUnreachable: (@Sendable (SinkContext) throws -> any RunnableSink)?
    /// How many events each scenario sends.
    public var eventCount: Int

    public init(
        destination: String, eventCount: Int = 30, make: @escaping @Sendable (SinkContext) throws -> any RunnableSink,
        makeUnreachable: (@Sendable (SinkContext) throws -> any RunnableSink)?
    ) {
        self.destination = destination
        self.eventCount = eventCount
        self.make = make
        self.makeUnreachable = makeUnreachable
    }

    /// Runs every scenario; the violations found.
    public func check() async throws -> [String] {
        var violations: [String] = []
        violations += try await self.deliversEveryEventExactlyOnce()
        violations += try await self.flushesAtShutdownThenRefuses()
        if self.makeUnreachable != nil { violations += try await self.failsRetryablyWhenTheBackendIsUnreachable() }
        return violations
    }

    // MARK: - Scenarios

    func deliversEveryEventExactlyOnce() async throws -> [String] {
        let run = try SinkUnderTest(self.make, name: "contract-deliver")
        defer { run.stop() }
        // Three requests at once, as concurrent clients would send them.
        let events = self.events(prefix: "deliver")
        let thirds = stride(from: 0, to: events.count, by: max(1, events.count / 3)).map { Array(events[$0..<min($0 + max(1, events.count / 3), events.count)]) }
        let results = await withTaskGroup(of: [DeliveryResult].self) { group in
            for part in thirds {
                group.addTask { await run.send(part, to: self.destination) }
            }
            var all: [DeliveryResult] = []
            for await part in group { all += part }
            return all
        }
        var violations: [String] = []
        let failed = results.compactMap { result -> DeliveryFailure? in
            if case .failed(let failure) = result { return failure }
            return nil
        }
        if !failed.isEmpty { violations.append("deliver: \(failed.count) of \(results.count) events failed, first: \(failed[0].code): \(failed[0].message)") }
        violations += await run.settledAccounts(expected: events.count, scenario: "deliver")
        if run.recorder.entries.contains(where: { $0.latency == nil }) {
            violations.append("deliver: an event the sink took was recorded without its latency")
        }
        await run.shutDown()
        return violations
    }

    func flushesAtShutdownThenRefuses() async throws -> [String] {
        let run = try SinkUnderTest(self.make, name: "contract-shutdown")
        defer { run.stop() }
        let events = self.events(prefix: "shutdown")
        // Handed over, then the gateway stops before anyone waited for their fate.
        let tracker = DeliveryTracker()
        let first = tracker.reserve(events.count)
        tracker.seal()
        let queued = await run.sink.enqueue(events, topic: self.destination, tracker: tracker, firstIndex: first, deadline: .now + .seconds(10))
        await run.shutDown()
        var violations: [String] = []
        if queued != events.count { violations.append("shutdown: only \(queued) of \(events.count) events were queued") }
        // The sink's run has returned: whatever it held is settled by now.
        let results = await tracker.results(deadline: .now + .seconds(1), unsettled: .notAttempted)
        let undelivered = results.filter { if case .delivered = $0 { return false } else { return true } }
        if !undelivered.isEmpty {
            violations.append("shutdown: \(undelivered.count) of \(events.count) queued events were not delivered by the time the sink stopped: \(undelivered[0])")
        }
        violations += await run.settledAccounts(expected: events.count, scenario: "shutdown")

        let late = await run.send(self.events(prefix: "late"), to: self.destination, deadline: .now + .seconds(2))
        let refusedRight = late.allSatisfy { result in
            if case .failed(let failure) = result { return failure.code == ErrorCode.sinkShuttingDown.code && failure.isRetryable }
            return false
        }
        if !refusedRight { violations.append("shutdown: events after shutdown must fail as sink_shutting_down, retryable; got \(late.first.map { "\($0)" } ?? "nothing")") }
        return violations
    }

    func failsRetryablyWhenTheBackendIsUnreachable() async throws -> [String] {
        guard let makeUnreachable = self.makeUnreachable else { return [] }
        let run = try SinkUnderTest(makeUnreachable, name: "contract-unreachable")
        defer { run.stop() }
        let events = Array(self.events(prefix: "unreachable").prefix(3))
        let results = await run.send(events, to: self.destination)
        var violations: [String] = []
        for result in results {
            switch result {
            case .delivered:
                violations.append("unreachable: an event was reported delivered to a backend nobody listens on")
            case .failed(let failure) where !failure.isRetryable:
                violations.append("unreachable: \(failure.code) is not retryable, but the backend being down is not the client's fault: \(failure.message)")
            case .failed(let failure) where failure == .notAttempted:
                violations.append("unreachable: the sink never settled an event (no answer within 150 s)")
            case .failed:
                break
            }
        }
        violations += await run.settledAccounts(expected: events.count, scenario: "unreachable")
        await run.shutDown()
        return violations
    }

    func events(prefix: String) -> [Event] {
        (0..<self.eventCount).map { i in
            Event(value: ByteBuffer(string: #"{"contract":"\#(prefix)","i":\#(i)}"#), valueIsJSON: true)
        }
    }
}

/// One sink under test, running as the gateway runs it (a service in a `ServiceGroup`).
final class SinkUnderTest: Sendable {
    let sink: any RunnableSink
    let budget: InFlightBudget
    let recorder = CountingRecorder()
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    init(_ make: @Sendable (SinkContext) throws -> any RunnableSink, name: String) throws {
        let logger = Logger(label: "sluice.contract")
        self.budget = InFlightBudget(maxBytes: 8 << 20, maxEvents: 10_000)
        self.sink = try make(
            SinkContext(name: name, budget: self.budget, flushTimeout: .seconds(60), logger: logger, environment: [:], recorder: self.recorder))
        let group = ServiceGroup(services: [self.sink], logger: logger)
        self.group = group
        self.task = Task { try await group.run() }
    }

    /// Sends one request's events and waits for their fate (`notAttempted` for any not settled
    /// within `resultsWithin`).
    func send(
        _ events: [Event], to destination: String, deadline: ContinuousClock.Instant = .now + .seconds(10),
        resultsWithin: Duration = .seconds(150)
    ) async -> [DeliveryResult] {
        let tracker = DeliveryTracker()
        let first = tracker.reserve(events.count)
        tracker.seal()
        _ = await self.sink.enqueue(events, topic: destination, tracker: tracker, firstIndex: first, deadline: deadline)
        return Array(await tracker.results(deadline: .now + resultsWithin, unsettled: .notAttempted))
    }

    /// The budget is all back and the recorder saw each event once. (The ledger gives budget back
    /// and records just after it completes the tracker: allowed a moment.)
    func settledAccounts(expected: Int, scenario: String) async -> [String] {
        for _ in 0..<200 where self.budget.inFlight != (0, 0) || self.recorder.count < expected {
            try? await Task.sleep(for: .milliseconds(10))
        }
        var violations: [String] = []
        if self.budget.inFlight != (0, 0) {
            violations.append("\(scenario): \(self.budget.inFlight.bytes) bytes and \(self.budget.inFlight.events) events of budget never came back")
        }
        if self.recorder.count != expected {
            violations.append("\(scenario): the recorder saw \(self.recorder.count) settled events for \(expected) sent (each must be settled exactly once)")
        }
        return violations
    }

    /// Graceful shutdown, as on SIGTERM; returns when the sink's `run` has.
    func shutDown() async {
        await self.group.triggerGracefulShutdown()
        _ = await self.task.result
    }

    /// Ends the run if a scenario stopped early.
    func stop() {
        self.task.cancel()
    }
}

/// Counts what a ledger records.
public final class CountingRecorder: DeliveryRecorder {
    public struct Entry: Sendable {
        public var outcome: DeliveryOutcome
        public var count: Int
        public var latency: Duration?
    }

    private let recorded = NIOLockedValueBox<[Entry]>([])

    public init() {}

    public var entries: [Entry] { self.recorded.withLockedValue { $0 } }
    /// Events settled so far.
    public var count: Int { self.entries.reduce(0) { $0 + $1.count } }

    public func recordSettled(sink: String, outcome: DeliveryOutcome, count: Int, bytes: Int, latency: Duration?) {
        self.recorded.withLockedValue { $0.append(Entry(outcome: outcome, count: count, latency: latency)) }
    }
}
