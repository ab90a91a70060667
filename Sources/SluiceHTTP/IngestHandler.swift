import Logging
import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceCore

/// Turns one HTTP request into events, hands them to the route's sink as the body streams,
/// and answers with the fate of every event (see `AckMode`).
public struct IngestHandler: Sendable {
    public let routeName: String
    public let config: IngestConfig
    public let sink: any Sink
    private let logger: Logger

    public init(routeName: String, config: IngestConfig, sink: any Sink, logger: Logger) {
        self.routeName = routeName
        self.config = config
        self.sink = sink
        var logger = logger
        logger[metadataKey: "route"] = "\(routeName)"
        self.logger = logger
    }

    public func handle(_ request: HTTPRequest, parameters: [String: String], body: inout RequestBody) async -> HTTPResponse {
        // Topic: fixed, or from path parameters; checked before any byte of the body is read.
        let topic = self.config.topic.render(parameters)
        if let problem = self.sink.destinationProblem(topic) {
            return .error(.badRequest, code: "invalid_topic", message: problem)
        }
        if let allowed = self.config.topicsAllowed, !allowed.contains(topic) {
            return .error(.notFound, code: "unknown_topic", message: "topic \"\(topic)\" is not served by this route")
        }
        if let length = request.header("content-length").flatMap(Int.init), length > self.config.maxBodyBytes {
            return Self.bodyTooLarge(self.config.maxBodyBytes)
        }

        let format = BodyFormat(contentType: request.header("content-type"))
        let requestKey: ByteBuffer?
        switch self.config.key {
        case .header(let name)?: requestKey = request.header(name).map { ByteBuffer(string: $0) }
        case .query(let name)?: requestKey = request.queryParameter(name).map { ByteBuffer(string: $0) }
        case .jsonPointer?, nil: requestKey = nil
        }
        let defaultKey = self.config.defaultKey.map { ByteBuffer(string: $0.render(parameters)) }
        if case .jsonPointer = self.config.key, format == .raw {
            return .error(
                .unsupportedMediaType, code: "json_required",
                message: "this route takes the key from a JSON pointer; send application/json or application/x-ndjson")
        }
        var headers: [EventHeader] = []
        for name in self.config.headersToKafka {
            for value in request.head.headers[name] { headers.append(EventHeader(name: name, value: value)) }
        }

        // With ack: accepted nobody waits for results: count, log failures, keep nothing per event.
        let tracker =
            self.config.ack == .accepted
            ? DeliveryTracker(recordsResults: false, onFailure: self.logAcceptedFailure(topic: topic))
            : DeliveryTracker()
        var session = IngestSession(
            handler: self, topic: topic, tracker: tracker, requestKey: requestKey ?? defaultKey, defaultKey: defaultKey, headers: headers)

        // Read and send.
        var stop: HTTPResponse?
        do {
            switch format {
            case .ndjson:
                var decoder = NDJSONDecoder(maxLineBytes: self.config.maxEventBytes)
                var events: [Event] = []
                while let chunk = try await body.next() {
                    if body.bytesRead > self.config.maxBodyBytes { throw Self.bodyTooLargeError(self.config.maxBodyBytes) }
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
            case .json, .raw:
                var whole = ByteBuffer()
                while var chunk = try await body.next() {
                    if body.bytesRead > self.config.maxBodyBytes { throw Self.bodyTooLargeError(self.config.maxBodyBytes) }
                    whole.writeBuffer(&chunk)
                }
                var events: [Event]
                if format == .json {
                    events = try JSONBodyDecoder.decode(whole, maxEventBytes: self.config.maxEventBytes)
                } else {
                    guard whole.readableBytes <= self.config.maxEventBytes else {
                        throw BodyDecodingError(
                            status: 413, code: "event_too_large",
                            message: "the body is one event and is larger than max_event_bytes (\(self.config.maxEventBytes) bytes)")
                    }
                    // An empty body is not an empty event: Kafka would store it as a null value (a tombstone).
                    events = whole.readableBytes == 0 ? [] : [Event(value: whole)]
                }
                _ = await session.send(&events, lines: nil)
            }
        } catch let error as BodyDecodingError {
            stop = .error(HTTPResponseStatus(statusCode: error.status), code: error.code, message: error.message)
        } catch {
            // The client went away or broke the protocol mid-body.
            stop = .error(.badRequest, code: "body_read_failed", message: "could not read the request body: \(error)")
        }
        if stop == nil, let failure = session.failure {
            stop = .error(HTTPResponseStatus(statusCode: failure.status), code: failure.code, message: failure.message)
        }
        if stop == nil, session.sent == 0, session.saturated == nil {
            stop = .error(.badRequest, code: "no_events", message: "the body holds no events")
        }

        tracker.seal()
        if self.config.ack == .accepted {
            var response = self.acceptedResponse(session: session, stop: stop)
            response.eventCount = session.sent
            return response
        }
        let results = await tracker.results(settledBy: self.sink)
        var response = self.response(results: results, stop: stop, saturated: session.saturated)
        response.eventCount = session.sent
        return response
    }

    /// Builds the response from every event's fate: 200 when all were delivered; otherwise
    /// 503 + Retry-After if any failure is retryable, else the failures' 4xx/5xx status.
    private func response(results: [DeliveryResult], stop: HTTPResponse?, saturated: DeliveryFailure?) -> HTTPResponse {
        var delivered = 0
        var retryable = false
        var worstStatus = 0
        for result in results {
            switch result {
            case .delivered: delivered += 1
            case .failed(let failure):
                if failure.isRetryable { retryable = true } else { worstStatus = max(worstStatus, failure.httpStatus) }
            }
        }
        let failed = results.count - delivered
        var json = JSONWriter()
        json.reserveCapacity(64 + results.count * 32)
        json.object { json in
            if let stop {
                // Carry the request-level error next to the per-event results.
                let errorJSON = String(decoding: stop.body.readableBytesView, as: UTF8.self)
                json.key("error")
                json.raw(Self.innerError(errorJSON))
            } else if let saturated {
                json.key("error")
                json.object {
                    $0.field("code", saturated.code)
                    $0.field("message", saturated.message)
                    $0.field("sink", self.sink.name)
                }
            }
            json.field("accepted", delivered)
            if failed > 0 { json.field("failed", failed) }
            json.key("results")
            json.array { json in
                for result in results {
                    json.object { json in
                        switch result {
                        case .delivered(let receipt):
                            if let partition = receipt.partition { json.field("partition", partition) }
                            if let offset = receipt.offset { json.field("offset", offset) }
                            if let shard = receipt.shardID { json.field("shard_id", shard) }
                            if let sequence = receipt.sequenceNumber { json.field("sequence_number", sequence) }
                        case .failed(let failure):
                            json.key("error")
                            json.object {
                                $0.field("code", failure.code)
                                $0.field("message", failure.message)
                                $0.field("retryable", failure.isRetryable)
                            }
                        }
                    }
                }
            }
        }
        let status: HTTPResponseStatus
        var headers = HTTPHeaders()
        if let stop {
            status = stop.status
        } else if failed == 0 {
            status = .ok
        } else if retryable || saturated != nil {
            status = .serviceUnavailable
        } else {
            status = HTTPResponseStatus(statusCode: worstStatus)
        }
        if status == .serviceUnavailable { headers.add(name: "retry-after", value: "1") }
        return .json(status, json, headers: headers)
    }

    /// `ack: accepted`: 202 when every event is in the sink's queue; otherwise the error, with
    /// how many events were queued (they will be delivered) and how many were not.
    private func acceptedResponse(session: IngestSession, stop: HTTPResponse?) -> HTTPResponse {
        guard stop != nil || session.saturated != nil else {
            var json = JSONWriter()
            json.object { $0.field("accepted", session.queued) }
            return .json(.accepted, json)
        }
        var json = JSONWriter()
        json.object { json in
            json.key("error")
            if let stop {
                json.raw(Self.innerError(String(decoding: stop.body.readableBytesView, as: UTF8.self)))
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
        let status = stop?.status ?? .serviceUnavailable
        return .json(status, json, headers: status == .serviceUnavailable ? ["retry-after": "1"] : [:])
    }

    /// `{"error":{…}}` -> `{…}`
    private static func innerError(_ json: String) -> String {
        let prefix = #"{"error":"#
        guard json.hasPrefix(prefix), json.hasSuffix("}") else { return json }
        return String(json.dropFirst(prefix.count).dropLast())
    }

    static func bodyTooLargeError(_ limit: Int) -> BodyDecodingError {
        BodyDecodingError(status: 413, code: "body_too_large", message: "the body is larger than max_body_bytes (\(limit) bytes)")
    }

    static func bodyTooLarge(_ limit: Int) -> HTTPResponse {
        let error = bodyTooLargeError(limit)
        return .error(.payloadTooLarge, code: error.code, message: error.message, headers: ["connection": "close"])
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

    /// Per-event key extraction, limits and sending, for one request.
    struct IngestSession {
        let handler: IngestHandler
        let topic: String
        let tracker: DeliveryTracker
        let requestKey: ByteBuffer?
        /// For events whose JSON pointer finds no key.
        let defaultKey: ByteBuffer?
        let headers: [EventHeader]
        /// Events handed to the sink (including any it refused).
        var sent = 0
        /// Events the sink took into its queue.
        var queued = 0
        var saturated: DeliveryFailure?
        var failure: BodyDecodingError?

        /// Sends `events` (and empties the array). Returns false when the request must stop.
        /// `lines`: each event's NDJSON line, when the body is NDJSON.
        mutating func send(_ events: inout [Event], lines: [Int]?) async -> Bool {
            defer { events.removeAll(keepingCapacity: true) }
            guard !events.isEmpty, self.saturated == nil, self.failure == nil else { return self.saturated == nil && self.failure == nil }
            let config = self.handler.config
            if self.sent + events.count > config.maxEvents {
                self.failure = BodyDecodingError(
                    status: 413, code: "too_many_events", message: "the request holds more than max_events (\(config.maxEvents)) events")
                return false
            }
            eventLoop: for index in events.indices {
                if case .jsonPointer(let pointer)? = config.key {
                    let found = events[index].value.withUnsafeReadableBytes { JSONScanner.scalar(at: pointer, in: $0) }
                    switch found {
                    case .value(let bytes):
                        events[index].key = ByteBuffer(bytes: bytes)
                    case .missing:
                        events[index].key = self.defaultKey
                    case .notScalar:
                        let place = lines.map { "line \($0[index])" } ?? "event \(self.sent + index)"
                        self.failure = BodyDecodingError(
                            status: 400, code: "invalid_key",
                            message: "\(place): the key pointer points at an object, array or null; it must point at a string, number or boolean")
                        // Send the events before this one; drop the rest of the request.
                        events.removeSubrange(index...)
                        break eventLoop
                    }
                } else {
                    events[index].key = self.requestKey
                }
                events[index].headers = self.headers
            }
            guard !events.isEmpty else { return false }
            let first = self.tracker.reserve(events.count)
            // max_wait bounds each wait for room, not the whole (possibly long) upload.
            let deadline = ContinuousClock.now + config.maxWait
            let taken = await self.handler.sink.enqueue(events, topic: self.topic, tracker: self.tracker, firstIndex: first, deadline: deadline)
            self.sent += events.count
            self.queued += taken
            if taken < events.count {
                self.saturated = .queueFull(sink: self.handler.sink.name)
                return false
            }
            return self.failure == nil
        }
    }
}

extension JSONWriter {
    /// Writes pre-encoded JSON as the next value.
    mutating func raw(_ json: String) {
        self.appendRaw(Array(json.utf8))
    }
}
