import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceCore
import SluiceIngest

extension HTTPResponse {
    /// REST Proxy's error body: `{"error_code":…,"message":…}`.
    /// `contentType`: v2 answers `application/vnd.kafka.v2+json`, v3 `application/json`.
    public static func confluentError(
        status: Int, errorCode: Int, message: String, headers: HTTPHeaders = HTTPHeaders(), contentType: String = ConfluentREST.v2ResponseType
    ) -> HTTPResponse {
        var json = JSONWriter()
        json.object {
            $0.field("error_code", errorCode)
            $0.field("message", message)
        }
        var response = HTTPResponse.json(HTTPResponseStatus(statusCode: status), json, headers: headers)
        response.headers.replaceOrAdd(name: "content-type", value: contentType)
        return response
    }

    static func confluentError(_ error: ConfluentREST.RequestError, headers: HTTPHeaders = HTTPHeaders()) -> HTTPResponse {
        .confluentError(status: error.status, errorCode: error.errorCode, message: error.message, headers: headers)
    }
}

extension IngestHandler {
    /// Confluent REST Proxy v2 produce (`api: confluent_v2`): `POST {prefix}/topics/{topic}` and
    /// `{prefix}/topics/{topic}/partitions/{partition}`, JSON or binary embedded format. Every
    /// record is answered with its partition and offset once the broker has it, or with its
    /// error (REST Proxy's codes); like REST Proxy, the status is 200 unless Kafka refused the
    /// credentials (401, 403). Whole-request errors use REST Proxy's error body.
    func respondConfluentV2(to request: HTTPRequest, body: inout RequestBody, facts: inout ExchangeFacts) async -> HTTPResponse {
        guard ConfluentREST.acceptsV2(request.header("accept")) else {
            return .confluentError(status: 406, errorCode: 406, message: "HTTP 406 Not Acceptable: this API answers \(ConfluentREST.v2ResponseType)")
        }
        let prefix = self.pathPrefix ?? "/"
        var rest = Substring(request.path).dropFirst(prefix.hasSuffix("/") ? prefix.count - 1 : prefix.count)
        if rest.isEmpty { rest = "/" }
        guard let target = ConfluentREST.v2Target(rest) else {
            return .confluentError(status: 404, errorCode: 404, message: "HTTP 404 Not Found")
        }
        guard request.method == "POST" else {
            return .confluentError(status: 405, errorCode: 405, message: "HTTP 405 Method Not Allowed", headers: ["allow": "POST"])
        }
        if self.pipeline.problem(topic: target.topic) != nil {
            return .confluentError(status: 404, errorCode: ConfluentREST.topicNotFoundErrorCode, message: "Topic not found.")
        }
        let format = ConfluentREST.V2Format(contentType: request.header("content-type"))
        switch format {
        case .json, .binary: break
        case .needsSchema(let name):
            return .confluentError(
                status: 415, errorCode: 415,
                message: "the \(name) embedded format needs Schema Registry, which this gateway does not speak yet; send application/vnd.kafka.json.v2+json or application/vnd.kafka.binary.v2+json")
        case .unsupported:
            return .confluentError(
                status: 415, errorCode: 415,
                message: "HTTP 415 Unsupported Media Type: send application/vnd.kafka.json.v2+json or application/vnd.kafka.binary.v2+json")
        }
        let whole: ByteBuffer
        do {
            whole = try await self.readWholeBody(request, &body)
        } catch {
            switch error {
            case .tooLarge: return Self.confluentBodyTooLarge(self.config.maxBodyBytes)
            case .unreadable: return .confluentError(status: 400, errorCode: 400, message: "could not read the request body")
            }
        }
        let records: [ConfluentREST.V2Record]
        do {
            records = try ConfluentREST.decodeV2(
                whole, format: format, partition: target.partition, maxEvents: self.config.maxEvents, maxEventBytes: self.pipeline.largestDecodedEvent)
        } catch {
            return .confluentError(error)
        }

        var session = self.pipeline.session(topic: target.topic, requestKey: nil, defaultKey: nil, headers: self.recordHeaders(request), ack: .sink)
        // A record over max_event_bytes fails alone; the others go in order.
        await session.send(
            inOrder: records.map { record in
                switch record {
                case .event(let event):
                    return .success(event)
                case .tooLarge(let bytes):
                    return .failure(
                        DeliveryFailure(
                            .eventTooLarge, "the record's key and value are \(bytes) bytes, more than max_event_bytes (\(self.config.maxEventBytes))"))
                }
            })
        facts.events = session.sent
        facts.eventBytes = session.sentBytes
        facts.mirror(session.mirrored)
        let results = await session.results().deadLettersAsFailures()
        let summary = results.summary()
        facts.reject(summary)
        return Self.confluentV2Answer(results)
    }

    /// `{"offsets":[…],"key_schema_id":null,"value_schema_id":null}`: one entry per record, in order.
    static func confluentV2Answer(_ results: DeliveryResults) -> HTTPResponse {
        var json = JSONWriter()
        json.reserveCapacity(results.count * 48 + 64)
        var status = 200
        json.openObject()
        json.key("offsets")
        json.openArray()
        for result in results {
            json.object { json in
                switch result {
                case .delivered(let receipt):
                    if let partition = receipt.partition { json.field("partition", partition) } else { json.key("partition"); json.null() }
                    if let offset = receipt.offset { json.field("offset", offset) } else { json.key("offset"); json.null() }
                    json.key("error_code")
                    json.null()
                    json.key("error")
                    json.null()
                case .failed(let failure):
                    let code = ConfluentREST.errorCode(of: failure)
                    // REST Proxy answers 401/403 when Kafka refused the credentials, else 200.
                    if code == ConfluentREST.kafkaAuthenticationErrorCode { status = 401 }
                    if code == ConfluentREST.kafkaAuthorizationErrorCode, status != 401 { status = 403 }
                    json.key("partition")
                    json.null()
                    json.key("offset")
                    json.null()
                    json.field("error_code", code)
                    json.field("error", failure.message)
                }
            }
        }
        json.closeArray()
        json.key("key_schema_id")
        json.null()
        json.key("value_schema_id")
        json.null()
        json.closeObject()
        var response = HTTPResponse.json(HTTPResponseStatus(statusCode: status), json)
        response.headers.replaceOrAdd(name: "content-type", value: ConfluentREST.v2ResponseType)
        return response
    }

    static func confluentBodyTooLarge(_ limit: Int, contentType: String = ConfluentREST.v2ResponseType) -> HTTPResponse {
        .confluentError(
            status: 413, errorCode: 413, message: "the body is larger than max_body_bytes (\(limit) bytes)", headers: ["connection": "close"],
            contentType: contentType)
    }
}
