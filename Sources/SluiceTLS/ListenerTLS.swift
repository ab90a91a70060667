import Foundation
import Logging
import NIOCertificateReloading
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import SluiceConfig

/// The TLS side of a listener: its certificates (a default and others chosen by SNI), ALPN
/// (`h2`, `http/1.1`), TLS 1.2+ (or 1.3), and client certificates checked against a CA bundle
/// when asked for. Certificate files are re-read when they change; new connections get the
/// new certificates, open ones keep theirs.
public final class ListenerTLS: CertificateReloader, Sendable {
    public let config: ListenerTLSConfig
    private let loaded: NIOLockedValueBox<Loaded>
    /// Read by the SNI callback of whichever context is current.
    private let byServerName: NIOLockedValueBox<[SNIEntry]>

    struct SNIEntry: Sendable {
        var pattern: String
        var chain: [NIOSSLCertificate]
        var key: NIOSSLPrivateKey
    }

    struct Loaded: Sendable {
        var context: NIOSSLContext
        var stamps: [FileStamp]
        /// The default certificate, for the gRPC transport (which builds its own context).
        var chain: [NIOSSLCertificate]
        var key: NIOSSLPrivateKey
    }

    struct FileStamp: Equatable, Sendable {
        var path: String
        var modified: Date?
        var size: Int?
    }

    public init(config: ListenerTLSConfig) throws {
        self.config = config
        let table = NIOLockedValueBox<[SNIEntry]>([])
        self.byServerName = table
        let (context, entries, chain, key) = try Self.load(config, table: table)
        table.withLockedValue { $0 = entries }
        self.loaded = NIOLockedValueBox(Loaded(context: context, stamps: Self.stamps(config), chain: chain, key: key))
    }

    /// The current default certificate and key (CertificateReloader, for the gRPC listener).
    public var sslContextConfigurationOverride: NIOSSLContextConfigurationOverride {
        let (chain, key) = self.loaded.withLockedValue { ($0.chain, $0.key) }
        var override = NIOSSLContextConfigurationOverride()
        override.certificateChain = chain.map { .certificate($0) }
        override.privateKey = .privateKey(key)
        return override
    }

    /// The handlers for one new connection, with the current certificates: the TLS handler
    /// between the two of `RaggedEndCloser` (for a channel that allows half-closure).
    public func makeHandlers() -> [any ChannelHandler] {
        RaggedEndCloser.handlers(around: NIOSSLServerHandler(context: self.loaded.withLockedValue { $0.context }))
    }

    private static func files(_ config: ListenerTLSConfig) -> [String] {
        config.certificates.flatMap { [$0.certificateFile, $0.keyFile] } + (config.clientCAFile.map { [$0] } ?? [])
    }

    private static func stamps(_ config: ListenerTLSConfig) -> [FileStamp] {
        Self.files(config).map { path in
            let attributes = try? FileManager.default.attributesOfItem(atPath: path)
            return FileStamp(
                path: path, modified: attributes?[.modificationDate] as? Date, size: (attributes?[.size] as? NSNumber)?.intValue)
        }
    }

