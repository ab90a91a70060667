import SluiceConfig
import SluiceCore

/// The sink an ingest route's events go to: its one `sink`, or one that spreads them over the
/// route's `sinks` (fan-out) or `split`. nil when a sink is missing (a validated configuration
/// has them all).
public enum RouteSinks {
    public static func sink(for config: IngestConfig, among sinks: [String: any Sink]) -> (any Sink)? {
        guard let targets = config.targets else { return sinks[config.sink] }
        var bound: [RouteTarget] = []
        for target in targets.targets {
            guard let sink = sinks[target.sink] else { return nil }
            bound.append(RouteTarget(sink: sink, topic: target.topic, fraction: target.fraction))
        }
        switch targets.mode {
        case .all: return FanOutSink(targets: bound, requireAll: true)
        case .any: return FanOutSink(targets: bound, requireAll: false)
        case .split(let by): return SplitSink(targets: bound, by: by)
        }
    }
}

/// One sink of a route's `sinks` or `split`, and its destination template.
struct RouteTarget: Sendable {
    let sink: any Sink
    let topic: ParameterTemplate
    let fraction: Double

    /// The target's destination for events bound for `topic` (the route's).
    func destination(for topic: String) -> String {
        self.topic.render(["topic": topic])
    }
}

/// A batch of events handed to one target, with its own tracker.
private struct TargetBatch: Sendable {
    let target: Int
    let destination: String
    let events: [Event]
    let tracker: DeliveryTracker
}

/// What the route sinks share: the batches go to their targets at once (a slow target holds a
/// request no longer than the slowest alone), and a task joins each batch's results into the
/// route's tracker once they are known.
private enum TargetDispatch {
    /// Hands each batch to its target, all at once; returns how many each took (a prefix).
    static func enqueue(_ batches: [TargetBatch], targets: [RouteTarget], deadline: ContinuousClock.Instant) async -> [Int] {
        for batch in batches { _ = batch.tracker.reserve(batch.events.count) }
        if batches.count == 1 {
            let batch = batches[0]
            return [await Self.enqueue(batch, to: targets[batch.target].sink, deadline: deadline)]
        }
        return await withTaskGroup(of: (Int, Int).self) { group in
            for (position, batch) in batches.enumerated() {
                let sink = targets[batch.target].sink
                group.addTask { (position, await Self.enqueue(batch, to: sink, deadline: deadline)) }
            }
            var taken = Array(repeating: 0, count: batches.count)
            for await (position, count) in group { taken[position] = count }
            return taken
        }
    }

    private static func enqueue(_ batch: TargetBatch, to sink: any Sink, deadline: ContinuousClock.Instant) async -> Int {
        let taken = await sink.enqueue(batch.events, topic: batch.destination, tracker: batch.tracker, firstIndex: 0, deadline: deadline)
        batch.tracker.seal()
        return taken
    }

    /// Every batch's results, each waited for no longer than its target may take to settle an
    /// event (the bounds start together, now).
    static func results(of batches: [TargetBatch], targets: [RouteTarget]) async -> [DeliveryResults] {
        let start = ContinuousClock.now
        var all: [DeliveryResults] = []
        for batch in batches {
            let sink = targets[batch.target].sink
            if let settle = sink.settleTimeout {
                let bound = settle + .seconds(1)
                all.append(await batch.tracker.results(deadline: start + bound, unsettled: .unsettled(sink: sink.name, after: bound)))
            } else {
                all.append(await batch.tracker.results())
            }
        }
        return all
    }

    /// The longest the joined results may take: the slowest target's bound and a second more
    /// (the join runs after the enqueue). nil when a target has no bound.
    static func settleTimeout(_ targets: [RouteTarget]) -> Duration? {
        var longest = Duration.zero
        for target in targets {
            guard let settle = target.sink.settleTimeout else { return nil }
            longest = max(longest, settle)
        }
        return longest + .seconds(2)
    }
}

