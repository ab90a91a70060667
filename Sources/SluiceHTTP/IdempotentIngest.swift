import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import SluiceConfig
import SluiceCore
import SluiceIngest
import SluicePolicy

/// An ingest route's `idempotency` (the IETF httpapi Idempotency-Key draft). A POST, PUT or
/// PATCH with `Idempotency-Key` claims the key — scoped by route and, when a policy identified
/// the caller, by that identity — and runs; its answer is kept for the window. A retry with the
/// same key and the same request (fingerprint: method, target, the headers that shape its events,
/// body) gets the kept answer again with `Idempotent-Replayed: true`, and nothing is produced;
/// the same key with another request is 422; a retry while the first still runs is 409.
///
/// An answer that says "try again" (5xx, 429) is not kept: the key is let go, so the retry runs
/// again — events that answer reported delivered may then be produced twice, as without a key.
/// Neither is an answer given before the body was read to its end (nothing was produced).
public struct IdempotencyGuard: Sendable {
    let routeName: String
    let config: IdempotencyConfig
    let store: any IdempotencyStore
    let logger: Logger
    private let lastWarning = NIOLockedValueBox<ContinuousClock.Instant?>(nil)

    public static let replayedHeader = "idempotent-replayed"
    /// Response headers a kept answer does not keep (they belong to one connection or moment).
    static let unkeptHeaders: Set<String> = ["connection", "content-length", "transfer-encoding", "date", "keep-alive"]

    public init(routeName: String, config: IdempotencyConfig, store: any IdempotencyStore, logger: Logger) {
        self.routeName = routeName
        self.config = config
        self.store = store
        self.logger = logger
    }

    /// Runs `run` (the route's handler) under the request's key, or answers without it.
    func handle(
        _ request: HTTPRequest, identity: String?, body: inout RequestBody, handler: IngestHandler,
        run: (inout RequestBody) async -> HandledRequest
    ) async -> HandledRequest {
        func refuse(_ code: ErrorCode, _ message: String, headers: HTTPHeaders = HTTPHeaders()) -> HandledRequest {
            var response = handler.refusal(status: code.httpStatus, code: code.code, message: message, headers: headers)
            response.facts = ExchangeFacts(sink: handler.sink.name)
            return HandledRequest(response: response, eventCount: 0, bytesRead: body.bytesRead)
        }
        guard ["POST", "PUT", "PATCH"].contains(request.method) else { return await run(&body) }
        let values = request.head.headers[IdempotencyKey.headerName]
        guard let value = values.first else {
            if self.config.required { return refuse(.idempotencyKeyMissing, "this route requires an Idempotency-Key header") }
            return await run(&body)
        }
        guard values.count == 1 else { return refuse(.invalidIdempotencyKey, "send one Idempotency-Key header") }
        let key: String
        switch IdempotencyKey.parse(value) {
        case .success(let parsed): key = parsed
        case .failure(let problem): return refuse(.invalidIdempotencyKey, problem.message)
        }
        if handler.answersAsItStreams(request) {
            return refuse(
                .idempotencyNotSupported,
                "a streamed v3 request is answered record by record; send an Idempotency-Key with a sized body or with records:batch")
        }
        let scope = "\(self.routeName)\u{0}\(identity ?? "")\u{0}\(key)"
        var fingerprint = RequestFingerprint()
        for field in handler.fingerprintFields(request) { fingerprint.add(field: field) }

        let claim: IdempotencyClaim
        do {
            claim = try await self.store.claim(scope)
        } catch {
            self.warnUnavailable(error)
            if case .redis(let redis) = self.config.store, redis.failOpen { return await run(&body) }
            return refuse(.idempotencyUnavailable, "the Idempotency-Key cannot be checked right now", headers: ["retry-after": "1"])
        }
        switch claim {
        case .full:
            return refuse(.idempotencyUnavailable, "too many requests with an Idempotency-Key are running", headers: ["retry-after": "1"])
        case .inFlight:
            return refuse(
                .idempotencyKeyInUse, "a request with this Idempotency-Key is still running; retry once it has been answered",
                headers: ["retry-after": "1"])
        case .completed(let record):
            // The same request again? Its body is read and hashed; nothing is produced.
            body.fingerprint = fingerprint
            let declared = request.header("content-length").flatMap(Int.init)
            guard declared.map({ $0 <= handler.config.maxBodyBytes }) ?? true, await Self.readToEnd(&body, limit: handler.config.maxBodyBytes),
                let digest = body.fingerprint?.finish()
            else {
                if body.bytesRead > handler.config.maxBodyBytes || (declared ?? 0) > handler.config.maxBodyBytes {
                    return refuse(.idempotencyKeyReused, "this Idempotency-Key was used for a different request")
                }
                return refuse(.bodyReadFailed, "could not read the request body")
            }
            guard digest == record.fingerprint else {
                return refuse(.idempotencyKeyReused, "this Idempotency-Key was used for a different request")
            }
            var response = Self.replay(record)
            response.facts = ExchangeFacts(sink: handler.sink.name)
            return HandledRequest(response: response, eventCount: 0, bytesRead: body.bytesRead)
        case .claimed(let ticket):
            body.fingerprint = fingerprint
            let handled = await run(&body)
            let status = Int(handled.response.status.code)
            if !body.isComplete, handled.eventCount > 0, status < 500, status != 429 {
                // Events went out before the answer: hash the rest so a retry can be recognised.
                _ = await Self.readToEnd(&body, limit: handler.config.maxBodyBytes)
            }
            guard body.isComplete, status < 500, status != 429, !handled.response.readsRequestBody, let digest = body.fingerprint?.finish() else {
                do {
                    try await self.store.release(ticket)
                } catch {
                    self.warnUnavailable(error)
                }
                return handled
            }
            let record = self.record(of: handled.response, fingerprint: digest)
            do {
                try await self.store.complete(ticket, with: record)
            } catch {
                self.warnUnavailable(error)
            }
            return handled
        }
    }

