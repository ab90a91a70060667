import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceCore
import SluiceIngest

extension IngestHandler {
    /// Confluent REST Proxy v3 produce (`api: confluent_v3`):
    /// `POST {prefix}/v3/clusters/{cluster_id}/topics/{topic_name}/records` — one record, or a
    /// stream of concatenated records answered by a stream of delivery reports, one per record
    /// in order, each written as soon as its record has settled while the rest of the body still
    /// flows (full duplex) — and `.../records:batch` (`entries[]`, answered 207).
    func respondConfluentV3(to request: HTTPRequest, body: inout RequestBody, facts: inout ExchangeFacts) async -> HTTPResponse {
        let prefix = self.pathPrefix ?? "/"
        var rest = Substring(request.path).dropFirst(prefix.hasSuffix("/") ? prefix.count - 1 : prefix.count)
        if rest.isEmpty { rest = "/" }
        guard let target = ConfluentREST.v3Target(rest) else {
            return .confluentError(status: 404, errorCode: 404, message: "HTTP 404 Not Found", contentType: "application/json")
        }
        guard request.method == "POST" else {
            return .confluentError(status: 405, errorCode: 405, message: "HTTP 405 Method Not Allowed", headers: ["allow": "POST"], contentType: "application/json")
        }
        guard target.clusterID == self.config.clusterID else {
            return .confluentError(status: 404, errorCode: 404, message: "Cluster \(target.clusterID) cannot be found.", contentType: "application/json")
        }
        if self.pipeline.problem(topic: target.topic) != nil {
            return .confluentError(status: 404, errorCode: 404, message: "Topic \(target.topic) cannot be found.", contentType: "application/json")
        }
        guard MediaType.essence(of: request.header("content-type")) == "application/json" else {
            return .confluentError(status: 415, errorCode: 415, message: "HTTP 415 Unsupported Media Type: send application/json", contentType: "application/json")
        }
        switch target.operation {
        case .batch:
            return await self.respondConfluentV3Batch(request, target: target, body: &body, facts: &facts)
        case .records where request.header("content-length") != nil:
            return await self.respondConfluentV3Sized(request, target: target, body: &body, facts: &facts)
        case .records:
            // Streaming mode: the body is read by the answer as it streams: the listener hands it over, the
            // client invited first (an interim 100 may not follow the answer's head).
            do {
                try await body.inviteBody()
            } catch {
                return .confluentError(status: 400, errorCode: 400, message: "could not read the request body", contentType: "application/json")
            }
            let stream = V3ReportStream(handler: self, topic: target.topic, headers: self.recordHeaders(request), body: body)
            body = RequestBody(chunks: [])
            var response = HTTPResponse(status: .ok, headers: ["content-type": "application/json"])
            response.stream = stream
            response.readsRequestBody = true
            response.bodyTally = stream.tally
            return response
        }
    }

    private func respondConfluentV3Batch(
        _ request: HTTPRequest, target: ConfluentREST.V3Target, body: inout RequestBody, facts: inout ExchangeFacts
    ) async -> HTTPResponse {
        let whole: ByteBuffer
        do {
            whole = try await self.readWholeBody(request, &body)
        } catch {
            switch error {
            case .tooLarge: return Self.confluentBodyTooLarge(self.config.maxBodyBytes, contentType: "application/json")
            case .unreadable: return .confluentError(status: 400, errorCode: 400, message: "could not read the request body", contentType: "application/json")
            }
        }
        let entries: [ConfluentREST.V3BatchEntry]
        do {
            entries = try ConfluentREST.decodeV3Batch(
                whole, maxEntries: min(self.config.maxEvents, Self.v3BatchMaximumEntries), maxEventBytes: self.pipeline.largestDecodedEvent, now: WallClock.milliseconds())
        } catch {
            return .confluentError(status: error.status, errorCode: error.errorCode, message: error.message, contentType: "application/json")
        }
        let session = await self.sendV3Records(entries.map(\.record), topic: target.topic, headers: self.recordHeaders(request))
        facts.events = session.sent
        facts.eventBytes = session.sentBytes
        facts.mirror(session.mirrored)
        let results = await session.results().deadLettersAsFailures()
        facts.reject(results.summary())

        var json = JSONWriter()
        json.openObject()
        json.key("successes")
        json.openArray()
        for (index, entry) in entries.enumerated() {
            guard case .success(let record) = entry.record, case .delivered(let receipt) = results[index] else { continue }
            Self.encodeV3Report(record, receipt: receipt, clusterID: target.clusterID, topic: target.topic, id: entry.id, into: &json)
        }
        json.closeArray()
        json.key("failures")
        json.openArray()
        for (index, entry) in entries.enumerated() {
            let failure: (Int, String)
            switch (entry.record, results[index]) {
            case (.failure(let error), _): failure = (error.errorCode, error.message)
            case (.success, .failed(let delivery)): failure = (ConfluentREST.errorCode(of: delivery), delivery.message)
            case (.success, .delivered): continue
            }
            json.object {
                $0.field("id", entry.id)
                $0.field("error_code", failure.0)
                $0.field("message", failure.1)
            }
        }
        json.closeArray()
        json.closeObject()
        return .json(HTTPResponseStatus(statusCode: 207, reasonPhrase: "Multi-Status"), json)
    }

