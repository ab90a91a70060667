import Logging
import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceCore
import SluiceIngest

/// The HTTP adapter of the ingest pipeline: turns one request into events as the body streams
/// (NDJSON, JSON, raw), hands them to the pipeline, and answers with the fate of every event
/// (see `AckMode`).
/// A class, as the pipeline is: the route table hands it to every request.
public final class IngestHandler: Sendable {
    public let pipeline: IngestPipeline
    public var routeName: String { self.pipeline.routeName }
    public var config: IngestConfig { self.pipeline.config }
    public var sink: any Sink { self.pipeline.sink }

    /// For APIs whose own paths follow the route's match (`api: confluent_v2`, `confluent_v3`): the route's
    /// `path_prefix`, which the API's paths come after.
    let pathPrefix: String?

    public convenience init(
        routeName: String, config: IngestConfig, sink: any Sink, deadLetterSink: (any Sink)? = nil, logger: Logger, pathPrefix: String? = nil
    ) {
        self.init(
            pipeline: IngestPipeline(routeName: routeName, config: config, sink: sink, deadLetterSink: deadLetterSink, logger: logger),
            pathPrefix: pathPrefix)
    }

    public init(pipeline: IngestPipeline, pathPrefix: String? = nil) {
        self.pipeline = pipeline
        self.pathPrefix = pathPrefix
    }

    public func handle(_ request: HTTPRequest, parameters: [String: String], body: inout RequestBody) async -> HandledRequest {
        var facts = ExchangeFacts(sink: self.sink.name)
        var response: HTTPResponse
        switch self.config.api {
        case .sluice: response = await self.respond(to: request, parameters: parameters, body: &body, facts: &facts)
        case .confluentV2: response = await self.respondConfluentV2(to: request, body: &body, facts: &facts)
        case .cloudevents: response = await self.respondCloudEvents(to: request, parameters: parameters, body: &body, facts: &facts)
        case .confluentV3: response = await self.respondConfluentV3(to: request, body: &body, facts: &facts)
        }
        response.facts = facts
        return HandledRequest(response: response, eventCount: facts.events, bytesRead: body.bytesRead)
    }

    /// The answer; `facts`: the events handed to the sink, and those that failed.
    private func respond(
        to request: HTTPRequest, parameters: [String: String], body: inout RequestBody, facts: inout ExchangeFacts
    ) async -> HTTPResponse {
        // Topic: fixed, or from path parameters; checked before any byte of the body is read.
        let topic = self.config.topic.render(parameters)
        if let problem = self.pipeline.problem(topic: topic) {
            return .error(problem.code, message: problem.message)
        }
        if let length = request.header("content-length").flatMap(Int.init), length > self.config.maxBodyBytes {
            return Self.bodyTooLarge(self.config.maxBodyBytes)
        }

        let format = BodyFormat(contentType: request.header("content-type"))
        let requestKey = self.requestKey(request)
        let defaultKey = self.pipeline.defaultKey(parameters)
        if case .jsonPointer = self.config.key, format == .raw {
            return .error(
                .jsonRequired, message: "this route takes the key from a JSON pointer; send application/json or application/x-ndjson")
        }
        var session = self.pipeline.session(
            topic: topic, requestKey: requestKey ?? defaultKey, defaultKey: defaultKey, headers: self.recordHeaders(request), ack: self.config.ack)

        // Read and send.
        var stop: IngestError?
        do {
            switch format {
            case .ndjson:
                var decoder = NDJSONDecoder(maxLineBytes: self.pipeline.largestDecodedEvent)
                var events: [Event] = []
                do {
                    while let chunk = try await body.next() {
                        if body.bytesRead > self.config.maxBodyBytes { throw IngestError.bodyTooLarge(limit: self.config.maxBodyBytes) }
                        try decoder.feed(chunk, into: &events)
                        if !events.isEmpty {
                            let sent = await session.send(&events, lines: decoder.eventLines)
                            decoder.clearEventLines()
                            guard sent else { break }
                        }
                    }
                    if body.isComplete {
                        try decoder.finish(into: &events)
                        _ = await session.send(&events, lines: decoder.eventLines)
                    }
                } catch let error as IngestError {
                    // Every event before the line that stopped the body goes and is answered,
                    // whichever read it came in.
                    if !events.isEmpty { _ = await session.send(&events, lines: decoder.eventLines) }
                    throw error
                }
            case .json, .raw:
                var whole = ByteBuffer()
                while var chunk = try await body.next() {
                    if body.bytesRead > self.config.maxBodyBytes { throw IngestError.bodyTooLarge(limit: self.config.maxBodyBytes) }
                    Self.append(&chunk, to: &whole)
                }
                var events: [Event]
                if format == .json {
                    events = try JSONBodyDecoder.decode(whole, maxEventBytes: self.pipeline.largestDecodedEvent)
                } else {
                    guard whole.readableBytes <= self.pipeline.largestDecodedEvent else {
                        throw IngestError(
                            .eventTooLarge, "the body is one event and is larger than max_event_bytes (\(self.config.maxEventBytes) bytes)")
                    }
                    // An empty body is not an empty event: Kafka would store it as a null value (a tombstone).
                    events = whole.readableBytes == 0 ? [] : [Event(value: whole)]
                }
                _ = await session.send(&events, lines: nil)
            }
        } catch let error as IngestError {
            stop = error
        } catch {
            // The client went away or broke the protocol mid-body.
            stop = IngestError(.bodyReadFailed, "could not read the request body: \(error)")
        }
        return await self.answer(session, stop: stop, request: request, facts: &facts)
    }

