import Logging
import SluiceTracing
import Tracing
import NIOCore
import SluiceConfig
import SluiceCore
import SluiceSchema
import SluiceSpool

/// An ingest route bound to its sink: the rules every transport applies to a request — the
/// topic and its checks, keys, headers, max_events, handing events to the sink within
/// max_wait, and collecting every event's fate. HTTP and gRPC are adapters around it: they say
/// where the topic, keys and events come from, and how the results are answered.
/// A class: every request's handler and session hold the pipeline, and a reference is one
/// retain where a copy of the value is one per sink, name and setting inside.
public final class IngestPipeline: Sendable {
    public let routeName: String
    public let config: IngestConfig
    public let sink: any Sink
    /// The sink of the route's `dead_letter`.
    public let deadLetterSink: (any Sink)?
    /// With `schema: { registry }`: where the id that frames the events comes from.
    public let schemaRegistry: SchemaRegistryClient?
    /// With `ack: spooled`: the route's write-ahead spool, which requests write to (a forwarder
    /// drains it into the sink).
    public let spool: Spool?
    /// The sink of the route's `mirror`.
    public let mirrorSink: (any Sink)?
    let logger: Logger

    /// `registryTransport`: how the schema registry is called (tests); by default over HTTP(S).
    public init(
        routeName: String, config: IngestConfig, sink: any Sink, deadLetterSink: (any Sink)? = nil, spool: Spool? = nil,
        mirrorSink: (any Sink)? = nil, logger: Logger, registryTransport: SchemaRegistryTransport? = nil
    ) {
        self.spool = config.ack == .spooled ? spool : nil
        self.mirrorSink = config.mirror == nil ? nil : mirrorSink
        self.routeName = routeName
        self.config = config
        self.sink = sink
        self.deadLetterSink = config.deadLetter == nil ? nil : deadLetterSink
        var logger = logger
        logger[metadataKey: "route"] = "\(routeName)"
        self.logger = logger
        self.schemaRegistry = config.schema?.registry.map { SchemaRegistryClient(config: $0, logger: logger, transport: registryTransport) }
    }

    /// Why `topic` (the route's template, rendered) cannot be written through this route: the
    /// sink's destination rules, then `topics_allowed`. Checked before any event is read.
    public func problem(topic: String) -> IngestError? {
        if let problem = self.sink.destinationProblem(topic) {
            return IngestError(.invalidTopic, problem)
        }
        if let allowed = self.config.topicsAllowed, !allowed.contains(topic) {
            return IngestError(.unknownTopic, "topic \"\(topic)\" is not served by this route")
        }
        return nil
    }

    /// The largest event the adapters decode and hand to the session. Without a `dead_letter`
    /// they refuse an event past max_event_bytes as early as they can (an NDJSON line is not
    /// buffered past it); with one, such an event reaches the session whole — bounded by
    /// max_body_bytes, as any whole body is — and the session dead-letters it.
    public var largestDecodedEvent: Int {
        self.deadLetterSink == nil ? self.config.maxEventBytes : max(self.config.maxEventBytes, self.config.maxBodyBytes)
    }

    /// The key of events that bring none and find none: the route's default key template (a
    /// Kinesis sink's `partition_key` with parameters), rendered.
    public func defaultKey(_ parameters: [String: String]) -> ByteBuffer? {
        self.config.defaultKey.map { ByteBuffer(string: $0.render(parameters)) }
    }