    /// REST Proxy's default `api.v3.produce.batch.maximum.entries`.
    static let v3BatchMaximumEntries = 10


    /// One delivery report: `{"error_code":200,"cluster_id":…,…}` (with `id` in a batch).
    static func encodeV3Report(
        _ record: ConfluentREST.V3Record, receipt: DeliveryReceipt, clusterID: String, topic: String, id: String?, into json: inout JSONWriter
    ) {
        json.object { json in
            if let id { json.field("id", id) } else { json.field("error_code", 200) }
            json.field("cluster_id", clusterID)
            json.field("topic_name", topic)
            if let partition = receipt.partition { json.field("partition_id", partition) }
            if let offset = receipt.offset { json.field("offset", offset) }
            json.field("timestamp", RFC3339.string(milliseconds: record.timestamp))
            for (name, data) in [("key", record.key), ("value", record.value)] {
                json.key(name)
                if let data {
                    json.object {
                        $0.field("size", data.size)
                        $0.field("type", data.type.rawValue)
                    }
                } else {
                    json.null()
                }
            }
        }
    }
}

/// The answer of a v3 `records` request: reads the request body as it streams (concatenated
/// records), hands each chunk's records to the sink, and yields each record's delivery report
/// in order as soon as it has settled. At most `maxPendingRecords` records wait for their
/// reports to be read; past that the body is not read (the client is slowed, nothing grows).
struct V3ReportStream: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    typealias Failure = any Error

    static let maxPendingRecords = 1024

    let handler: IngestHandler
    let topic: String
    let headers: [EventHeader]
    let body: UnsafeTransfer<RequestBody>
    /// Events and bytes handed over, for the route's rate limits once the stream ends.
    let tally = StreamTally()

    init(handler: IngestHandler, topic: String, headers: [EventHeader], body: RequestBody) {
        self.handler = handler
        self.topic = topic
        self.headers = headers
        self.body = UnsafeTransfer(body)
    }

    typealias Batch = V3Batch

    func makeAsyncIterator() -> Iterator {
        let (batches, continuation) = AsyncStream<Batch>.makeStream()
        let room = PendingRoom(limit: Self.maxPendingRecords)
        let producer = Task { await self.produce(into: continuation, room: room) }
        continuation.onTermination = { _ in
            producer.cancel()
            room.close()
        }
        return Iterator(batches: batches.makeAsyncIterator(), room: room, clusterID: self.handler.config.clusterID, topic: self.topic, producer: producer)
    }

    struct Iterator: AsyncIteratorProtocol {
        var batches: AsyncStream<Batch>.AsyncIterator
        let room: PendingRoom
        let clusterID: String
        let topic: String
        let producer: Task<Void, Never>

        mutating func next() async throws -> ByteBuffer? {
            guard let batch = await self.batches.next(isolation: #isolation) else { return nil }
            let out = await batch.reports(clusterID: self.clusterID, topic: self.topic)
            self.room.release(batch.records.count)
            return ByteBuffer(bytes: out)
        }
    }

    /// Reads the body, decodes its records and sends them, a chunk's records at a time.
    private func produce(into continuation: AsyncStream<Batch>.Continuation, room: PendingRoom) async {
        var body = self.body.take()
        var charged = 0
        defer {
            self.tally.add(events: 0, bytes: body.bytesRead - charged)
            self.tally.finish()
            continuation.finish()
        }
        let config = self.handler.config
        // A record's JSON: its data (base64 at 4/3) and headers, with room for the envelope.
        // With a dead_letter a record past max_event_bytes is read whole, up to max_body_bytes.
        let largest = self.handler.pipeline.largestDecodedEvent
        var splitter = ConcatenatedJSONSplitter(maxValueBytes: largest == config.maxEventBytes ? largest * 2 + 64 * 1024 : largest)
        var seen = 0
        while !Task.isCancelled {
            var texts: [ByteBuffer] = []
            var ending: ConfluentREST.RecordError?
            do {
                guard let chunk = try await body.next() else {
                    do throws(ConcatenatedJSONSplitter.SplitError) { try splitter.finish() } catch {
                        ending = ConfluentREST.RecordError(400, "the body ended inside a record")
                    }
                    if let ending { continuation.yield(Batch(session: nil, records: [.failure(ending)])) }
                    return
                }
                do throws(ConcatenatedJSONSplitter.SplitError) { try splitter.feed(chunk, into: &texts) } catch {
                    ending = error == .tooLarge
                        ? ConfluentREST.RecordError(413, "a record is larger than the route allows (max_event_bytes \(config.maxEventBytes))")
                        : ConfluentREST.RecordError(400, "the body is not a stream of JSON records")
                }
            } catch {
                return  // the client went away or broke the protocol mid-body
            }
            if seen + texts.count > config.maxEvents, ending == nil {
                texts.removeLast(seen + texts.count - config.maxEvents)
                ending = ConfluentREST.RecordError(413, "the stream holds more than max_events (\(config.maxEvents)) records")
            }
            seen += texts.count
            if !texts.isEmpty {
                await room.take(texts.count)
                let records = self.handler.decodeV3Records(texts)
                let session = await self.handler.sendV3Records(records, topic: self.topic, headers: self.headers)
                self.tally.add(events: session.sent, eventBytes: session.sentBytes, bytes: body.bytesRead - charged)
                charged = body.bytesRead
                continuation.yield(V3Batch(session: session, records: records))
            }
            if let ending {
                continuation.yield(Batch(session: nil, records: [.failure(ending)]))
                return
            }
        }
    }
}

