import Foundation

/// A throwaway PKI made with the openssl CLI, all signed by one CA: a server certificate for
/// 127.0.0.1 and `localhost` (and a renewed one, CN `renewed-server`), one for `other.test`, and a
/// client certificate (CN `client-a`, SANs `client-a.example`, `spiffe://sluice.test/client-a`).
struct TLSFixtures {
    let directory: URL
    var caCertificate: String { self.path("ca.pem") }
    var serverCertificate: String { self.path("server.pem") }
    var serverKey: String { self.path("server.key") }
    var clientCertificate: String { self.path("client.pem") }
    var clientKey: String { self.path("client.key") }

    func path(_ name: String) -> String { self.directory.appendingPathComponent(name).path }

    init(in directory: URL) async throws {
        self.directory = directory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let script = """
            set -e
            cd '\(directory.path)'
            cat > ext.cnf <<'EOF'
            [server]
            subjectAltName = IP:127.0.0.1, DNS:localhost
            extendedKeyUsage = serverAuth
            [other]
            subjectAltName = DNS:other.test
            extendedKeyUsage = serverAuth
            [renewed]
            subjectAltName = IP:127.0.0.1, DNS:localhost
            extendedKeyUsage = serverAuth
            [client]
            subjectAltName = DNS:client-a.example, URI:spiffe://sluice.test/client-a
            extendedKeyUsage = clientAuth
            EOF
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=sluice-test-ca 2>/dev/null
            for who in server client other renewed; do
              cn=127.0.0.1; [ $who = client ] && cn=client-a; [ $who = other ] && cn=other.test; [ $who = renewed ] && cn=renewed-server
              openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $who.key -out $who.csr -subj /CN=$cn 2>/dev/null
              openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $who.pem -days 2 -extfile ext.cnf -extensions $who 2>/dev/null
            done
            """
        let result = try await runProgram("sh", ["-c", script])
        guard result.status == 0 else { throw HarnessError("openssl failed: \(result.stderr)") }
    }
}

/// nginx (from Debian) started in the foreground on `{PORT}` with `server` as the body of its
/// one server block (a `listen` line is added), its files under its own directory.
func startNginx(_ name: String, server: (Int) -> String) async throws -> PeerProcess {
    let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("sluice-nginx-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let port = try freePort()
    let config = """
        worker_processes 1;
        daemon off;
        pid \(directory.path)/nginx.pid;
        error_log stderr warn;
        events { worker_connections 1024; }
        http {
            access_log off;
            client_body_temp_path \(directory.path)/body;
            proxy_temp_path \(directory.path)/proxy;
            fastcgi_temp_path \(directory.path)/fastcgi;
            uwsgi_temp_path \(directory.path)/uwsgi;
            scgi_temp_path \(directory.path)/scgi;
            server {
                \(server(port))
            }
        }
        """
    let path = directory.appendingPathComponent("nginx.conf").path
    try config.write(toFile: path, atomically: true, encoding: .utf8)
    return try await PeerProcess(name, [FileManager.default.isExecutableFile(atPath: "/usr/sbin/nginx") ? "/usr/sbin/nginx" : try which("nginx"), "-p", directory.path, "-c", path], fixedPort: port, ownedDirectory: directory)
}