    /// A request's events on their way to `topic`.
    /// - Parameters:
    ///   - requestKey: the key of every event without one (from a header or query parameter, or
    ///     the default key); with a JSON-pointer key, the key of events the pointer finds nothing in.
    ///   - headers: record headers for every event (`headers_to_kafka`); none keeps the events' own.
    ///   - ack: what the answer waits for; gRPC answers every event's fate whatever the route says.
    public func session(
        topic: String, requestKey: ByteBuffer?, defaultKey: ByteBuffer?, headers: [EventHeader], ack: AckMode
    ) -> IngestSession {
        // Answered before the sink settles them, nobody waits for results: count, log failures,
        // keep nothing per event.
        // (Spooled events fail only on their way into the spool, and the answer says so.)
        let tracker: DeliveryTracker
        switch ack {
        case .sink: tracker = DeliveryTracker()
        case .accepted: tracker = DeliveryTracker(recordsResults: false, onFailure: self.logAcceptedFailure(topic: topic))
        case .spooled: tracker = DeliveryTracker(recordsResults: false)
        }
        var session = IngestSession(
            pipeline: self, topic: topic, tracker: tracker, requestKey: requestKey, defaultKey: defaultKey, headers: headers)
        if ack == .spooled { session.spool = self.spool }
        if let mirrorSink = self.mirrorSink, let mirror = self.config.mirror {
            session.mirror = MirrorTarget(
                sink: mirrorSink, topic: mirror.topic.render(["topic": topic]), fraction: mirror.fraction,
                tracker: DeliveryTracker(recordsResults: false), random: SplitMix64(seed: UInt64.random(in: .min ... .max)))
        }
        if self.deadLetterSink != nil {
            session.deadLetterTracker =
                ack.answersBeforeTheSink
                ? DeliveryTracker(recordsResults: false, onFailure: self.logAcceptedFailure(topic: self.config.deadLetter?.topic ?? topic))
                : DeliveryTracker()
        }
        if let span = RequestTracing.startChildSpan("send \(topic)", ofKind: .producer) {
            // OpenTelemetry messaging conventions; the records carry this span's context.
            span.updateAttributes { attributes in
                attributes["messaging.system"] = self.sink.messagingSystem
                attributes["messaging.destination.name"] = topic
                attributes["messaging.operation.type"] = "send"
                attributes["messaging.operation.name"] = "send"
                attributes["sluice.sink"] = self.sink.name
            }
            session.span = span
            session.traceHeaders = RequestTracing.headers(of: span).map { EventHeader(name: $0.name, value: $0.value) }
        }
        return session
    }

    private func logAcceptedFailure(topic: String) -> @Sendable (Int, DeliveryFailure) -> Void {
        let logger = self.logger
        let sink = self.sink.name
        return { index, failure in
            logger.error(
                "event accepted with ack=accepted was not delivered",
                metadata: ["sink": "\(sink)", "topic": "\(topic)", "event": "\(index)", "code": "\(failure.code)", "reason": "\(failure.message)"])
        }
    }
}

/// One request's events: keys and headers set, limits kept, handed to the sink, each event's
/// fate collected in order.
public struct IngestSession: Sendable {
    public let pipeline: IngestPipeline
    public let topic: String
    public let tracker: DeliveryTracker
    let requestKey: ByteBuffer?
    let defaultKey: ByteBuffer?
    let headers: [EventHeader]
    /// Events handed to the sink (including any it refused).
    public private(set) var sent = 0
    /// Bytes of the events handed to the sink (value, key and headers: `Event.size`).
    public private(set) var sentBytes = 0
    /// Events the sink took into its queue.
    public private(set) var queued = 0
    /// Result slots taken: one per event sent or failed alone.
    public private(set) var reserved = 0
    /// Set when the sink's queue stayed full past max_wait: the request stops.
    public private(set) var saturated: DeliveryFailure? {
        didSet { self.isStopped = self.saturated != nil || self.failure != nil }
    }
    /// Set when the request broke a rule mid-way (too many events, a bad key): the request stops.
    public private(set) var failure: IngestError? {
        didSet { self.isStopped = self.saturated != nil || self.failure != nil }
    }
    /// The producer span of the request's send (tracing on), ended once its events' fate is known.
    var span: (any Span)?
    /// The span's W3C trace context: every event carries it as record headers, in place of any
    /// the client sent under those names.
    var traceHeaders: [EventHeader] = []
    /// With `dead_letter`: the dead letters' own results, and for each its slot among the
    /// request's results and the failure that sent it there.
    var deadLetterTracker: DeliveryTracker?
    var deadLetters: [(slot: Int, letter: Int, failure: DeliveryFailure)] = []
    /// With `dead_letter` and results awaited: the events handed to the sink, by their first
    /// slot, kept until their fate is known so one the sink refuses for good can be dead-lettered.
    var sentRuns: [(first: Int, events: [Event])] = []
    /// With `schema: { registry }`: the id that frames this request's events, once looked up.
    var registeredSchemaID: UInt32?
    /// With `ack: spooled`: events go to the spool, not to the sink.
    var spool: Spool?
    /// With `mirror`: where copies of the events the sink takes are offered.
    var mirror: MirrorTarget?
    /// Events offered to the mirror, by outcome (`queued`, `dropped`).
    public private(set) var mirrored: [String: Int] = [:]

