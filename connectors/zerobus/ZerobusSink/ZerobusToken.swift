import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import SluiceCore

/// Why a Zerobus token could not be had. Never carries the client secret or a token.
public struct ZerobusTokenError: Error, CustomStringConvertible, Sendable {
    public var description: String
    /// The token endpoint refused the client (bad id or secret, or no grant): retrying will not help.
    public var isPermanent: Bool
}

/// OAuth machine-to-machine tokens for Zerobus: client credentials at
/// `{workspace_url}/oidc/v1/token`, one token per table (its `authorization_details` grant USE
/// CATALOG, USE SCHEMA and SELECT + MODIFY on that table, as the official SDKs ask), cached and
/// renewed before it expires; concurrent callers share one request.
public final class ZerobusTokenProvider: Sendable {
    let tokenURL: String
    let resource: String
    let clientID: String
    let clientSecret: String
    let httpClient: HTTPClient
    /// Renew this long before expiry (capped at half the token's lifetime).
    let refreshMargin: Duration
    /// The clock renewals are timed by (tests move it by hand).
    let now: @Sendable () -> ContinuousClock.Instant
    private let state = NIOLockedValueBox<[String: Entry]>([:])

    private struct Entry {
        var token: String?
        var expiresAt: ContinuousClock.Instant = .now
        var renewAt: ContinuousClock.Instant = .now
        var fetching: Task<(String, Duration), any Error>?
    }

    /// - Parameter workspaceID: the workspace of the `resource` claim; the official SDKs take it
    ///   from the first label of the Zerobus host (`<workspace id>.zerobus.<region>.…`).
    public init(
        workspaceURL: URL, workspaceID: String, clientID: String, clientSecret: String, httpClient: HTTPClient,
        refreshMargin: Duration = .seconds(60), now: @escaping @Sendable () -> ContinuousClock.Instant = { .now }
    ) {
        var base = workspaceURL.absoluteString
        while base.hasSuffix("/") { base.removeLast() }
        self.tokenURL = base + "/oidc/v1/token"
        self.resource = "api://databricks/workspaces/\(workspaceID)/zerobusDirectWriteApi"
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.httpClient = httpClient
        self.refreshMargin = refreshMargin
        self.now = now
    }

    /// A token good for `table` (catalog.schema.table) for a while yet.
    public func token(for table: String) async throws -> String {
        let now = self.now()
        let task: Task<(String, Duration), any Error> = self.state.withLockedValue { entries in
            var entry = entries[table] ?? Entry()
            if let token = entry.token, now < entry.renewAt { return Task { (token, .zero) } }
            if let running = entry.fetching { return running }
            let task = Task { try await self.fetch(table: table) }
            entry.fetching = task
            entries[table] = entry
            return task
        }
        do {
            let (token, lifetime) = try await task.value
            if lifetime > .zero {
                let margin = min(self.refreshMargin, lifetime / 2)
                self.state.withLockedValue { entries in
                    entries[table] = Entry(token: token, expiresAt: now + lifetime, renewAt: now + lifetime - margin, fetching: nil)
                }
            }
            return token
        } catch {
            let fallback: String? = self.state.withLockedValue { entries in
                entries[table]?.fetching = nil
                // A token that has not expired yet beats none while the endpoint is unreachable.
                if let entry = entries[table], let token = entry.token, self.now() < entry.expiresAt { return token }
                return nil
            }
            if let fallback, (error as? ZerobusTokenError)?.isPermanent != true { return fallback }
            throw error
        }
    }

    /// Forgets the table's token (the server refused it): the next call fetches a new one.
    public func invalidate(table: String) {
        self.state.withLockedValue { $0[table]?.token = nil }
    }

    /// Drops everything kept for the table (its stream retired), unless a fetch is under way.
    public func forget(table: String) {
        self.state.withLockedValue { entries in
            if entries[table]?.fetching == nil { entries[table] = nil }
        }
    }

    /// The `authorization_details` the official SDKs send for one table.
    static func authorizationDetails(table: String) -> String {
        let parts = table.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        let catalog = parts.first ?? table
        let schema = parts.count >= 2 ? "\(parts[0]).\(parts[1])" : table
        let details: [[String: Any]] = [
            ["type": "unity_catalog_privileges", "privileges": ["USE CATALOG"], "object_type": "CATALOG", "object_full_path": catalog],
            ["type": "unity_catalog_privileges", "privileges": ["USE SCHEMA"], "object_type": "SCHEMA", "object_full_path": schema],
            [
                "type": "unity_catalog_privileges", "privileges": ["SELECT", "MODIFY"], "object_type": "TABLE", "object_full_path": table,
                "operations": ["zerobuswrite"],
            ],
        ]
        let data = (try? JSONSerialization.data(withJSONObject: details, options: [.sortedKeys])) ?? Data("[]".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    private func fetch(table: String) async throws -> (String, Duration) {
        let form = PercentEncoding.form([
            ("grant_type", "client_credentials"), ("scope", "all-apis"), ("resource", self.resource),
            ("authorization_details", Self.authorizationDetails(table: table)),
        ])
        var request = HTTPClientRequest(url: self.tokenURL)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Accept", value: "application/json")
        let basic = Data("\(self.clientID):\(self.clientSecret)".utf8).base64EncodedString()
        request.headers.add(name: "Authorization", value: "Basic \(basic)")
        request.body = .bytes(ByteBuffer(string: form))
        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await self.httpClient.execute(request, timeout: .seconds(10))
            body = try await response.body.collect(upTo: 1 << 20)
        } catch {
            throw ZerobusTokenError(description: "token endpoint \(self.tokenURL) unreachable: \(error)", isPermanent: false)
        }
        let object = (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any]
        guard response.status == .ok else {
            // OAuth errors: {"error": "invalid_client", "error_description": "..."}; say no more.
            let code = object?["error"] as? String ?? "HTTP \(response.status.code)"
            throw ZerobusTokenError(
                description: "token endpoint \(self.tokenURL) refused client \(self.clientID) for \(table): \(code)",
                isPermanent: response.status.code == 400 || response.status.code == 401 || response.status.code == 403)
        }
        guard let token = object?["access_token"] as? String, !token.isEmpty else {
            throw ZerobusTokenError(description: "token endpoint \(self.tokenURL) answered without access_token", isPermanent: false)
        }
        let seconds = (object?["expires_in"] as? Int) ?? Int((object?["expires_in"] as? String) ?? "") ?? 3600
        return (token, .seconds(max(1, seconds)))
    }
}
