import AsyncHTTPClient
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOSSL
import SluiceConfig
import SluiceCore
import SluiceSchema

/// One call to a Schema Registry: `POST url` with a JSON body; the answer's status and body.
public typealias SchemaRegistryTransport = @Sendable (_ url: String, _ body: [UInt8]) async throws -> (status: Int, body: [UInt8])

/// The schema id that frames a route's Avro or Protobuf values, from a Confluent-compatible
/// Schema Registry: for each subject (`{topic}-value` by default), the id under which the
/// route's schema is registered — looked up with `POST /subjects/{subject}`, and with
/// `auto_register` registered by `POST /subjects/{subject}/versions` when the subject lacks it.
///
/// An id, once known, is kept (a registry never changes the schema behind an id); a failed
/// lookup is answered from memory for `retry_after`, so a registry outage costs one call per
/// subject per `retry_after`, not one per request. Concurrent requests for a subject share one
/// call. At most `max_subjects` subjects are kept; past that the oldest is forgotten.
public final class SchemaRegistryClient: Sendable {
    public let config: SchemaRegistryConfig
    private let transport: SchemaRegistryTransport
    private let clock: @Sendable () -> ContinuousClock.Instant
    private let logger: Logger
    private let state = NIOLockedValueBox(State())

    /// A registry answer is read up to this many bytes (a lookup echoes the schema text).
    static let maxAnswerBytes = 4 << 20

    private struct State {
        var entries: [String: Entry] = [:]
        /// Subjects in the order they were first asked for: the oldest is forgotten first.
        var order: [String] = []
    }

    private enum Entry {
        case known(UInt32)
        case failed(IngestError, until: ContinuousClock.Instant)
        case asking(Task<Result<UInt32, IngestError>, Never>)
    }