    /// Whether the request has stopped (saturated sink or broken rule). Kept as the two are set,
    /// not derived when asked: it is asked before every send, and reading them copies them.
    public private(set) var isStopped = false

    /// What the events not sent after a stop fail with.
    public var stopFailure: DeliveryFailure {
        self.saturated ?? self.failure?.deliveryFailure ?? .notAttempted
    }

    /// Sends `events` (and empties the array). Returns false when the request must stop.
    /// `lines`: each event's NDJSON line, when the body is NDJSON.
    /// An event past max_event_bytes, or (with a route schema) one that breaks the schema, is
    /// refused alone in its place: failed, or dead-lettered when the route has a `dead_letter`.
    public mutating func send(_ events: inout [Event], lines: [Int]?) async -> Bool {
        guard !events.isEmpty, !self.isStopped else { return await self.sendChecked(&events, lines: lines) }
        guard await self.lookUpSchemaID() else {
            self.fail(count: events.count, with: self.stopFailure)
            events.removeAll(keepingCapacity: true)
            return false
        }
        var items: [Item]?
        let first = self.reserved
        for index in events.indices {
            let place = { lines.map { "line \($0[index])" } ?? "event \(first + index)" }
            // (A refused event is as it came: only one that passes is transcoded.)
            guard let failure = self.refusalReason(&events[index], place: place) else {
                items?.append(.send(events[index]))
                continue
            }
            if items == nil { items = events[..<index].map { .send($0) } }
            items?.append(self.refusal(events[index], failure))
        }
        if let items {
            events.removeAll(keepingCapacity: true)
            await self.sendInOrder(items)
            return !self.isStopped
        }
        return await self.sendChecked(&events, lines: lines)
    }

    /// With `schema: { registry }`, looks up the id that frames the events (once per request);
    /// false when it cannot be had — the request stops with why, and nothing is sent.
    private mutating func lookUpSchemaID() async -> Bool {
        guard let registry = self.pipeline.schemaRegistry, self.registeredSchemaID == nil else { return true }
        switch await registry.schemaID(topic: self.topic) {
        case .success(let id):
            self.registeredSchemaID = id
            return true
        case .failure(let error):
            self.failure = error
            return false
        }
    }

    /// Why the gateway refuses `event` before sending it (nil: it goes): past max_event_bytes
    /// (its value, key and headers together), or against the route's schema. `place` names the
    /// event in the message. A schema that transcodes turns a fitting event's value into its
    /// binary form.
    private func refusalReason(_ event: inout Event, place: () -> String) -> DeliveryFailure? {
        let maxEventBytes = self.pipeline.config.maxEventBytes
        let size = event.size
        if size > maxEventBytes {
            return DeliveryFailure(.eventTooLarge, "\(place()) is \(size) bytes, more than max_event_bytes (\(maxEventBytes))")
        }
        guard let schema = self.pipeline.config.schema else { return nil }
        return Self.check(&event, schema, schemaID: self.registeredSchemaID ?? schema.schemaID, place: place())
    }