/// The sink of a route with `sinks: [...]`: every event goes to every target. `requireAll`
/// (`mode: all`): an event is delivered once every target settled it, and fails with the
/// worst target's failure otherwise; `mode: any`: delivered once one target settled it. Each
/// event's result lists every target's (`DeliveryReceipt.targets`, `DeliveryFailure.targets`).
/// A target whose queue is full holds the request up to max_wait in either mode: backpressure
/// is never skipped. Delivery is at least once: a retry after a partial failure repeats the
/// event in the targets that had it.
final class FanOutSink: RouteTargetsSink {
    let targets: [RouteTarget]
    let requireAll: Bool
    let name: String

    init(targets: [RouteTarget], requireAll: Bool) {
        precondition(!targets.isEmpty)
        self.targets = targets
        self.requireAll = requireAll
        self.name = targets.map(\.sink.name).joined(separator: "+")
    }

    var isReady: Bool {
        self.requireAll ? self.targets.allSatisfy(\.sink.isReady) : self.targets.contains(where: \.sink.isReady)
    }


    /// Returns how many events every target (`all`) or one target (`any`) took; every event's
    /// slot is completed once the targets' results are joined, shortly after.
    func enqueue(_ events: [Event], topic: String, tracker: DeliveryTracker, firstIndex: Int, deadline: ContinuousClock.Instant) async -> Int {
        guard !events.isEmpty else { return 0 }
        let batches = self.targets.indices.map {
            TargetBatch(target: $0, destination: self.targets[$0].destination(for: topic), events: events, tracker: DeliveryTracker())
        }
        let taken = await TargetDispatch.enqueue(batches, targets: self.targets, deadline: deadline)
        let targets = self.targets
        let requireAll = self.requireAll
        Task {
            let results = await TargetDispatch.results(of: batches, targets: targets)
            for index in events.indices {
                let outcomes = batches.indices.map {
                    TargetOutcome(sink: targets[$0].sink.name, topic: batches[$0].destination, result: results[$0][index])
                }
                tracker.complete(firstIndex + index, with: Self.join(outcomes, requireAll: requireAll))
            }
        }
        return requireAll ? taken.min() ?? 0 : taken.max() ?? 0
    }

    /// One event's result from every target's.
    static func join(_ outcomes: [TargetOutcome], requireAll: Bool) -> DeliveryResult {
        var delivered: DeliveryReceipt?
        var deliveredCount = 0
        var failures: [DeliveryFailure] = []
        for outcome in outcomes {
            switch outcome.result {
            case .delivered(let receipt):
                if delivered == nil { delivered = receipt }
                deliveredCount += 1
            case .failed(let failure):
                failures.append(failure)
            }
        }
        if var receipt = delivered, requireAll ? failures.isEmpty : deliveredCount > 0 {
            receipt.targets = outcomes
            return .delivered(receipt)
        }
        // The failure a client must act on: one a retry cannot mend, else the first.
        var failure = failures.first(where: { !$0.isRetryable }) ?? failures[0]
        failure.isRetryable = failures.allSatisfy(\.isRetryable)
        if failure.isRetryable { failure.httpStatus = 503 }
        failure.targets = outcomes
        return .failed(failure)
    }
}

/// The sink of a route with `split`: each event goes to one target, chosen at random by the
/// targets' fractions or by a hash of its key. A key's place in [0, 1) never changes and the
/// targets own consecutive ranges in their order, so moving a fraction from one target to the
/// next moves only the keys in between. Each event's result names its target.
final class SplitSink: RouteTargetsSink {
    let targets: [RouteTarget]
    let by: IngestTargets.SplitBy
    let name: String
    /// Where each target's range ends, in [0, 1]; the last is 1.
    private let bounds: [Double]

    init(targets: [RouteTarget], by: IngestTargets.SplitBy) {
        precondition(!targets.isEmpty)
        self.targets = targets
        self.by = by
        self.name = targets.map(\.sink.name).joined(separator: "|")
        var sum = 0.0
        var bounds: [Double] = []
        for target in targets {
            sum += target.fraction
            bounds.append(sum)
        }
        bounds[bounds.count - 1] = 1
        self.bounds = bounds
    }