    public init(
        config: SchemaRegistryConfig, logger: Logger, transport: SchemaRegistryTransport? = nil,
        clock: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }
    ) {
        self.config = config
        self.transport = transport ?? Self.httpTransport(config)
        self.clock = clock
        self.logger = logger
    }

    /// The id of the route's schema under the subject of `topic`, or why there is none.
    public func schemaID(topic: String) async -> Result<UInt32, IngestError> {
        let subject = self.config.subject.render(["topic": topic])
        let now = self.clock()
        enum Next {
            case answer(Result<UInt32, IngestError>)
            case wait(Task<Result<UInt32, IngestError>, Never>)
        }
        let next: Next = self.state.withLockedValue { state in
            switch state.entries[subject] {
            case .known(let id)?:
                return .answer(.success(id))
            case .failed(let error, let until)? where now < until:
                return .answer(.failure(error))
            case .asking(let task)?:
                return .wait(task)
            case .failed?, nil:
                if state.entries[subject] == nil {
                    if state.entries.count >= self.config.maxSubjects, !state.order.isEmpty {
                        state.entries[state.order.removeFirst()] = nil
                    }
                    state.order.append(subject)
                }
                let task = Task { await self.lookUp(subject) }
                state.entries[subject] = .asking(task)
                return .wait(task)
            }
        }
        switch next {
        case .answer(let result):
            return result
        case .wait(let task):
            let result = await task.value
            let until = self.clock() + self.config.retryAfter
            self.state.withLockedValue { state in
                // The first waiter to finish records the answer; a subject forgotten meanwhile stays so.
                guard case .asking(let current)? = state.entries[subject], current == task else { return }
                switch result {
                case .success(let id): state.entries[subject] = .known(id)
                case .failure(let error): state.entries[subject] = .failed(error, until: until)
                }
            }
            return result
        }
    }

    /// Asks the registry for the schema's id under `subject` (and registers it, with
    /// `auto_register`, when the subject lacks it).
    private func lookUp(_ subject: String) async -> Result<UInt32, IngestError> {
        let subjectURL = self.config.url + "/subjects/" + Self.pathSegment(subject)
        let body = self.requestBody()
        let answer: (status: Int, body: [UInt8])
        do {
            answer = try await self.transport(subjectURL, body)
        } catch {
            return .failure(self.unavailable(subject, "the registry could not be reached: \(error)"))
        }
        switch answer.status {
        case 200:
            return self.id(in: answer.body, subject: subject)
        case 404 where self.config.autoRegister:
            return await self.register(subject, url: subjectURL + "/versions", body: body)
        case 404:
            let why = Self.message(in: answer.body)
            self.logger.warning(
                "the schema registry has no schema like the route's under this subject; register it, or set registry.auto_register",
                metadata: ["subject": "\(subject)", "registry": "\(why)"])
            return .failure(
                IngestError(
                    .schemaNotRegistered,
                    "the route's schema is not registered under subject \"\(subject)\" in the schema registry; nothing was sent"))
        default:
            return .failure(self.unavailable(subject, "the registry answered \(answer.status): \(Self.message(in: answer.body))"))
        }
    }

    private func register(_ subject: String, url: String, body: [UInt8]) async -> Result<UInt32, IngestError> {
        let answer: (status: Int, body: [UInt8])
        do {
            answer = try await self.transport(url, body)
        } catch {
            return .failure(self.unavailable(subject, "the registry could not be reached: \(error)"))
        }
        switch answer.status {
        case 200:
            self.logger.info("registered the route's schema in the schema registry", metadata: ["subject": "\(subject)"])
            return self.id(in: answer.body, subject: subject)
        case 409, 422:
            // 409: incompatible with the subject's schemas; 422: the registry finds it invalid.
            let why = Self.message(in: answer.body)
            self.logger.warning("the schema registry refused to register the route's schema", metadata: ["subject": "\(subject)", "registry": "\(why)"])
            let reason = answer.status == 409 ? "incompatible with the subject's schemas" : "the registry finds it invalid"
            return .failure(
                IngestError(
                    .schemaNotRegistered,
                    "the schema registry refused to register the route's schema under subject \"\(subject)\" (\(reason)); nothing was sent"))
        default:
            return .failure(self.unavailable(subject, "the registry answered \(answer.status): \(Self.message(in: answer.body))"))
        }
    }

    /// The failure a producer sees: the registry's address and its words go to the log only.
    private func unavailable(_ subject: String, _ detail: String) -> IngestError {
        self.logger.warning(
            "schema registry lookup failed", metadata: ["subject": "\(subject)", "url": "\(self.config.url)", "error": "\(detail)"])
        return IngestError(.schemaRegistryUnavailable, "the schema registry could not say which schema id frames the events; nothing was sent")
    }

    private func id(in body: [UInt8], subject: String) -> Result<UInt32, IngestError> {
        let value = body.withUnsafeBytes { try? JSONParser.parse($0) }
        guard case .object(let object)? = value, case .number(let number)? = object["id"], number >= 0, number <= Double(Int32.max),
            number == number.rounded()
        else {
            return .failure(self.unavailable(subject, "the registry's answer has no schema id: \(String(decoding: body.prefix(200), as: UTF8.self))"))
        }
        return .success(UInt32(number))
    }

    /// `{"schema": …, "schemaType": …}` (Avro is the registry's default type and is not named).
    private func requestBody() -> [UInt8] {
        var out: [UInt8] = Array(#"{"schema":"#.utf8)
        JSONString.append(Array(self.config.schema.utf8), to: &out)
        if self.config.schemaType != "AVRO" {
            out.append(contentsOf: Array(#","schemaType":"#.utf8))
            JSONString.append(Array(self.config.schemaType.utf8), to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// The registry's `message` in an error answer, or the answer's first bytes.
    static func message(in body: [UInt8]) -> String {
        if case .object(let object)? = body.withUnsafeBytes({ try? JSONParser.parse($0) }), case .string(let message)? = object["message"] {
            var text = message
            if case .number(let code)? = object["error_code"] { text = "\(Int(code)) \(text)" }
            return text
        }
        return String(decoding: body.prefix(200), as: UTF8.self)
    }

    /// `subject` as one path segment: unreserved characters as they are, the rest percent-encoded.
    static func pathSegment(_ subject: String) -> String {
        var out = ""
        for byte in subject.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                out += "%" + String(decoding: [hex[Int(byte >> 4)], hex[Int(byte & 0xF)]], as: UTF8.self)
            }
        }
        return out
    }

    /// Calls over HTTP(S) with AsyncHTTPClient: the registry's media type, basic auth when
    /// configured, `ca_file` as the trust roots of an https registry, `timeout` per call.
    static func httpTransport(_ config: SchemaRegistryConfig) -> SchemaRegistryTransport {
        var authorization: String?
        if let username = config.username, let password = config.password {
            var encoded: [UInt8] = []
            Array("\(username):\(password)".utf8).withUnsafeBytes { Base64.append($0, to: &encoded) }
            authorization = "Basic " + String(decoding: encoded, as: UTF8.self)
        }
        let credentials = authorization
        return { url, body in
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/vnd.schemaregistry.v1+json")
            request.headers.add(name: "accept", value: "application/vnd.schemaregistry.v1+json, application/json")
            if let credentials { request.headers.add(name: "authorization", value: credentials) }
            request.body = .bytes(ByteBuffer(bytes: body))
            if url.hasPrefix("https:") {
                var tls = TLSConfiguration.makeClientConfiguration()
                tls.minimumTLSVersion = .tlsv12
                if let caFile = config.caFile { tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile)) }
                request.tlsConfiguration = tls
            }
            let response = try await HTTPClient.shared.execute(request, timeout: TimeAmount(config.timeout))
            let answer = try await response.body.collect(upTo: Self.maxAnswerBytes)
            return (Int(response.status.code), Array(answer.readableBytesView))
        }
    }
}
