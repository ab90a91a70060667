import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import SluiceCore

/// Why credentials could not be had. Never carries a secret.
public struct CredentialsError: Error, CustomStringConvertible, Sendable {
    public var description: String
    /// Whether trying again later may help (STS unreachable) rather than configuration being wrong.
    public var isTransient: Bool

    init(_ description: String, isTransient: Bool = false) {
        self.description = description
        self.isTransient = isTransient
    }
}

/// Gives the credentials to sign with; temporary ones are refreshed before they expire.
public protocol AWSCredentialsProvider: Sendable {
    func credentials() async throws -> AWSCredentials
    /// The credentials were refused as expired: fetch new ones on the next call.
    func invalidate()
    /// Where the credentials come from, for logs (never the secret).
    var source: String { get }
}

extension AWSCredentialsProvider {
    public func invalidate() {}
}

/// Fixed credentials (from the configuration or the environment).
public struct StaticCredentialsProvider: AWSCredentialsProvider {
    let value: AWSCredentials
    public let source: String

    public init(_ credentials: AWSCredentials, source: String) {
        self.value = credentials
        self.source = source
    }

    public func credentials() async throws -> AWSCredentials { self.value }
}

/// A profile of a shared credentials file (`~/.aws/credentials` format). The file is read again
/// when it changes, so rotated keys are picked up without a restart.
public final class ProfileCredentialsProvider: AWSCredentialsProvider {
    let path: String
    let profile: String
    private let cache = NIOLockedValueBox<(modified: Date, credentials: AWSCredentials)?>(nil)

    public var source: String { "profile \"\(self.profile)\" of \(self.path)" }

    public init(path: String, profile: String) throws {
        self.path = path
        self.profile = profile
        _ = try self.load()
    }

    public func credentials() async throws -> AWSCredentials {
        try self.load()
    }

    private func load() throws -> AWSCredentials {
        let modified = (try? FileManager.default.attributesOfItem(atPath: self.path)[.modificationDate] as? Date) ?? .distantPast
        if let cached = self.cache.withLockedValue({ $0 }), cached.modified == modified { return cached.credentials }
        guard let text = try? String(contentsOfFile: self.path, encoding: .utf8) else {
            throw CredentialsError("cannot read the shared credentials file \(self.path)")
        }
        let sections = Self.parseINI(text)
        guard let section = sections[self.profile] else {
            throw CredentialsError("profile \"\(self.profile)\" is not in \(self.path)")
        }
        guard let id = section["aws_access_key_id"], !id.isEmpty, let secret = section["aws_secret_access_key"], !secret.isEmpty else {
            throw CredentialsError("profile \"\(self.profile)\" in \(self.path) needs aws_access_key_id and aws_secret_access_key")
        }
        let credentials = AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: section["aws_session_token"])
        self.cache.withLockedValue { $0 = (modified, credentials) }
        return credentials
    }

    /// `[name]` sections of `key = value` lines; `#` and `;` start comments.
    static func parseINI(_ text: String) -> [String: [String: String]] {
        var sections: [String: [String: String]] = [:]
        var current: String?
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") {
                var name = String(line.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces)
                if name.hasPrefix("profile ") { name = String(name.dropFirst("profile ".count)).trimmingCharacters(in: .whitespaces) }
                current = name
                sections[name, default: [:]] = sections[name] ?? [:]
                continue
            }
            guard let current, let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            sections[current]?[key] = value
        }
        return sections
    }
}

/// STS `AssumeRoleWithWebIdentity` with a token file, as EKS (IRSA) and other OIDC platforms
/// provide: the token file is read anew for every call (the platform rotates it), and the
/// temporary credentials are renewed five minutes before they expire.
public final class WebIdentityCredentialsProvider: AWSCredentialsProvider {
    let roleARN: String
    let tokenFile: String
    let sessionName: String
    let stsEndpoint: URL
    let httpClient: HTTPClient
    /// Renew this long before expiry.
    let refreshMargin: Duration
    private let state = NIOLockedValueBox(State())

    private struct State {
        var credentials: AWSCredentials?
        var refreshing: Task<AWSCredentials, any Error>?
    }

    public var source: String { "web identity (role \(self.roleARN), token \(self.tokenFile))" }

    public init(
        roleARN: String, tokenFile: String, sessionName: String?, stsEndpoint: URL, httpClient: HTTPClient,
        refreshMargin: Duration = .seconds(300)
    ) {
        self.roleARN = roleARN
        self.tokenFile = tokenFile
        self.sessionName = sessionName ?? "sluice-\(Int(Date().timeIntervalSince1970))"
        self.stsEndpoint = stsEndpoint
        self.httpClient = httpClient
        self.refreshMargin = refreshMargin
    }

    public func invalidate() {
        self.state.withLockedValue { $0.credentials = nil }
    }

    public func credentials() async throws -> AWSCredentials {
        let margin = TimeInterval(self.refreshMargin.components.seconds)
        let task: Task<AWSCredentials, any Error> = self.state.withLockedValue { state in
            if let current = state.credentials, let expiry = current.expiration, expiry.timeIntervalSinceNow > margin {
                return Task { current }
            }
            if let running = state.refreshing { return running }
            let task = Task { try await self.assumeRole() }
            state.refreshing = task
            return task
        }
        do {
            let credentials = try await task.value
            self.state.withLockedValue { state in
                state.credentials = credentials
                state.refreshing = nil
            }
            return credentials
        } catch {
            self.state.withLockedValue { $0.refreshing = nil }
            // Still-valid credentials are better than none while STS is unreachable.
            if let current = self.state.withLockedValue({ $0.credentials }), let expiry = current.expiration, expiry > Date() {
                return current
            }
            throw error
        }
    }