    /// Collects a body read whole: a body that comes in one part (the usual small one) is kept
    /// as read, not copied into a buffer of its own.
    @inline(__always)
    static func append(_ chunk: inout ByteBuffer, to whole: inout ByteBuffer) {
        if whole.readableBytes == 0 {
            whole = chunk
        } else {
            whole.writeBuffer(&chunk)
        }
    }

    enum WholeBodyFailure: Error {
        /// Past max_body_bytes (declared or read).
        case tooLarge
        /// The client went away or broke the protocol mid-body.
        case unreadable
    }

    /// The whole body, for APIs whose body is one document: refused past max_body_bytes (a
    /// declared length before any byte is read).
    func readWholeBody(_ request: HTTPRequest, _ body: inout RequestBody) async throws(WholeBodyFailure) -> ByteBuffer {
        if let length = request.header("content-length").flatMap(Int.init), length > self.config.maxBodyBytes { throw .tooLarge }
        var whole = ByteBuffer()
        do {
            while var chunk = try await body.next() {
                if body.bytesRead > self.config.maxBodyBytes { throw WholeBodyFailure.tooLarge }
                Self.append(&chunk, to: &whole)
            }
        } catch let failure as WholeBodyFailure {
            throw failure
        } catch {
            throw .unreadable
        }
        return whole
    }

    /// The key of the request's events from its header or query parameter (`key`), if the route takes one there.
    func requestKey(_ request: HTTPRequest) -> ByteBuffer? {
        switch self.config.key {
        case .header(let name)?: request.header(name).map { ByteBuffer(string: $0) }
        case .query(let name)?: request.queryParameter(name).map { ByteBuffer(string: $0) }
        case .jsonPointer?, nil: nil
        }
    }

    /// The request headers the route copies into record headers (`headers_to_kafka`).
    func recordHeaders(_ request: HTTPRequest) -> [EventHeader] {
        var headers: [EventHeader] = []
        for name in self.config.headersToKafka {
            for value in request.head.headers[name] { headers.append(EventHeader(name: name, value: value)) }
        }
        return headers
    }

    /// The answer once the body is read and its events handed over: the request-level error
    /// (`stop`, or why the session stopped) beside every event's fate, as the route's ack says.
    func answer(_ session: IngestSession, stop: IngestError?, request: HTTPRequest, facts: inout ExchangeFacts) async -> HTTPResponse {
        var stop = stop
        if stop == nil, let failure = session.failure {
            stop = failure
        }
        if stop == nil, session.reserved == 0, session.saturated == nil {
            stop = IngestError(.noEvents, "the body holds no events")
        }

        facts.events = session.sent
        facts.eventBytes = session.sentBytes
        facts.mirror(session.mirrored)
        if self.config.ack.answersBeforeTheSink {
            session.seal()
            facts.reject(session.sent - session.queued, reason: session.stopFailure.code)
            return self.acceptedResponse(session: session, stop: stop)
        }
        let results = await session.results()
        let summary = results.summary()
        facts.reject(summary)
        facts.deadLettered = session.deadLettered(in: results)
        return self.response(
            results: results, summary: summary, stop: stop, saturated: session.saturated, minimal: Self.prefersMinimal(request))
    }