/// Records sent together (a read of a streamed body, or a whole sized one): their session, whose
/// results are in record order, and each record's decoding.
struct V3Batch: Sendable {
    var session: IngestSession?
    var records: [Result<ConfluentREST.V3Record, ConfluentREST.RecordError>]

    /// Each record's delivery report, in order, as concatenated JSON, once all have settled.
    func reports(clusterID: String, topic: String) async -> [UInt8] {
        var out: [UInt8] = []
        let results = await self.session?.results().deadLettersAsFailures()
        for (slot, record) in self.records.enumerated() {
            switch (record, results?[slot]) {
            case (.success(let decoded), .delivered(let receipt)?):
                var json = JSONWriter()
                IngestHandler.encodeV3Report(decoded, receipt: receipt, clusterID: clusterID, topic: topic, id: nil, into: &json)
                out.append(contentsOf: json.bytes)
            case (.success, .failed(let failure)?):
                Self.error(ConfluentREST.errorCode(of: failure), failure.message, into: &out)
            case (.failure(let error), _):
                Self.error(error.errorCode, error.message, into: &out)
            case (.success, nil):
                Self.error(500, "not sent", into: &out)
            }
        }
        return out
    }

    static func error(_ code: Int, _ message: String, into out: inout [UInt8]) {
        var json = JSONWriter()
        json.object {
            $0.field("error_code", code)
            $0.field("message", message)
        }
        out.append(contentsOf: json.bytes)
    }
}

extension IngestHandler {
    /// Decodes `texts`, one v3 record each (now the timestamp of those that name none).
    func decodeV3Records(_ texts: [ByteBuffer]) -> [Result<ConfluentREST.V3Record, ConfluentREST.RecordError>] {
        let now = WallClock.milliseconds()
        return texts.map { ConfluentREST.decodeV3Record($0, maxEventBytes: self.pipeline.largestDecodedEvent, now: now) }
    }

    /// Hands `records` to the sink in order, each with the route's record headers, a bad record
    /// failed alone; once the sink stays full past max_wait, the rest fail with that.
    func sendV3Records(
        _ records: [Result<ConfluentREST.V3Record, ConfluentREST.RecordError>], topic: String, headers: [EventHeader]
    ) async -> IngestSession {
        var session = self.pipeline.session(topic: topic, requestKey: nil, defaultKey: nil, headers: [], ack: .sink)
        await session.send(
            inOrder: records.map { record in
                switch record {
                case .success(let decoded):
                    var event = decoded.event
                    event.headers.append(contentsOf: headers)
                    return .success(event)
                case .failure(let error):
                    return .failure(DeliveryFailure(code: "invalid_record", message: error.message, isRetryable: false, httpStatus: error.errorCode))
                }
            })
        return session
    }