    /// Why `event` breaks `schema` (nil: it does not); an Avro schema also turns a fitting
    /// event's value into its Avro form. A tombstone (no value) is not checked.
    static func check(_ event: inout Event, _ schema: EventSchema, schemaID: UInt32?, place: String) -> DeliveryFailure? {
        guard !event.valueIsNull else { return nil }
        let parsed: Result<JSONValue, JSONParseError> = event.value.withUnsafeReadableBytes { bytes in
            do throws(JSONParseError) {
                return .success(try JSONParser.parse(bytes))
            } catch {
                return .failure(error)
            }
        }
        switch parsed {
        case .failure(let error):
            return DeliveryFailure(.schemaViolation, "\(place): the route's schema needs a JSON event; this one is not JSON (\(error))")
        case .success(let value):
            if schema.avro != nil || schema.protobuf != nil {
                let encoded = schema.avro?.encode(value) ?? schema.protobuf!.encode(value)
                switch encoded {
                case .success(let bytes):
                    // Confluent's wire format: magic byte 0, the schema id, and for Protobuf the
                    // message's indexes in its file.
                    var framed: [UInt8] = []
                    if let id = schemaID {
                        framed.reserveCapacity(bytes.count + 6)
                        framed.append(0)
                        withUnsafeBytes(of: id.bigEndian) { framed.append(contentsOf: $0) }
                        if let protobuf = schema.protobuf { framed.append(contentsOf: protobuf.confluentIndexPrefix) }
                    }
                    framed.append(contentsOf: bytes)
                    event.value = ByteBuffer(bytes: framed)
                    return nil
                case .failure(let violation):
                    return DeliveryFailure(.schemaViolation, "\(place): \(violation)")
                }
            }
            guard let jsonSchema = schema.schema else { return nil }
            let violations = jsonSchema.validate(value, maxViolations: schema.maxViolations)
            guard !violations.isEmpty else { return nil }
            return DeliveryFailure(.schemaViolation, "\(place): " + violations.map(\.description).joined(separator: "; "))
        }
    }

    /// Sends events already checked against the route's schema.
    private mutating func sendChecked(_ events: inout [Event], lines: [Int]?) async -> Bool {
        defer { events.removeAll(keepingCapacity: true) }
        guard !events.isEmpty, !self.isStopped else { return !self.isStopped }
        let config = self.pipeline.config
        if self.sent + events.count > config.maxEvents {
            self.failure = .tooManyEvents(limit: config.maxEvents)
            return false
        }
        eventLoop: for index in events.indices {
            if events[index].key == nil {
                if case .jsonPointer(let pointer)? = config.key {
                    let found = events[index].value.withUnsafeReadableBytes { JSONScanner.scalar(at: pointer, in: $0) }
                    switch found {
                    case .value(let bytes):
                        events[index].key = ByteBuffer(bytes: bytes)
                    case .missing:
                        events[index].key = self.defaultKey
                    case .notScalar:
                        let place = lines.map { "line \($0[index])" } ?? "event \(self.sent + index)"
                        self.failure = IngestError(
                            .invalidKey,
                            "\(place): the key pointer points at an object, array or null; it must point at a string, number or boolean")
                        // Send the events before this one; drop the rest of the request.
                        events.removeSubrange(index...)
                        break eventLoop
                    }
                } else {
                    events[index].key = self.requestKey
                }
            }
            if !self.headers.isEmpty { events[index].headers = self.headers }
            if !self.traceHeaders.isEmpty {
                events[index].headers.removeAll { RequestTracing.headerNames.contains($0.name.lowercased()) }
                events[index].headers.append(contentsOf: self.traceHeaders)
            }
        }
        guard !events.isEmpty else { return false }
        let first = self.tracker.reserve(events.count)
        self.reserved += events.count
        // max_wait bounds each wait for room, not the whole (possibly long) upload; an operator's
        // override for the sink (PATCH /sinks/{name}) wins over the route's.
        let deadline = ContinuousClock.now + (self.pipeline.sink.budget.maxWaitOverride ?? config.maxWait)
        if let spool = self.spool {
            let queuedBefore = self.queued
            let spooled = await self.spool(events, into: spool, first: first, deadline: deadline)
            if self.queued > queuedBefore { await self.offerToMirror(events[...]) }  // all or none
            return spooled
        }
        let taken = await self.pipeline.sink.enqueue(events, topic: self.topic, tracker: self.tracker, firstIndex: first, deadline: deadline)
        await self.offerToMirror(events[..<taken])
        self.sent += events.count
        for event in events { self.sentBytes += event.size }
        self.queued += taken
        if self.pipeline.deadLetterSink != nil, self.tracker.recordsResults { self.sentRuns.append((first, events)) }
        if taken < events.count {
            self.saturated = .queueFull(sink: self.pipeline.sink.name)
            return false
        }
        return self.failure == nil
    }

