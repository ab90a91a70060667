import Crypto
import CryptoExtras
import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import SluicePolicy

func base64URL(_ data: some DataProtocol) -> String {
    Data(data).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}

func json(_ object: [String: Any]) -> String {
    String(decoding: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
}

/// Tokens made by hand (header, payload, signature), so each can be wrong in one way.
@Suite struct JWTTests {
    let rsa = try! _RSA.Signing.PrivateKey(keySize: .bits2048)
    let ec = P256.Signing.PrivateKey()
    let hmacSecret = "an-hmac-secret-of-at-least-32-bytes!!"
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    var jwks: String {
        let primitives = try! self.rsa.publicKey.getKeyPrimitives()
        let point = self.ec.publicKey.x963Representation
        return json([
            "keys": [
                ["kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig", "n": base64URL(primitives.modulus), "e": base64URL(primitives.publicExponent)],
                ["kty": "EC", "kid": "ec-1", "crv": "P-256", "x": base64URL(point[1...32]), "y": base64URL(point[33...64])],
            ]
        ])
    }

    func chain(algorithms: Set<String> = ["RS256", "ES256", "HS256"]) async throws -> PolicyChain {
        let config = JWTConfig(
            issuer: "https://issuer.example", audiences: ["sluice"], algorithms: algorithms, jwks: self.jwks,
            hmacKeys: ["hs-1": Array(self.hmacSecret.utf8)], clockSkew: .seconds(30), claimsToHeaders: ["tenant": "X-Tenant"])
        let now = self.now
        return try await PolicyRegistry.build([PolicyConfig(name: "jwt", kind: .jwt(config))], wallClock: { now }).chain(["jwt"])
    }

    func claims(_ changes: [String: Any?] = [:]) -> [String: Any] {
        var claims: [String: Any] = [
            "iss": "https://issuer.example", "aud": ["sluice", "other"], "sub": "user-7", "tenant": "acme",
            "exp": self.now.timeIntervalSince1970 + 300, "nbf": self.now.timeIntervalSince1970 - 10,
        ]
        for (key, value) in changes { claims[key] = value }
        return claims
    }

    enum Signer { case rsa, ec, hmac(String), none, garbage }

    func token(alg: String, kid: String?, claims: [String: Any], signer: Signer) -> String {
        var header: [String: Any] = ["alg": alg, "typ": "JWT"]
        if let kid { header["kid"] = kid }
        let input = base64URL(Data(json(header).utf8)) + "." + base64URL(Data(json(claims).utf8))
        let signature: Data
        switch signer {
        case .rsa: signature = try! self.rsa.signature(for: Data(input.utf8), padding: .insecurePKCS1v1_5).rawRepresentation
        case .ec: signature = try! self.ec.signature(for: Data(input.utf8)).rawRepresentation
        case .hmac(let secret):
            signature = Data(HMAC<SHA256>.authenticationCode(for: Data(input.utf8), using: SymmetricKey(data: Data(secret.utf8))))
        case .none: signature = Data()
        case .garbage: signature = Data(repeating: 7, count: 64)
        }
        return input + "." + base64URL(signature)
    }

    func check(_ chain: PolicyChain, _ token: String) async -> Result<PolicyIdentity, PolicyRejection> {
        await chain.evaluate(request(headers: ["Authorization": "Bearer \(token)"]))
    }

    @Test func validTokensOfEachKindAreAccepted() async throws {
        let chain = try await self.chain()
        for (alg, kid, signer) in [("RS256", "rsa-1", Signer.rsa), ("ES256", "ec-1", .ec), ("HS256", "hs-1", .hmac(self.hmacSecret))] {
            let identity = try await self.check(chain, self.token(alg: alg, kid: kid, claims: self.claims(), signer: signer)).get()
            #expect(identity.client == "user-7", "\(alg)")
            #expect(identity.claims["tenant"] == "acme")
            #expect(identity.headers.first?.0 == "X-Tenant" && identity.headers.first?.1 == Optional("acme"))
        }
        // Within the skew: expired 20 s ago, valid from 20 s ahead.
        let lenient = self.claims(["exp": self.now.timeIntervalSince1970 - 20, "nbf": self.now.timeIntervalSince1970 + 20])
        _ = try await self.check(chain, self.token(alg: "ES256", kid: "ec-1", claims: lenient, signer: .ec)).get()
    }

    @Test func everyBadTokenIsRefusedTheSameWay() async throws {
        let chain = try await self.chain()
        let t = self.now.timeIntervalSince1970
        let cases: [(String, String)] = [
            ("expired", self.token(alg: "ES256", kid: "ec-1", claims: self.claims(["exp": t - 31]), signer: .ec)),
            ("no exp", self.token(alg: "ES256", kid: "ec-1", claims: self.claims(["exp": nil]), signer: .ec)),
            ("not yet valid", self.token(alg: "ES256", kid: "ec-1", claims: self.claims(["nbf": t + 31]), signer: .ec)),
            ("wrong audience", self.token(alg: "ES256", kid: "ec-1", claims: self.claims(["aud": "someone-else"]), signer: .ec)),
            ("wrong issuer", self.token(alg: "ES256", kid: "ec-1", claims: self.claims(["iss": "https://evil.example"]), signer: .ec)),
            ("unknown kid", self.token(alg: "ES256", kid: "ec-2", claims: self.claims(), signer: .ec)),
            ("alg none", self.token(alg: "none", kid: "ec-1", claims: self.claims(), signer: .none)),
            ("alg none, no kid", self.token(alg: "none", kid: nil, claims: self.claims(), signer: .none)),
            // HS/RS confusion: HMAC keyed with the RSA public key, naming the RSA key.
            ("HS256 with the RSA key", self.token(alg: "HS256", kid: "rsa-1", claims: self.claims(), signer: .hmac(self.rsa.publicKey.pemRepresentation))),
            ("RS256 naming the HMAC key", self.token(alg: "RS256", kid: "hs-1", claims: self.claims(), signer: .rsa)),
            ("ES256 naming the RSA key", self.token(alg: "ES256", kid: "rsa-1", claims: self.claims(), signer: .ec)),
            ("bad signature", self.token(alg: "ES256", kid: "ec-1", claims: self.claims(), signer: .garbage)),
            ("wrong HMAC secret", self.token(alg: "HS256", kid: "hs-1", claims: self.claims(), signer: .hmac(self.hmacSecret + "x"))),
            ("not a JWT", "abc.def"),
        ]
        for (name, token) in cases {
            #expect(await self.check(chain, token) == .failure(.unauthenticated), "\(name)")
        }
        // Tampered payload: a valid token with its claims replaced.
        let valid = self.token(alg: "ES256", kid: "ec-1", claims: self.claims(), signer: .ec).split(separator: ".")
        let tampered = [String(valid[0]), base64URL(Data(json(self.claims(["sub": "admin"])).utf8)), String(valid[2])].joined(separator: ".")
        #expect(await self.check(chain, tampered) == .failure(.unauthenticated), "tampered payload")
        #expect(await chain.evaluate(request()) == .failure(.unauthenticated), "no token")
        #expect(await chain.evaluate(request(headers: ["Authorization": "Basic dXNlcjpwYXNz"])) == .failure(.unauthenticated))
    }

    @Test func onlyTheConfiguredAlgorithmsAreAccepted() async throws {
        let chain = try await self.chain(algorithms: ["ES256"])
        #expect(await self.check(chain, self.token(alg: "RS256", kid: "rsa-1", claims: self.claims(), signer: .rsa)) == .failure(.unauthenticated))
        #expect(await self.check(chain, self.token(alg: "HS256", kid: "hs-1", claims: self.claims(), signer: .hmac(self.hmacSecret))) == .failure(.unauthenticated))
        _ = try await self.check(chain, self.token(alg: "ES256", kid: "ec-1", claims: self.claims(), signer: .ec)).get()
    }

    @Test func aCachedTokenStillExpires() async throws {
        let clock = NIOLockedValueBox(self.now)
        let config = JWTConfig(issuer: "https://issuer.example", audiences: ["sluice"], algorithms: ["ES256"], jwks: self.jwks, clockSkew: .seconds(30))
        let chain = try await PolicyRegistry.build([PolicyConfig(name: "jwt", kind: .jwt(config))], wallClock: { clock.withLockedValue { $0 } })
            .chain(["jwt"])
        let token = self.token(alg: "ES256", kid: "ec-1", claims: self.claims(), signer: .ec)  // exp: now + 300
        _ = try await self.check(chain, token).get()
        _ = try await self.check(chain, token).get()  // from the cache
        let cache = try #require(chain.policies.first as? JWTPolicy).verified
        #expect(cache.count == 1)
        clock.withLockedValue { $0 = $0.addingTimeInterval(300 + 29) }
        _ = try await self.check(chain, token).get()  // within the skew
        clock.withLockedValue { $0 = $0.addingTimeInterval(2) }
        #expect(await self.check(chain, token) == .failure(.unauthenticated), "expired, cached or not")
    }

    @Test func unusableKeysAreRefusedAtStart() async {
        for jwks in [#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#, #"{"keys":[{"kty":"oct","kid":"k","k":"c2VjcmV0"}]}"#, "[]"] {
            await #expect(throws: JWTKeyError.self) {
                _ = try await PolicyRegistry.build([PolicyConfig(name: "j", kind: .jwt(JWTConfig(issuer: "i", audiences: ["a"], jwks: jwks)))])
            }
        }
    }
}