    /// `records` with a sized body (Content-Length): read whole, answered whole, the connection
    /// kept — the usual one-record request. A chunked body is the streaming mode (full duplex).
    func respondConfluentV3Sized(
        _ request: HTTPRequest, target: ConfluentREST.V3Target, body: inout RequestBody, facts: inout ExchangeFacts
    ) async -> HTTPResponse {
        let whole: ByteBuffer
        do {
            whole = try await self.readWholeBody(request, &body)
        } catch {
            switch error {
            case .tooLarge: return Self.confluentBodyTooLarge(self.config.maxBodyBytes, contentType: "application/json")
            case .unreadable: return .confluentError(status: 400, errorCode: 400, message: "could not read the request body", contentType: "application/json")
            }
        }
        var splitter = ConcatenatedJSONSplitter(maxValueBytes: self.config.maxBodyBytes)
        var texts: [ByteBuffer] = []
        var ending: ConfluentREST.RecordError?
        do throws(ConcatenatedJSONSplitter.SplitError) {
            try splitter.feed(whole, into: &texts)
            try splitter.finish()
        } catch {
            ending = error == .truncated
                ? ConfluentREST.RecordError(400, "the body ended inside a record")
                : ConfluentREST.RecordError(400, "the body is not a stream of JSON records")
        }
        if texts.count > self.config.maxEvents {
            texts.removeLast(texts.count - self.config.maxEvents)
            ending = ConfluentREST.RecordError(413, "the body holds more than max_events (\(self.config.maxEvents)) records")
        }
        guard !texts.isEmpty || ending != nil else {
            return .confluentError(status: 422, errorCode: 422, message: "Payload error. Request body is empty. Data is required.", contentType: "application/json")
        }
        var out: [UInt8] = []
        if !texts.isEmpty {
            let records = self.decodeV3Records(texts)
            let session = await self.sendV3Records(records, topic: target.topic, headers: self.recordHeaders(request))
            facts.events = session.sent
            facts.eventBytes = session.sentBytes
            facts.mirror(session.mirrored)
            out = await V3Batch(session: session, records: records).reports(clusterID: target.clusterID, topic: target.topic)
        }
        if let ending { V3Batch.error(ending.errorCode, ending.message, into: &out) }
        return HTTPResponse(status: .ok, headers: ["content-type": "application/json"], body: ByteBuffer(bytes: out))
    }
}

/// How many records may wait for their reports to be read: the reader of the body takes room
/// before sending, the writer of the answer gives it back. A chunk with more records than the
/// limit goes alone, once nothing else is pending.
final class PendingRoom: Sendable {
    private struct State {
        var pending = 0
        var closed = false
        var waiter: (count: Int, continuation: CheckedContinuation<Void, Never>)?
    }

    private let limit: Int
    private let state = NIOLockedValueBox(State())

    init(limit: Int) {
        self.limit = limit
    }

    /// Waits for room for `count` records; returns at once after `close()`.
    func take(_ count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now: Bool = self.state.withLockedValue { state in
                if state.closed || state.pending == 0 || state.pending + count <= self.limit {
                    state.pending += count
                    return true
                }
                state.waiter = (count, continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    func release(_ count: Int) {
        let waiter: CheckedContinuation<Void, Never>? = self.state.withLockedValue { state in
            state.pending -= count
            guard let waiter = state.waiter, state.pending == 0 || state.pending + waiter.count <= self.limit else { return nil }
            state.waiter = nil
            state.pending += waiter.count
            return waiter.continuation
        }
        waiter?.resume()
    }

    /// The answer is gone: nobody will give room back; let the reader go.
    func close() {
        let waiter = self.state.withLockedValue { state in
            state.closed = true
            defer { state.waiter = nil }
            return state.waiter?.continuation
        }
        waiter?.resume()
    }
}

/// Moves a value that is not Sendable to the one task that uses it from then on.
struct UnsafeTransfer<Value>: @unchecked Sendable {
    private let box: Box

    final class Box: @unchecked Sendable {
        var value: Value?
        init(_ value: Value) { self.value = value }
    }

    init(_ value: Value) { self.box = Box(value) }

    func take() -> Value {
        let value = self.box.value!
        self.box.value = nil
        return value
    }
}