    /// Offers copies of `events` (those the route's sink took) to the mirror, or a random
    /// fraction of them, without waiting: what it has no room for now is dropped and counted.
    private mutating func offerToMirror(_ events: ArraySlice<Event>) async {
        guard var mirror = self.mirror, !events.isEmpty else { return }
        var copies: [Event] = []
        if mirror.fraction >= 1 {
            copies = Array(events)
        } else {
            copies.reserveCapacity(Int(Double(events.count) * mirror.fraction) + 1)
            for event in events where mirror.random.nextUnit() < mirror.fraction { copies.append(event) }
            self.mirror = mirror
        }
        guard !copies.isEmpty else { return }
        let first = mirror.tracker.reserve(copies.count)
        let taken = await mirror.sink.enqueue(copies, topic: mirror.topic, tracker: mirror.tracker, firstIndex: first, deadline: .now)
        for slot in (first + taken)..<(first + copies.count) { mirror.tracker.complete(slot, with: .failed(.queueFull(sink: mirror.sink.name))) }
        if taken > 0 { self.mirrored["queued", default: 0] += taken }
        if taken < copies.count { self.mirrored["dropped", default: 0] += copies.count - taken }
    }

    /// `ack: spooled`: writes `events` (their slots from `first`) to the spool; they count as
    /// accepted once fsynced. A spool full past max_wait, or that cannot be written, stops the
    /// request with why.
    private mutating func spool(_ events: [Event], into spool: Spool, first: Int, deadline: ContinuousClock.Instant) async -> Bool {
        let topic = self.topic
        let appended = await spool.append(events.map { (topic, $0) }, deadline: deadline)
        self.sent += events.count
        for event in events { self.sentBytes += event.size }
        let slots = first..<(first + events.count)
        switch appended {
        case .success:
            self.queued += events.count
            for slot in slots { self.tracker.complete(slot, with: .delivered(DeliveryReceipt())) }
            return self.failure == nil
        case .failure(let why):
            let failure: DeliveryFailure
            switch why {
            case .full:
                failure = DeliveryFailure(
                    .spoolFull, "the route's spool stayed full (max_bytes \(spool.maxBytes)) past max_wait: its sink is behind; retry later")
            case .failed(let error):
                failure = DeliveryFailure(.spoolWriteFailed, error.isDiskFull ? "the spool's disk is full" : "the spool could not be written")
                self.pipeline.logger.error("spool write failed", metadata: ["directory": "\(spool.directory)", "error": "\(error)"])
            case .closed:
                failure = DeliveryFailure(.sinkShuttingDown, "the gateway is shutting down")
            }
            for slot in slots { self.tracker.complete(slot, with: .failed(failure)) }
            self.saturated = failure
            return false
        }
    }