    /// Builds the response from every event's fate: 200 when all were delivered; otherwise
    /// 503 + Retry-After if any failure is retryable, else the failures' 4xx/5xx status.
    /// The body lists every event's result in order — or, with `Prefer: return=minimal`, only the
    /// counts and the failed events with their index. A long list is written out in parts as it
    /// is encoded (the listener sends each part once the previous one has left), so the
    /// response never exists whole in memory.
    private func response(
        results: DeliveryResults, summary: DeliverySummary, stop: IngestError?, saturated: DeliveryFailure?, minimal: Bool
    ) -> HTTPResponse {
        var json = JSONWriter()
        json.openObject()
        if let stop {
            // The request-level error next to the per-event results.
            json.key("error")
            json.object {
                $0.field("code", stop.code.code)
                $0.field("message", stop.message)
            }
        } else if let saturated {
            json.key("error")
            json.object {
                $0.field("code", saturated.code)
                $0.field("message", saturated.message)
                $0.field("sink", self.sink.name)
            }
        }
        json.field("accepted", summary.delivered)
        if summary.failed > 0 { json.field("failed", summary.failed) }
        // Every result; or with return=minimal, the failed ones if there are any.
        let listed = minimal ? summary.failed : results.count
        let hasList = !minimal || summary.failed > 0
        if hasList { json.key(minimal ? "errors" : "results") }
        let body = IngestResultsBody(head: json, results: results, minimal: minimal, hasList: hasList)

        let status: HTTPResponseStatus
        var headers = HTTPHeaders()
        if let stop {
            status = HTTPResponseStatus(statusCode: stop.code.httpStatus)
        } else if summary.failed == 0 {
            status = .ok
        } else if summary.failures.contains(where: { $0.failure.isRetryable }) || saturated != nil {
            status = .serviceUnavailable
        } else {
            status = HTTPResponseStatus(statusCode: summary.failures.map(\.failure.httpStatus).max() ?? 500)
        }
        if status == .serviceUnavailable { headers.add(name: "retry-after", value: "1") }
        if minimal { headers.add(name: "preference-applied", value: "return=minimal") }
        if listed <= IngestResultsBody.wholeUpTo {
            var whole = body
            return .json(status, whole.encodeWhole(), headers: headers)
        }
        headers.add(name: "content-type", value: "application/json")
        var response = HTTPResponse(status: status, headers: headers)
        response.stream = body
        return response
    }

    /// `ack: accepted`: 202 when every event is in the sink's queue; otherwise the error, with
    /// how many events were queued (they will be delivered) and how many were not.
    private func acceptedResponse(session: IngestSession, stop: IngestError?) -> HTTPResponse {
        guard stop != nil || session.saturated != nil else {
            var json = JSONWriter()
            json.object { $0.field("accepted", session.queued) }
            return .json(.accepted, json)
        }
        var json = JSONWriter()
        json.object { json in
            json.key("error")
            if let stop {
                json.object {
                    $0.field("code", stop.code.code)
                    $0.field("message", stop.message)
                }
            } else if let saturated = session.saturated {
                json.object {
                    $0.field("code", saturated.code)
                    $0.field("message", saturated.message)
                    $0.field("sink", self.sink.name)
                }
            }
            json.field("accepted", session.queued)
            json.field("not_accepted", session.sent - session.queued)
        }
        let status = stop.map { HTTPResponseStatus(statusCode: $0.code.httpStatus) } ?? .serviceUnavailable
        return .json(status, json, headers: status == .serviceUnavailable ? ["retry-after": "1"] : [:])
    }

    /// The answer to a body over max_body_bytes; the connection closes, the rest of the body unread.
    static func bodyTooLarge(_ limit: Int) -> HTTPResponse {
        let error = IngestError.bodyTooLarge(limit: limit)
        return .error(error.code, message: error.message, headers: ["connection": "close"])
    }
}

extension IngestHandler {
    /// Whether the client asked for counts only (`Prefer: return=minimal`, RFC 7240).
    static func prefersMinimal(_ request: HTTPRequest) -> Bool {
        // Most requests have no Prefer: asked first, without making an array of values.
        guard request.head.headers.contains(name: "prefer") else { return false }
        for value in request.head.headers["prefer"] {
            for preference in value.split(separator: ",") {
                let token = preference.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
                if token == "return=minimal" { return true }
            }
        }
        return false
    }
}

/// The body of an ingest response after its head (`{"accepted":…,"results":` so far): every
/// event's result, or with `minimal` only the failed ones with their index, then the closing
/// brackets — encoded a part (about 64 KiB) at a time.
struct IngestResultsBody: AsyncSequence, AsyncIteratorProtocol, Sendable {
    typealias Element = ByteBuffer
    typealias Failure = any Error

    /// Lists up to this many results are sent whole, with a content-length.
    static let wholeUpTo = 4096
    static let partBytes = 64 * 1024

