import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import SluiceCore

/// An error Kinesis (or the way to it) reported for a whole call or one record.
public struct KinesisError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The AWS error code (`ProvisionedThroughputExceededException`, `AccessDeniedException`, ...),
    /// or `ConnectionError` / `Timeout` / `HTTP 5xx` when AWS never answered with one.
    public var code: String
    public var message: String
    /// The HTTP status of the answer, if there was one.
    public var status: Int?

    public init(code: String, message: String, status: Int? = nil) {
        self.code = code
        self.message = message
        self.status = status
    }

    public var description: String { self.message.isEmpty ? self.code : "\(self.code): \(self.message)" }

    /// Codes worth retrying: throttling, AWS-side failures and the network.
    public var isRetryable: Bool {
        switch self.code {
        case "ProvisionedThroughputExceededException", "ThrottlingException", "LimitExceededException", "KMSThrottlingException",
            "InternalFailure", "InternalFailureException", "InternalServerError", "ServiceUnavailable", "ServiceUnavailableException",
            "RequestTimeout", "RequestTimeoutException", "ConnectionError", "Timeout", "ExpiredToken", "ExpiredTokenException",
            "CredentialsUnavailable":
            return true
        default:
            return (self.status ?? 0) >= 500
        }
    }

    /// Throttling: the stream (or account) is at its limit; send less.
    public var isThrottling: Bool {
        ["ProvisionedThroughputExceededException", "ThrottlingException", "LimitExceededException", "KMSThrottlingException"].contains(self.code)
    }

    /// The temporary credentials ran out: fetch new ones before the retry.
    public var isExpiredCredentials: Bool {
        self.code == "ExpiredToken" || self.code == "ExpiredTokenException"
    }
}

/// One record of a PutRecords call.
struct PutRecordsEntry: Sendable {
    var data: ByteBuffer
    var partitionKey: String
}

/// What a PutRecords call came to: a result per record, or one error for the whole call.
enum PutRecordsOutcome: Sendable {
    case records([Result<DeliveryReceipt, KinesisError>])
    case failed(KinesisError)
}

/// PutRecords over the JSON 1.1 protocol, signed with SigV4.
struct KinesisClient: Sendable {
    let endpoint: URL
    let host: String
    let path: String
    let signer: SigV4Signer
    let credentials: any AWSCredentialsProvider
    let httpClient: HTTPClient
    let requestTimeout: Duration
    /// Largest response body read (PutRecords answers ~100 bytes per record).
    static let maxResponseBytes = 4 << 20

    init(endpoint: URL, region: String, credentials: any AWSCredentialsProvider, httpClient: HTTPClient, requestTimeout: Duration) {
        self.endpoint = endpoint
        let defaultPort = endpoint.scheme == "https" ? 443 : 80
        let hostname = endpoint.host ?? "localhost"
        self.host = endpoint.port.map { $0 == defaultPort ? hostname : "\(hostname):\($0)" } ?? hostname
        self.path = endpoint.path.isEmpty ? "/" : endpoint.path
        self.signer = SigV4Signer(region: region, service: "kinesis")
        self.credentials = credentials
        self.httpClient = httpClient
        self.requestTimeout = requestTimeout
    }

    func putRecords(stream: String, entries: [PutRecordsEntry]) async -> PutRecordsOutcome {
        switch await self.call("PutRecords", body: Self.requestBody(stream: stream, entries: entries)) {
        case .success(let body): return Self.parseResults(body, count: entries.count)
        case .failure(let error): return .failed(error)
        }
    }

    /// Whether Kinesis answers and accepts the credentials: `DescribeLimits` (account-wide, no
    /// stream needed). An answer that proves the signature was checked and accepted — success,
    /// or a refusal of the action itself (AccessDenied) — counts as healthy.
    func probe() async -> KinesisError? {
        switch await self.call("DescribeLimits", body: Array("{}".utf8)) {
        case .success: return nil
        case .failure(let error) where KinesisHealth.refusesCredentials(error) || error.code == "ConnectionError" || error.code == "Timeout"
            || (error.status ?? 0) >= 500:
            return error
        case .failure: return nil
        }
    }