    /// Sends `items` in request order, each in its place: runs of events go to the sink
    /// together, a failure (an event refused before sending) fails alone between them. Once the
    /// request stops (the sink stayed full past max_wait, a rule broken), the items not sent
    /// fail with why it stopped. Every item gets its result slot, in order.
    public mutating func send(inOrder items: [Result<Event, DeliveryFailure>]) async {
        if !self.isStopped, items.contains(where: { (try? $0.get()) != nil }), !(await self.lookUpSchemaID()) {
            return self.fail(count: items.count, with: self.stopFailure)
        }
        var checked: [Item] = []
        checked.reserveCapacity(items.count)
        let first = self.reserved
        for (index, item) in items.enumerated() {
            switch item {
            case .success(let event):
                var checkedEvent = event
                if let failure = self.refusalReason(&checkedEvent, place: { "event \(first + index)" }) {
                    checked.append(self.refusal(event, failure))
                } else {
                    checked.append(.send(checkedEvent))
                }
            case .failure(let failure):
                checked.append(.fail(failure))
            }
        }
        await self.sendInOrder(checked)
    }

    /// An event in a request, as the session handles it.
    enum Item {
        case send(Event)
        case fail(DeliveryFailure)
        /// Refused by the gateway, to the route's dead-letter destination.
        case deadLetter(Event, DeliveryFailure)
    }

    /// What becomes of an event the gateway refuses: a dead letter when the route has one.
    private func refusal(_ event: Event, _ failure: DeliveryFailure) -> Item {
        self.pipeline.deadLetterSink == nil ? .fail(failure) : .deadLetter(event, failure)
    }

    private mutating func sendInOrder(_ items: [Item]) async {
        let first = self.reserved
        var run: [Event] = []
        run.reserveCapacity(items.count)
        for item in items where !self.isStopped {
            switch item {
            case .send(let event):
                run.append(event)
            case .fail(let failure):
                _ = await self.sendChecked(&run, lines: nil)
                self.fail(count: 1, with: failure)
            case .deadLetter(let event, let failure):
                _ = await self.sendChecked(&run, lines: nil)
                await self.deadLetter(event, failure)
            }
        }
        _ = await self.sendChecked(&run, lines: nil)
        let placed = self.reserved - first
        if placed < items.count { self.fail(count: items.count - placed, with: self.stopFailure) }
    }

    /// Fails `count` events without sending them (an event too large among good ones, or every
    /// event of a request whose topic is refused); the rest of the request goes on.
    public mutating func fail(count: Int, with failure: DeliveryFailure) {
        guard count > 0 else { return }
        let first = self.tracker.reserve(count)
        self.reserved += count
        for slot in first..<(first + count) { self.tracker.complete(slot, with: .failed(failure)) }
    }

    /// Sends `event` to the route's dead-letter destination in place of failing it with
    /// `failure`: with `sluice-*` headers saying why and whence, or (a sink without headers) as a
    /// JSON envelope. Its slot among the request's results fails with `failure` until the dead
    /// letter's own fate replaces it (`results`).
    private mutating func deadLetter(_ event: Event, _ failure: DeliveryFailure) async {
        guard let sink = self.pipeline.deadLetterSink, let config = self.pipeline.config.deadLetter, let letters = self.deadLetterTracker else {
            return self.fail(count: 1, with: failure)
        }
        self.fail(count: 1, with: failure)
        let slot = self.reserved - 1
        let letter = self.letter(for: event, failure, envelope: config.envelope)
        let index = letters.reserve(1)
        let deadline = ContinuousClock.now + (sink.budget.maxWaitOverride ?? self.pipeline.config.maxWait)
        _ = await sink.enqueue([letter], topic: config.topic, tracker: letters, firstIndex: index, deadline: deadline)
        self.deadLetters.append((slot, index, failure))
    }