    /// Reads the rest of the body (hashing it), up to `limit` bytes in all; whether its end was reached.
    static func readToEnd(_ body: inout RequestBody, limit: Int) async -> Bool {
        while !body.isComplete, body.bytesRead <= limit {
            do {
                guard try await body.next() != nil else { break }
            } catch {
                return false
            }
        }
        return body.isComplete && body.bytesRead <= limit
    }

    /// What is kept of an answer: status, headers, and the body when it is whole and within
    /// `max_response_bytes`.
    func record(of response: HTTPResponse, fingerprint: String) -> IdempotentRecord {
        var headers: [IdempotentRecord.Header] = []
        for (name, value) in response.headers where !Self.unkeptHeaders.contains(name.lowercased()) {
            headers.append(.init(name: name.lowercased(), value: value))
        }
        let whole = response.stream == nil
        let size = whole ? response.body.readableBytes : 0
        let body = whole && size <= self.config.maxResponseBytes ? Array(response.body.readableBytesView) : nil
        return IdempotentRecord(fingerprint: fingerprint, status: Int(response.status.code), headers: headers, body: body, bodyBytes: size)
    }

    /// The kept answer again, marked as a replay. An answer whose body was not kept repeats its
    /// status with a note saying so.
    static func replay(_ record: IdempotentRecord) -> HTTPResponse {
        var headers = HTTPHeaders()
        for header in record.headers { headers.add(name: header.name, value: header.value) }
        headers.replaceOrAdd(name: Self.replayedHeader, value: "true")
        if let body = record.body {
            return HTTPResponse(status: HTTPResponseStatus(statusCode: record.status), headers: headers, body: ByteBuffer(bytes: body))
        }
        var json = JSONWriter()
        json.object {
            $0.key("idempotent_replay")
            $0.object {
                $0.field("status", record.status)
                if record.bodyBytes > 0 { $0.field("body_bytes", record.bodyBytes) }
                $0.field(
                    "message",
                    "this request was answered before with this status; the answer's body was larger than the route's "
                        + "idempotency.max_response_bytes (or sent in parts) and was not kept")
            }
        }
        headers.replaceOrAdd(name: "content-type", value: "application/json")
        return HTTPResponse(status: HTTPResponseStatus(statusCode: record.status), headers: headers, body: ByteBuffer(bytes: json.bytes))
    }

    /// Logs the store being unreachable, at most once every 10 s.
    private func warnUnavailable(_ error: any Error) {
        let now = ContinuousClock.now
        let warn = self.lastWarning.withLockedValue { last -> Bool in
            guard last.map({ now - $0 >= .seconds(10) }) ?? true else { return false }
            last = now
            return true
        }
        guard warn else { return }
        var then = "answering 503 (failure_mode: closed)"
        if case .redis(let redis) = self.config.store, redis.failOpen { then = "running requests without their key (failure_mode: open)" }
        self.logger.warning("idempotency key store unavailable", metadata: ["route": "\(self.routeName)", "error": "\(error)", "then": "\(then)"])
    }
}

extension IngestHandler {
    /// An answer refusing the whole request, in the API the route speaks (REST Proxy's error
    /// body for the Confluent APIs, Sluice's otherwise).
    func refusal(status: Int, code: String, message: String, headers: HTTPHeaders = HTTPHeaders()) -> HTTPResponse {
        switch self.config.api {
        case .confluentV2, .confluentV3:
            return .confluentError(
                status: status, errorCode: ConfluentREST.errorCode(status: status), message: message, headers: headers,
                contentType: self.config.api == .confluentV2 ? ConfluentREST.v2ResponseType : "application/json")
        case .sluice, .cloudevents:
            return .error(HTTPResponseStatus(statusCode: status), code: code, message: message, headers: headers)
        }
    }

    /// Whether the request is answered as its body streams (REST Proxy v3 streaming mode).
    func answersAsItStreams(_ request: HTTPRequest) -> Bool {
        guard self.config.api == .confluentV3, request.header("content-length") == nil else { return false }
        return !request.path.hasSuffix(":batch")
    }

    /// What, besides the body, makes two requests the same request: method, target, and the
    /// headers that shape its events (media type and encoding, the key header, headers copied to
    /// records, CloudEvents attributes). Other headers (tracing, dates, credentials) may differ
    /// between a request and its retry.
    func fingerprintFields(_ request: HTTPRequest) -> [String] {
        var fields = [request.method, request.path, request.query.map(String.init) ?? ""]
        var names = ["content-type", "content-encoding"]
        if case .header(let name)? = self.config.key { names.append(name.lowercased()) }
        names.append(contentsOf: self.config.headersToKafka.map { $0.lowercased() })
        if self.config.api == .cloudevents {
            let attributes = request.head.headers.map { $0.name.lowercased() }.filter { $0.hasPrefix("ce-") }
            names.append(contentsOf: Set(attributes).sorted())
        }
        for name in names {
            fields.append(name)
            fields.append(request.head.headers[name].joined(separator: "\n"))
        }
        return fields
    }
}