    private func call(_ action: String, body: [UInt8]) async -> Result<ByteBuffer, KinesisError> {
        let credentials: AWSCredentials
        do {
            credentials = try await self.credentials.credentials()
        } catch {
            return .failure(KinesisError(code: "CredentialsUnavailable", message: "\(error)"))
        }
        let headers = [("Content-Type", "application/x-amz-json-1.1"), ("X-Amz-Target", "Kinesis_20131202.\(action)")]
        let signature = self.signer.sign(
            method: "POST", host: self.host, path: self.path, headers: headers, payloadSHA256: SigV4Signer.hexSHA256(body),
            credentials: credentials, date: Date())
        var request = HTTPClientRequest(url: self.endpoint.absoluteString)
        request.method = .POST
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        for (name, value) in signature.headers { request.headers.add(name: name, value: value) }
        request.headers.add(name: "User-Agent", value: "sluice")
        request.body = .bytes(ByteBuffer(bytes: body))

        let response: HTTPClientResponse
        let responseBody: ByteBuffer
        do {
            response = try await self.httpClient.execute(request, timeout: .nanoseconds(Int64(self.requestTimeout.nanoseconds)))
            responseBody = try await response.body.collect(upTo: Self.maxResponseBytes)
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            return .failure(KinesisError(code: "Timeout", message: "no answer from \(self.endpoint.absoluteString) within \(self.requestTimeout)"))
        } catch {
            return .failure(KinesisError(code: "ConnectionError", message: "\(self.endpoint.absoluteString): \(error)"))
        }
        guard response.status == .ok else {
            var error = Self.parseError(responseBody, headers: response.headers)
            error.status = Int(response.status.code)
            if error.isExpiredCredentials { self.credentials.invalidate() }
            return .failure(error)
        }
        return .success(responseBody)
    }

    // MARK: - Wire format

    /// `{"Records":[{"Data":"<base64>","PartitionKey":"..."}],"StreamName":"..."}` (or `StreamARN`).
    static func requestBody(stream: String, entries: [PutRecordsEntry]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(entries.reduce(64) { $0 + ($1.data.readableBytes * 4) / 3 + $1.partitionKey.utf8.count + 40 })
        out.append(contentsOf: #"{"Records":["#.utf8)
        for (index, entry) in entries.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: #"{"Data":""#.utf8)
            entry.data.withUnsafeReadableBytes { Base64.append($0, to: &out) }
            out.append(contentsOf: #"","PartitionKey":"#.utf8)
            JSONString.append(entry.partitionKey.utf8, to: &out)
            out.append(UInt8(ascii: "}"))
        }
        out.append(contentsOf: stream.hasPrefix("arn:") ? #"],"StreamARN":"#.utf8 : #"],"StreamName":"#.utf8)
        JSONString.append(stream.utf8, to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    static func parseResults(_ body: ByteBuffer, count: Int) -> PutRecordsOutcome {
        guard let records = PutRecordsResponseReader.records(body) else {
            return .failed(KinesisError(code: "InvalidResponse", message: "PutRecords answered 200 without a readable Records list", status: 200))
        }
        guard records.count == count else {
            return .failed(
                KinesisError(code: "InvalidResponse", message: "PutRecords answered \(records.count) results for \(count) records", status: 200))
        }
        return .records(
            records.map { record in
                if let code = record.errorCode {
                    return .failure(KinesisError(code: code, message: record.errorMessage ?? ""))
                }
                guard let shard = record.shardID, let sequence = record.sequenceNumber else {
                    return .failure(KinesisError(code: "InvalidResponse", message: "a record result has neither ShardId nor ErrorCode"))
                }
                return .success(DeliveryReceipt(shardID: shard, sequenceNumber: sequence))
            })
    }

    /// AWS JSON errors (`{"__type": "...#Code", "message": "..."}`), `x-amzn-ErrorType`, or the
    /// XML some endpoints answer signature failures with.
    static func parseError(_ body: ByteBuffer, headers: HTTPHeaders) -> KinesisError {
        var code = headers.first(name: "x-amzn-ErrorType").map { String($0.split(separator: ":").first ?? "") }
        var message = ""
        if let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] {
            if let type = object["__type"] as? String { code = String(type.split(separator: "#").last ?? Substring(type)) }
            message = (object["message"] as? String) ?? (object["Message"] as? String) ?? ""
        } else {
            let text = String(buffer: body)
            if let xmlCode = WebIdentityCredentialsProvider.element("Code", in: text) { code = xmlCode }
            message = WebIdentityCredentialsProvider.element("Message", in: text) ?? ""
        }
        // AWS messages about signatures can be long (they quote the canonical request); keep the gist.
        if message.count > 300 { message = String(message.prefix(300)) + "…" }
        return KinesisError(code: code.flatMap { $0.isEmpty ? nil : $0 } ?? "UnknownError", message: message)
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