    /// The dead letter of `event`, with the request's key and headers where it has none.
    private func letter(for event: Event, _ failure: DeliveryFailure, envelope: Bool) -> Event {
        self.pipeline.letter(for: event, topic: self.topic, failure, envelope: envelope, key: self.requestKey, headers: self.headers)
    }

    /// Dead-letters every sent event the sink refused for good (a failure that is not
    /// retryable): their slots in `results` become the dead letters' receipts, or keep their
    /// failure saying the dead-letter sink did not take them either.
    private func deadLetterRefusedBySink(_ results: inout DeliveryResults, sink: any Sink, config: DeadLetterConfig) async {
        let letters = DeliveryTracker()
        var sent: [(slot: Int, letter: Int, failure: DeliveryFailure)] = []
        for run in self.sentRuns {
            for (offset, event) in run.events.enumerated() {
                guard case .failed(let failure) = results[run.first + offset], !failure.isRetryable else { continue }
                let index = letters.reserve(1)
                let deadline = ContinuousClock.now + (sink.budget.maxWaitOverride ?? self.pipeline.config.maxWait)
                _ = await sink.enqueue([self.letter(for: event, failure, envelope: config.envelope)], topic: config.topic, tracker: letters,
                    firstIndex: index, deadline: deadline)
                sent.append((run.first + offset, index, failure))
            }
        }
        guard !sent.isEmpty else { return }
        letters.seal()
        Self.settle(&results, sent, await letters.results(settledBy: sink), sink: sink, topic: config.topic)
    }

    /// Puts each dead letter's fate in its event's slot.
    private static func settle(
        _ results: inout DeliveryResults, _ letters: [(slot: Int, letter: Int, failure: DeliveryFailure)], _ outcomes: DeliveryResults,
        sink: any Sink, topic: String
    ) {
        for (slot, letter, failure) in letters {
            switch outcomes[letter] {
            case .delivered(var receipt):
                receipt.deadLetter = DeadLetterNote(sink: sink.name, topic: topic, failure: failure)
                results.replace(slot, with: .delivered(receipt))
            case .failed(let refused):
                var kept = failure
                kept.message += " (and the dead-letter sink did not take it: \(refused.message))"
                results.replace(slot, with: .failed(kept))
            }
        }
    }

    /// The events of `results` settled as dead letters, by the code that sent them there.
    public func deadLettered(in results: DeliveryResults) -> [String: Int] {
        var counts: [String: Int] = [:]
        guard self.pipeline.deadLetterSink != nil else { return counts }
        for result in results {
            if case .delivered(let receipt) = result, let note = receipt.deadLetter { counts[note.failure.code, default: 0] += 1 }
        }
        return counts
    }

    /// Every event's fate, once known — or, for events the sink has not settled within its
    /// settle timeout, `delivery_unconfirmed`. No event can be added after this. A dead letter
    /// that landed is a receipt with its `deadLetter` note; one that did not keeps its failure,
    /// saying so.
    public func results() async -> DeliveryResults {
        self.tracker.seal()
        self.mirror?.tracker.seal()
        var results = await self.tracker.results(settledBy: self.pipeline.sink)
        if let sink = self.pipeline.deadLetterSink, let config = self.pipeline.config.deadLetter {
            if !self.deadLetters.isEmpty, let letters = self.deadLetterTracker {
                letters.seal()
                Self.settle(&results, self.deadLetters, await letters.results(settledBy: sink), sink: sink, topic: config.topic)
            }
            if !self.sentRuns.isEmpty { await self.deadLetterRefusedBySink(&results, sink: sink, config: config) }
        }
        if let span = self.span { self.end(span, results: results) }
        return results
    }

    /// Ends the request without waiting for results (ack: accepted).
    public func seal() {
        self.tracker.seal()
        self.mirror?.tracker.seal()
        self.deadLetterTracker?.seal()
        if let span = self.span {
            if self.queued > 1 { span.attributes["messaging.batch.message_count"] = self.queued }
            if self.queued < self.reserved { span.setStatus(SpanStatus(code: .error, message: self.stopFailure.code)) }
            span.end()
        }
    }