    private var json: JSONWriter
    private let results: DeliveryResults
    private let minimal: Bool
    private let hasList: Bool
    private var position = 0
    private var opened = false
    private var finished = false

    init(head: JSONWriter, results: DeliveryResults, minimal: Bool, hasList: Bool) {
        self.json = head
        self.results = results
        self.minimal = minimal
        self.hasList = hasList
    }

    func makeAsyncIterator() -> IngestResultsBody { self }

    mutating func next() async throws -> ByteBuffer? {
        guard !self.finished else { return nil }
        self.encode(upTo: Self.partBytes)
        return ByteBuffer(bytes: self.json.takeBytes())
    }

    /// The whole document at once (short lists).
    mutating func encodeWhole() -> JSONWriter {
        self.encode(upTo: .max)
        return self.json
    }

    /// Encodes results until about `limit` bytes are waiting or the document is complete.
    private mutating func encode(upTo limit: Int) {
        // About 40 bytes per result still to list (`,{"partition":P,"offset":O}` with a 7-digit
        // offset is 33), at most a part's worth: one allocation per part, not a regrowth.
        self.json.reserveCapacity(Swift.min(limit, (self.results.count - self.position) * 40 + 64))
        if !self.opened {
            self.opened = true
            if self.hasList { self.json.openArray() }
        }
        if self.hasList {
            while self.position < self.results.count, self.json.bytes.count < limit {
                if let (partition, offset) = self.results.partitionAndOffset(at: self.position) {
                    // The commonest answer, written without building the event's result.
                    if !self.minimal { Self.encodeDelivered(partition: partition, offset: offset, into: &self.json) }
                    self.position += 1
                    continue
                }
                let result = self.results[self.position]
                if !self.minimal {
                    Self.encode(result, into: &self.json)
                } else if case .failed(let failure) = result {
                    self.json.object {
                        $0.field("index", self.position)
                        Self.encode(failure, into: &$0)
                    }
                }
                self.position += 1
            }
            guard self.position == self.results.count else { return }
            self.json.closeArray()
        }
        self.json.closeObject()
        self.finished = true
    }

    static func encode(_ result: DeliveryResult, into json: inout JSONWriter) {
        json.object { json in
            switch result {
            case .delivered(let receipt):
                guard let note = receipt.deadLetter else {
                    if let targets = receipt.targets {
                        Self.encode(targets, into: &json)
                    } else {
                        Self.encode(receipt, into: &json)
                    }
                    return
                }
                // Settled, but in the route's dead-letter destination: where, and why.
                json.key("dead_letter")
                json.object {
                    $0.field("sink", note.sink)
                    $0.field("topic", note.topic)
                    Self.encode(receipt, into: &$0)
                    $0.key("error")
                    $0.object {
                        $0.field("code", note.failure.code)
                        $0.field("message", note.failure.message)
                    }
                }
            case .failed(let failure):
                Self.encode(failure, into: &json)
                if let targets = failure.targets { Self.encode(targets, into: &json) }
            }
        }
    }

    /// A route with several sinks: `"sinks":[{"sink","topic",<receipt or error>}]`, each target's result.
    static func encode(_ targets: [TargetOutcome], into json: inout JSONWriter) {
        json.key("sinks")
        json.array {
            for target in targets {
                $0.object {
                    $0.field("sink", target.sink)
                    $0.field("topic", target.topic)
                    switch target.result {
                    case .delivered(let receipt): Self.encode(receipt, into: &$0)
                    case .failed(let failure): Self.encode(failure, into: &$0)
                    }
                }
            }
        }
    }

    /// `{"partition":P,"offset":O}`: what `encode(.delivered(DeliveryReceipt(partition:offset:)))` writes.
    static func encodeDelivered(partition: Int32, offset: Int64, into json: inout JSONWriter) {
        json.integerPairObject("partition", Int64(partition), "offset", offset)
    }

    /// A receipt's fields inside an event's object.
    static func encode(_ receipt: DeliveryReceipt, into json: inout JSONWriter) {
        if let partition = receipt.partition { json.field(literal: "partition", partition) }
        if let offset = receipt.offset { json.field(literal: "offset", offset) }
        if let shard = receipt.shardID { json.field(literal: "shard_id", shard) }
        if let sequence = receipt.sequenceNumber { json.field(literal: "sequence_number", sequence) }
    }

    /// `"error":{…}` inside an event's object.
    static func encode(_ failure: DeliveryFailure, into json: inout JSONWriter) {
        json.key("error")
        json.object {
            $0.field("code", failure.code)
            $0.field("message", failure.message)
            $0.field("retryable", failure.isRetryable)
        }
    }
}