    var isReady: Bool { self.targets.allSatisfy(\.sink.isReady) }

    /// The target of the event at `point` in [0, 1).
    func target(at point: Double) -> Int {
        self.bounds.firstIndex(where: { point < $0 }) ?? self.bounds.count - 1
    }

    /// A key's fixed point in [0, 1): FNV-1a over its bytes, then SplitMix64's finalizer to spread
    /// near keys apart. The same in every process and release.
    static func point(ofKey key: UnsafeRawBufferPointer) -> Double {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01B3
        }
        hash = (hash ^ (hash >> 30)) &* 0xBF58_476D_1CE4_E5B9
        hash = (hash ^ (hash >> 27)) &* 0x94D0_49BB_1331_11EB
        hash ^= hash >> 31
        return Double(hash >> 11) * 0x1.0p-53
    }

    /// Returns the prefix of `events` whose targets took them; every event's slot is completed
    /// once the targets' results are joined, shortly after.
    func enqueue(_ events: [Event], topic: String, tracker: DeliveryTracker, firstIndex: Int, deadline: ContinuousClock.Instant) async -> Int {
        guard !events.isEmpty else { return 0 }
        var random = SplitMix64(seed: UInt64.random(in: .min ... .max))
        var members = Array(repeating: [Int](), count: self.targets.count)
        for index in events.indices {
            let point: Double
            if self.by == .key, let key = events[index].key {
                point = key.withUnsafeReadableBytes { Self.point(ofKey: $0) }
            } else {
                point = random.nextUnit()
            }
            members[self.target(at: point)].append(index)
        }
        var batches: [TargetBatch] = []
        var memberLists: [[Int]] = []
        for (target, indices) in members.enumerated() where !indices.isEmpty {
            batches.append(
                TargetBatch(
                    target: target, destination: self.targets[target].destination(for: topic), events: indices.map { events[$0] },
                    tracker: DeliveryTracker()))
            memberLists.append(indices)
        }
        let taken = await TargetDispatch.enqueue(batches, targets: self.targets, deadline: deadline)
        // The request's events up to the first one its target did not take.
        var prefix = events.count
        for (position, indices) in memberLists.enumerated() where taken[position] < indices.count {
            prefix = min(prefix, indices[taken[position]])
        }
        let targets = self.targets
        Task {
            let results = await TargetDispatch.results(of: batches, targets: targets)
            for (position, indices) in memberLists.enumerated() {
                let batch = batches[position]
                for (offset, index) in indices.enumerated() {
                    let outcome = TargetOutcome(sink: targets[batch.target].sink.name, topic: batch.destination, result: results[position][offset])
                    switch outcome.result {
                    case .delivered(var receipt):
                        receipt.targets = [outcome]
                        tracker.complete(firstIndex + index, with: .delivered(receipt))
                    case .failed(var failure):
                        failure.targets = [outcome]
                        tracker.complete(firstIndex + index, with: .failed(failure))
                    }
                }
            }
        }
        return prefix
    }
}

/// What the sinks over a route's targets share.
protocol RouteTargetsSink: Sink {
    var targets: [RouteTarget] { get }
}

extension RouteTargetsSink {
    /// The first target's: operators' overrides (max_wait) are read from it.
    var budget: InFlightBudget { self.targets[0].sink.budget }
    var settleTimeout: Duration? { TargetDispatch.settleTimeout(self.targets) }
    var messagingSystem: String { self.targets[0].sink.messagingSystem }
    var sinkNames: [String] { self.targets.map(\.sink.name) }

    /// Why `destination` (the route's topic) cannot be written through some target: the
    /// target's own destination rules for its rendered topic.
    func destinationProblem(_ destination: String) -> String? {
        for target in self.targets {
            if let problem = target.sink.destinationProblem(target.destination(for: destination)) {
                return "sink \"\(target.sink.name)\": \(problem)"
            }
        }
        return nil
    }
}