    private static func load(
        _ config: ListenerTLSConfig, table: NIOLockedValueBox<[SNIEntry]>
    ) throws -> (NIOSSLContext, [SNIEntry], [NIOSSLCertificate], NIOSSLPrivateKey) {
        var entries: [SNIEntry] = []
        var defaultChain: [NIOSSLCertificate] = []
        var defaultKey: NIOSSLPrivateKey?
        for (index, certificate) in config.certificates.enumerated() {
            let chain = try NIOSSLCertificate.fromPEMFile(certificate.certificateFile)
            guard !chain.isEmpty else { throw ListenerTLSError("\(certificate.certificateFile): no certificate in the file") }
            let key = try NIOSSLPrivateKey(file: certificate.keyFile, format: .pem)
            if index == 0 {
                defaultChain = chain
                defaultKey = key
            }
            for name in certificate.serverNames { entries.append(SNIEntry(pattern: name, chain: chain, key: key)) }
        }
        guard let defaultKey else { throw ListenerTLSError("no certificate configured") }
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: defaultChain.map { .certificate($0) }, privateKey: .privateKey(defaultKey))
        tls.minimumTLSVersion = config.minimumVersion == .tls13 ? .tlsv13 : .tlsv12
        tls.applicationProtocols = ["h2", "http/1.1"]
        switch config.clientCertificates {
        case .none:
            tls.certificateVerification = .none
        case .optional, .required:
            guard let caFile = config.clientCAFile else { throw ListenerTLSError("client_ca_file is required") }
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            tls.certificateVerification = config.clientCertificates == .required ? .noHostnameVerification : .optionalVerification
            tls.sendCANameList = true
        }
        if !entries.isEmpty {
            tls.sslContextCallback = { values, promise in
                guard let name = values.serverHostname?.lowercased(),
                    let entry = table.withLockedValue({ Self.match(name, in: $0) })
                else {
                    promise.succeed(.noChanges)
                    return
                }
                var override = NIOSSLContextConfigurationOverride()
                override.certificateChain = entry.chain.map { .certificate($0) }
                override.privateKey = .privateKey(entry.key)
                promise.succeed(override)
            }
        }
        return (try NIOSSLContext(configuration: tls), entries, defaultChain, defaultKey)
    }

    /// An exact name first, then the longest `*.suffix` (one label, as certificates match).
    static func match(_ name: String, in entries: [SNIEntry]) -> SNIEntry? {
        if let exact = entries.first(where: { $0.pattern == name }) { return exact }
        guard let dot = name.firstIndex(of: ".") else { return nil }
        let wildcard = "*" + name[dot...]
        return entries.first { $0.pattern == wildcard }
    }

    /// Re-reads the files if any changed; a set that does not load is logged and the current
    /// one kept. Returns whether new certificates are in use.
    @discardableResult
    func reloadIfChanged(logger: Logger) -> Bool {
        let stamps = Self.stamps(self.config)
        guard stamps != self.loaded.withLockedValue({ $0.stamps }) else { return false }
        do {
            let (context, entries, chain, key) = try Self.load(self.config, table: self.byServerName)
            self.byServerName.withLockedValue { $0 = entries }
            self.loaded.withLockedValue { $0 = Loaded(context: context, stamps: stamps, chain: chain, key: key) }
            logger.info("TLS certificates reloaded")
            return true
        } catch {
            // Remember the stamps: a half-written file is retried when it changes again.
            self.loaded.withLockedValue { $0.stamps = stamps }
            logger.error("TLS certificates changed but do not load; keeping the current ones", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// Checks the files every `reload_interval` until cancelled.
    public func watch(logger: Logger) async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: self.config.reloadInterval) } catch { return }
            self.reloadIfChanged(logger: logger)
        }
    }

    /// The verified client certificate of a connection, for policies.
    public static func clientIdentity(of channel: any Channel) -> TLSClientIdentity? {
        guard let handler = try? channel.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self),
            let certificate = handler.peerCertificate
        else { return nil }
        return TLSClientIdentity(certificate)
    }
}

struct ListenerTLSError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Who a verified client certificate names: its subject and subject alternative names. A class
/// (immutable): every request on the connection carries it, and a reference copies as one retain.
public final class TLSClientIdentity: Sendable, Equatable {
    /// `CN=client-a,O=Example` (subject attributes in certificate order).
    public let subject: String
    public let commonName: String?
    /// DNS names, URIs (e.g. SPIFFE IDs), e-mail addresses and IP addresses.
    public let alternativeNames: [String]

    public static func == (lhs: TLSClientIdentity, rhs: TLSClientIdentity) -> Bool {
        lhs.subject == rhs.subject && lhs.commonName == rhs.commonName && lhs.alternativeNames == rhs.alternativeNames
    }

    init(_ certificate: NIOSSLCertificate) {
        let names = certificate.subjectName
        func short(_ type: SSLCertificateNameType) -> String {
            switch type {
            case .commonName: return "CN"
            case .organization: return "O"
            case .organizationalUnit: return "OU"
            case .country: return "C"
            case .state: return "ST"
            case .city: return "L"
            case .emailAddress: return "emailAddress"
            default: return "OID"
            }
        }
        self.subject = names.map { "\(short($0.type))=\($0.value)" }.joined(separator: ",")
        self.commonName = names.last { $0.type == .commonName }?.value
        var alternatives: [String] = []
        do {
            for san in certificate._subjectAlternativeNames() {
                let bytes = san.contents.withUnsafeBufferPointer { Array($0) }
                switch san.nameType {
                case .dnsName, .uri, .email:
                    alternatives.append(String(decoding: bytes, as: UTF8.self))
                case .ipAddress:
                    if let address = Self.ipAddress(bytes) { alternatives.append(address) }
                default:
                    continue
                }
            }
        }
        self.alternativeNames = alternatives
    }

    /// An IP address SAN (4 or 16 bytes) as text: dotted IPv4, or IPv6 as eight hex groups.
    public static func ipAddress(_ bytes: [UInt8]) -> String? {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        guard bytes.count == 16 else { return nil }
        return stride(from: 0, to: 16, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }.joined(separator: ":")
    }

    /// The names a policy may match: the common name and every alternative name.
    public var principals: [String] {
        (self.commonName.map { [$0] } ?? []) + self.alternativeNames
    }
}