    private func assumeRole() async throws -> AWSCredentials {
        guard let token = try? String(contentsOfFile: self.tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
            !token.isEmpty
        else {
            throw CredentialsError("cannot read the web identity token file \(self.tokenFile)")
        }
        let form = PercentEncoding.form([
            ("Action", "AssumeRoleWithWebIdentity"), ("Version", "2011-06-15"), ("RoleArn", self.roleARN),
            ("RoleSessionName", self.sessionName), ("WebIdentityToken", token),
        ])
        var request = HTTPClientRequest(url: self.stsEndpoint.absoluteString)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Accept", value: "application/xml")
        request.body = .bytes(ByteBuffer(string: form))
        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await self.httpClient.execute(request, timeout: .seconds(10))
            body = try await response.body.collect(upTo: 1 << 20)
        } catch {
            throw CredentialsError("STS at \(self.stsEndpoint.absoluteString) unreachable: \(error)", isTransient: true)
        }
        let text = String(buffer: body)
        guard response.status == .ok else {
            let code = Self.element("Code", in: text) ?? "HTTP \(response.status.code)"
            let message = Self.element("Message", in: text) ?? ""
            throw CredentialsError(
                "STS AssumeRoleWithWebIdentity for \(self.roleARN) failed: \(code) \(message)", isTransient: response.status.code >= 500)
        }
        guard let id = Self.element("AccessKeyId", in: text), let secret = Self.element("SecretAccessKey", in: text),
            let sessionToken = Self.element("SessionToken", in: text), let expirationText = Self.element("Expiration", in: text),
            let expiration = Self.parseISO8601(expirationText)
        else {
            throw CredentialsError("STS AssumeRoleWithWebIdentity answered without credentials", isTransient: true)
        }
        return AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: sessionToken, expiration: expiration)
    }

    /// The text of the first `<name>...</name>` (STS answers are small, flat XML).
    static func element(_ name: String, in xml: String) -> String? {
        guard let open = xml.range(of: "<\(name)>"), let close = xml.range(of: "</\(name)>", range: open.upperBound..<xml.endIndex) else {
            return nil
        }
        return String(xml[open.upperBound..<close.lowerBound])
            .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&amp;", with: "&")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func parseISO8601(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }
}

/// Builds the provider a configuration asks for, resolving the default chain like the AWS SDKs.
public enum CredentialsResolver {
    public static func provider(
        for config: KinesisSinkConfig.CredentialsConfig, region: String, environment: [String: String], httpClient: HTTPClient
    ) throws -> any AWSCredentialsProvider {
        func stsEndpoint() -> URL {
            if let url = (environment["AWS_ENDPOINT_URL_STS"] ?? environment["AWS_ENDPOINT_URL"]).flatMap(URL.init(string:)) { return url }
            return URL(string: "https://sts.\(region).amazonaws.com/")!
        }
        switch config {
        case .static(let id, let secret, let token):
            let credentials = AWSCredentials(
                accessKeyID: try Self.read(id, what: "access key id", environment: environment),
                secretAccessKey: try Self.read(secret, what: "secret access key", environment: environment),
                sessionToken: try token.map { try Self.read($0, what: "session token", environment: environment) })
            return StaticCredentialsProvider(credentials, source: "static credentials (key \(credentials.accessKeyID))")
        case .profile(let name, let file):
            return try ProfileCredentialsProvider(path: file ?? Self.sharedCredentialsFile(environment), profile: name)
        case .webIdentity(let role, let tokenFile, let sessionName):
            return WebIdentityCredentialsProvider(
                roleARN: role, tokenFile: tokenFile, sessionName: sessionName ?? environment["AWS_ROLE_SESSION_NAME"],
                stsEndpoint: stsEndpoint(), httpClient: httpClient)
        case .defaultChain:
            if let id = environment["AWS_ACCESS_KEY_ID"], !id.isEmpty, let secret = environment["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty {
                let token = environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
                return StaticCredentialsProvider(
                    AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: token),
                    source: "environment (AWS_ACCESS_KEY_ID \(id))")
            }
            if let tokenFile = environment["AWS_WEB_IDENTITY_TOKEN_FILE"], !tokenFile.isEmpty, let role = environment["AWS_ROLE_ARN"], !role.isEmpty {
                return WebIdentityCredentialsProvider(
                    roleARN: role, tokenFile: tokenFile, sessionName: environment["AWS_ROLE_SESSION_NAME"], stsEndpoint: stsEndpoint(),
                    httpClient: httpClient)
            }
            let file = Self.sharedCredentialsFile(environment)
            if FileManager.default.fileExists(atPath: file) {
                return try ProfileCredentialsProvider(path: file, profile: environment["AWS_PROFILE"] ?? "default")
            }
            throw CredentialsError(
                "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, "
                    + "provide \(file), or configure credentials on the sink")
        }
    }

    static func sharedCredentialsFile(_ environment: [String: String]) -> String {
        if let file = environment["AWS_SHARED_CREDENTIALS_FILE"], !file.isEmpty { return file }
        return (environment["HOME"] ?? NSHomeDirectory()) + "/.aws/credentials"
    }

    static func read(_ source: KinesisSinkConfig.SecretSource, what: String, environment: [String: String]) throws -> String {
        do {
            return try source.read(what: what, environment: environment)
        } catch let error as SecretError {
            throw CredentialsError(error.description)
        }
    }
}
