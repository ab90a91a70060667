import Logging
import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceCore
import SluiceIngest

/// The HTTP adapter of the ingest pipeline: turns one request into events as the body streams
/// (NDJSON, JSON, raw), hands them to the pipeline, and answers with the fate of every event
/// (see `AckMode`).
public struct IngestHandler: Sendable {
    public let pipeline: IngestPipeline
    public var routeName: String { self.pipeline.routeName }
    public var config: IngestConfig { self.pipeline.config }
    public var sink: any Sink { self.pipeline.sink }

    public init(routeName: String, config: IngestConfig, sink: any Sink, logger: Logger) {
        self.pipeline = IngestPipeline(routeName: routeName, config: config, sink: sink, logger: logger)
    }

    public func handle(_ request: HTTPRequest, parameters: [String: String], body: inout RequestBody) async -> HandledRequest {
        var facts = ExchangeFacts(sink: self.sink.name)
        var response = await self.respond(to: request, parameters: parameters, body: &body, facts: &facts)
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
        let requestKey: ByteBuffer?
        switch self.config.key {
        case .header(let name)?: requestKey = request.header(name).map { ByteBuffer(string: $0) }
        case .query(let name)?: requestKey = request.queryParameter(name).map { ByteBuffer(string: $0) }
        case .jsonPointer?, nil: requestKey = nil
        }
        let defaultKey = self.pipeline.defaultKey(parameters)
        if case .jsonPointer = self.config.key, format == .raw {
            return .error(
                .jsonRequired, message: "this route takes the key from a JSON pointer; send application/json or application/x-ndjson")
        }
        var headers: [EventHeader] = []
        for name in self.config.headersToKafka {
            for value in request.head.headers[name] { headers.append(EventHeader(name: name, value: value)) }
        }
        var session = self.pipeline.session(
            topic: topic, requestKey: requestKey ?? defaultKey, defaultKey: defaultKey, headers: headers, ack: self.config.ack)

        // Read and send.
        var stop: IngestError?
        do {
            switch format {
            case .ndjson:
                var decoder = NDJSONDecoder(maxLineBytes: self.config.maxEventBytes)
                var events: [Event] = []
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
            case .json, .raw:
                var whole = ByteBuffer()
                while var chunk = try await body.next() {
                    if body.bytesRead > self.config.maxBodyBytes { throw IngestError.bodyTooLarge(limit: self.config.maxBodyBytes) }
                    whole.writeBuffer(&chunk)
                }
                var events: [Event]
                if format == .json {
                    events = try JSONBodyDecoder.decode(whole, maxEventBytes: self.config.maxEventBytes)
                } else {
                    guard whole.readableBytes <= self.config.maxEventBytes else {
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
        if stop == nil, let failure = session.failure {
            stop = failure
        }
        if stop == nil, session.sent == 0, session.saturated == nil {
            stop = IngestError(.noEvents, "the body holds no events")
        }

        facts.events = session.sent
        facts.eventBytes = session.sentBytes
        if self.config.ack == .accepted {
            session.seal()
            facts.reject(session.sent - session.queued, reason: session.stopFailure.code)
            return self.acceptedResponse(session: session, stop: stop)
        }
        let results = await session.results()
        facts.reject(results: results)
        return self.response(results: results, stop: stop, saturated: session.saturated)
    }

    /// Builds the response from every event's fate: 200 when all were delivered; otherwise
    /// 503 + Retry-After if any failure is retryable, else the failures' 4xx/5xx status.
    private func response(results: [DeliveryResult], stop: IngestError?, saturated: DeliveryFailure?) -> HTTPResponse {
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
            status = HTTPResponseStatus(statusCode: stop.code.httpStatus)
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