    /// Ends the producer span with what the backend said: the count, and where a single event
    /// landed.
    private func end(_ span: any Span, results: DeliveryResults) {
        var failure: DeliveryFailure?
        for case .failed(let failed) in results {
            failure = failed
            break
        }
        span.updateAttributes { attributes in
            if results.count > 1 { attributes["messaging.batch.message_count"] = results.count }
            if results.count == 1, case .delivered(let receipt) = results[0] {
                if let partition = receipt.partition { attributes["messaging.destination.partition.id"] = String(partition) }
                if let offset = receipt.offset { attributes["messaging.kafka.offset"] = Int(offset) }
                if let shard = receipt.shardID { attributes["messaging.destination.partition.id"] = shard }
            }
        }
        if let failure { span.setStatus(SpanStatus(code: .error, message: failure.code)) }
        span.end()
    }
}

extension IngestPipeline {
    /// The dead letter of `event` (bound for `topic`): the event with `sluice-*` headers saying
    /// why and whence, or (a sink without headers) a JSON envelope around it. `key` and
    /// `headers`: the event's own when it has none.
    func letter(
        for event: Event, topic: String, _ failure: DeliveryFailure, envelope: Bool, key: ByteBuffer? = nil, headers: [EventHeader] = []
    ) -> Event {
        var letter = event
        if letter.key == nil { letter.key = key }
        let why = [
            EventHeader(name: "sluice-error-code", value: failure.code), EventHeader(name: "sluice-error-message", value: failure.message),
            EventHeader(name: "sluice-original-topic", value: topic), EventHeader(name: "sluice-route", value: self.routeName),
        ]
        if envelope {
            letter = Event(value: ByteBuffer(bytes: Self.envelope(event, why)), key: letter.key)
        } else {
            letter.headers = (event.headers.isEmpty ? headers : event.headers) + why
        }
        return letter
    }

    /// `{"sluice_dead_letter":{"error_code",…},"value":<the event, as JSON when it is JSON>}`.
    static func envelope(_ event: Event, _ why: [EventHeader]) -> [UInt8] {
        var out: [UInt8] = Array(#"{"sluice_dead_letter":{"#.utf8)
        for (position, header) in why.enumerated() {
            if position > 0 { out.append(UInt8(ascii: ",")) }
            JSONString.append(Array(header.name.dropFirst("sluice-".count).replacingOccurrences(of: "-", with: "_").utf8), to: &out)
            out.append(UInt8(ascii: ":"))
            JSONString.append(Array(header.value.utf8), to: &out)
        }
        out.append(contentsOf: Array("},".utf8))
        let isJSON = event.value.withUnsafeReadableBytes { (try? JSONParser.parse($0)) != nil }
        if isJSON {
            out.append(contentsOf: Array(#""value":"#.utf8))
            out.append(contentsOf: event.value.readableBytesView)
        } else {
            out.append(contentsOf: Array(#""value_base64":""#.utf8))
            event.value.withUnsafeReadableBytes { Base64.append($0, to: &out) }
            out.append(UInt8(ascii: "\""))
        }
        out.append(UInt8(ascii: "}"))
        return out
    }
}

/// Where a session offers copies of its events (`mirror`), and its own dice.
struct MirrorTarget: Sendable {
    let sink: any Sink
    let topic: String
    let fraction: Double
    let tracker: DeliveryTracker
    var random: SplitMix64
}

/// A small, fast generator for per-event sampling (SplitMix64): the system generator costs a
/// system call per number.
struct SplitMix64: Sendable {
    private var state: UInt64

    init(seed: UInt64) {
        self.state = seed
    }

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A number in [0, 1).
    mutating func nextUnit() -> Double {
        Double(self.next() >> 11) * 0x1.0p-53
    }
}
