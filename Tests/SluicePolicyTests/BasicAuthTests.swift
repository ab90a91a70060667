import Foundation
import HummingbirdBcrypt
import Testing

@testable import SluicePolicy

@Suite struct BasicAuthTests {
    func basic(_ user: String, _ password: String) -> [String: String] {
        ["Authorization": "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()]
    }

    @Test func htpasswdBcryptAndSHAEntries() async throws {
        let users = [
            // OpenBSD's bcrypt test vector: "U*U".
            "vector": "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            "fresh": Bcrypt.hash("correct horse", cost: 4),
            // htpasswd -s: "password".
            "legacy": "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
            // htpasswd -nbB -C 5 (apache2-utils 2.4.71): "correct horse", with the $2y$ prefix htpasswd writes.
            "apache": "$2y$05$3NZH.ijqdULpAJokzL/FW.bDCeGVgVedi2/n0Jx2oQMym.iwNtUlC",
        ]
        for (_, hash) in users { #expect(BasicAuthConfig.hashProblem(hash) == nil, "\(hash)") }
        let chain = PolicyRegistry([PolicyConfig(name: "b", kind: .basicAuth(BasicAuthConfig(users: users, realm: "ingest")))]).chain(["b"])
        #expect(try await chain.evaluate(request(headers: self.basic("vector", "U*U"))).get().client == "vector")
        #expect(try await chain.evaluate(request(headers: self.basic("fresh", "correct horse"))).get().client == "fresh")
        #expect(try await chain.evaluate(request(headers: self.basic("legacy", "password"))).get().client == "legacy")
        #expect(try await chain.evaluate(request(headers: self.basic("apache", "correct horse"))).get().client == "apache")
        // Again, from the cache of verified pairs; a wrong password is not helped by it.
        #expect(try await chain.evaluate(request(headers: self.basic("fresh", "correct horse"))).get().client == "fresh")
        for headers in [self.basic("fresh", "correct horsE"), self.basic("apache", "correct horsE"), self.basic("nobody", "U*U"), self.basic("legacy", ""), [:],
                        ["Authorization": "Basic !!!"], ["Authorization": "Bearer x"]] {
            guard case .failure(let rejection) = await chain.evaluate(request(headers: headers)) else {
                Issue.record("accepted \(headers)")
                continue
            }
            #expect(rejection.status == 401 && rejection.message == "missing or invalid credentials")
            #expect(rejection.headers["www-authenticate"] == "Basic realm=\"ingest\", charset=\"UTF-8\"")
        }
    }

    @Test func weakOrPlainEntriesAreRefusedAtLoad() {
        #expect(BasicAuthConfig.hashProblem("hunter2") != nil)
        #expect(BasicAuthConfig.hashProblem("$apr1$abc$def") != nil)
        #expect(BasicAuthConfig.hashProblem("$2y$05$short") != nil)
        // crypt_blowfish's flawed compatibility variant and the original $2$ are refused, by name.
        #expect(BasicAuthConfig.hashProblem("$2x$05$3NZH.ijqdULpAJokzL/FW.bDCeGVgVedi2/n0Jx2oQMym.iwNtUlC")?.contains("legacy") == true)
        #expect(BasicAuthConfig.hashProblem("{SHA}bm90IDIwIGJ5dGVz") != nil)
    }
}
