// libFuzzer target: a jwt policy's token check (JWT.swift: header, key choice, claims, times,
// issuer and audience), built with the SluicePolicy sources by scripts/fuzz.sh.
// Byte 0 even: the rest is a token as a client sends it; it must never verify (no input forges
// a signature). Byte 0 odd: the rest is header JSON, a NUL, claims JSON; the target signs them
// with the HS256 key "k1", and a token that verifies must say exactly what the policy requires.
import Crypto
import Dispatch
import Foundation

let issuer = "https://issuer.example"
let now = Date(timeIntervalSince1970: 1_800_000_000)
let secret = Array("0123456789abcdef0123456789abcdef".utf8)

/// An EC public key beside the HMAC secret: the header's kid and alg must pick between them.
func ecJWKS() -> String {
    let key = P256.Signing.PrivateKey().publicKey.x963Representation.dropFirst()
    func b64url(_ bytes: some Collection<UInt8>) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
    return #"{"keys":[{"kty":"EC","crv":"P-256","kid":"ec","alg":"ES256","x":"\#(b64url(key.prefix(32)))","y":"\#(b64url(key.suffix(32)))"}]}"#
}

func blocking<T: Sendable>(_ work: @escaping @Sendable () async -> T) -> T {
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var result: T?
    Task {
        result = await work()
        done.signal()
    }
    done.wait()
    return result!
}

let policy: JWTPolicy = blocking {
    let config = JWTConfig(
        issuer: issuer, audiences: ["sluice"], algorithms: ["HS256", "HS384", "ES256", "RS256"], jwks: ecJWKS(),
        hmacKeys: ["k1": secret], clockSkew: .seconds(30))
    let keys = try! await JWTKeySet.make(config)
    return JWTPolicy(config: config, store: JWTKeyStore(name: "fuzz", config: config, keys: keys), now: { now })
}

func base64URL(_ bytes: some Sequence<UInt8>) -> String {
    Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let input = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let verifier = policy
    if data[0] & 1 == 0 {
        let token = String(decoding: input, as: UTF8.self)
        let claims = blocking { await verifier.verify(token) }
        precondition(claims == nil, "a token no one signed verified")
        return 0
    }
    let parts = input.split(separator: 0, maxSplits: 1, omittingEmptySubsequences: false)
    guard parts.count == 2 else { return 0 }
    let signingInput = base64URL(parts[0]) + "." + base64URL(parts[1])
    let mac = HMAC<SHA256>.authenticationCode(for: Array(signingInput.utf8), using: SymmetricKey(data: secret))
    let token = signingInput + "." + base64URL(Array(mac))
    guard let claims = blocking({ await verifier.verify(token) }) else { return 0 }

    // It verified: the header named this key and this algorithm, and the claims are current,
    // from the issuer, for the audience.
    let header = (try? JSONSerialization.jsonObject(with: Data(parts[0]))) as? [String: Any]
    precondition(header?["alg"] as? String == "HS256", "verified under an alg other than the one it was signed with")
    precondition(header?["kid"] as? String == "k1", "verified without naming its key")
    precondition(claims.issuer == issuer, "verified for another issuer")
    precondition(claims.audiences.contains("sluice"), "verified for another audience")
    guard let exp = claims.expiration else { preconditionFailure("verified without exp") }
    precondition(now.timeIntervalSince1970 < exp + 30, "verified after it expired")
    if let nbf = claims.notBefore { precondition(now.timeIntervalSince1970 + 30 >= nbf, "verified before nbf") }
    return 0
}
