import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Runs a program to completion and captures its output.
struct ProgramResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Every child process of the tests is started through this, one at a time, together with the
/// pipes it gets. Foundation's Process (Linux) emulates close-on-exec by listing the open
/// descriptors just before posix_spawn, so a pipe, or the socket another Process watches its
/// child's exit with, created by another thread at that moment would leak into the new child;
/// leaked into a long-lived server, it would keep a short-lived program's pipe or exit socket
/// open and the test would wait forever for its output or exit.
private let spawnLock = NSLock()

func spawnSerially<T>(_ body: () throws -> T) rethrows -> T {
    try spawnLock.withLock(body)
}

/// Runs a program to its end on a thread of its own. The test runner has as few cooperative
/// threads as the machine has cores; a test that blocked one for a subprocess's lifetime
/// stalled every other test with it (a recovery test missed its deadline that way in CI).
@discardableResult
func runProgram(
    _ executable: String, _ arguments: [String], stdin: Data? = nil, environment: [String: String]? = nil, directory: URL? = nil
) async throws -> ProgramResult {
    try await offThePool { try runProgramBlocking(executable, arguments, stdin: stdin, environment: environment, directory: directory) }
}

private func runProgramBlocking(
    _ executable: String, _ arguments: [String], stdin: Data?, environment: [String: String]?, directory: URL?
) throws -> ProgramResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable.hasPrefix("/") ? executable : try which(executable))
    process.arguments = arguments
    if let environment { process.environment = environment }
    if let directory { process.currentDirectoryURL = directory }
    let (out, err, input) = try spawnSerially {
        let (out, err, input) = (Pipe(), Pipe(), Pipe())
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        return (out, err, input)
    }
    if let stdin { input.fileHandleForWriting.write(stdin) }
    try input.fileHandleForWriting.close()
    // Read both pipes before waiting, so a chatty program cannot fill one and block.
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return ProgramResult(
        status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
}

/// Runs blocking work on a thread of its own and awaits it: a long-running program (a test
/// suite of its own, a load loop) must not hold one of the few threads Swift concurrency runs
/// every other test on (two on a 2-core machine).
func offThePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            do { continuation.resume(returning: try work()) } catch { continuation.resume(throwing: error) }
        }
        thread.start()
    }
}

func which(_ name: String) throws -> String {
    for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let path = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    throw HarnessError("\(name) is not installed; run scripts/setup.sh")
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Ports already handed out in this test run: the kernel may offer a just-closed port again,
/// and tests that run in parallel must not be given the same one.
private let handedOutPorts = NIOLockedPorts()

final class NIOLockedPorts: @unchecked Sendable {
    private let lock = NSLock()
    private var ports: Set<Int> = []
    func claim(_ port: Int) -> Bool { self.lock.withLock { self.ports.insert(port).inserted } }
}

/// A TCP port that was free a moment ago and has not been handed out before in this run.
func freePort() throws -> Int {
    for _ in 0..<100 {
        let port = try kernelFreePort()
        if handedOutPorts.claim(port) { return port }
    }
    throw HarnessError("no fresh free port")
}

private func kernelFreePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw HarnessError("socket() failed") }
    defer { close(fd) }
    var address = loopbackAddress(port: 0)
    let bound = withSockaddr(&address) { pointer, length in
        var length = length
        return bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
    }
    guard bound else { throw HarnessError("bind() failed") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// 127.0.0.1 at `port` (0: the kernel picks one at bind).
func loopbackAddress(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    return address
}

/// `address` as the `sockaddr` pointer and length that bind, connect and getsockname take.
func withSockaddr<T>(_ address: inout sockaddr_in, _ body: (UnsafeMutablePointer<sockaddr>, socklen_t) -> T) -> T {
    withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
}

/// The `sluice` binary built next to this test bundle (or SLUICE_BINARY).
func sluiceBinary() throws -> String {
    if let path = ProcessInfo.processInfo.environment["SLUICE_BINARY"] { return path }
    var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = directory.appendingPathComponent("sluice").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        directory = directory.deletingLastPathComponent()
    }
    let fallback = packageRoot.appendingPathComponent(".build/debug/sluice").path
    if FileManager.default.isExecutableFile(atPath: fallback) { return fallback }
    throw HarnessError("cannot find the sluice binary; run `swift build` or set SLUICE_BINARY")
}

let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The broker the end-to-end tests use. `make test` starts one; without it these tests fail, never skip.
let kafkaBootstrap = ProcessInfo.processInfo.environment["SLUICE_TEST_KAFKA_BOOTSTRAP"] ?? "127.0.0.1:19092"

func requireBroker() async throws {
    let result = try await runProgram("kcat", ["-L", "-b", kafkaBootstrap, "-m", "5"])
    if result.status != 0 {
        throw HarnessError(
            "no Kafka broker at \(kafkaBootstrap) (\(result.stderr.prefix(200))). Start one with scripts/kafka-broker.sh start, or run make test.")
    }
}

func uniqueTopic(_ name: String) -> String {
    "e2e-\(name)-\(UUID().uuidString.prefix(8).lowercased())"
}

/// A running `sluice run` process with its own ports and working directory.
final class SluiceProcess: @unchecked Sendable {
    private(set) var process = Process()
    private(set) var port: Int
    private(set) var adminPort: Int
    /// A free port for the gRPC listener, for configs that use `{GRPC_PORT}`.
    private(set) var grpcPort: Int
    let workDirectory: URL
    let logURL: URL

    /// Starts sluice with `config` (a YAML template: `{PORT}`, `{ADMIN_PORT}`, `{KAFKA}` are filled in),
    /// or with the embedded default config when `config` is nil.
    /// `launcher`: a program and its arguments that run sluice (e.g. prlimit with a lower descriptor limit).
    ///
    /// The ports were free a moment ago, not reserved: when a process outside this run took one
    /// first (Sluice exits with "Address already in use"), it starts again on fresh ports.
    init(
        config: String?, arguments: [String] = [], environment: [String: String] = [:], launcher: [String] = [], waitUntilReady: Bool = true
    ) async throws {
        self.workDirectory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("sluice-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: self.workDirectory, withIntermediateDirectories: true)
        self.logURL = self.workDirectory.appendingPathComponent("sluice.log")
        (self.port, self.adminPort, self.grpcPort) = config == nil ? (8080, 9901, try freePort()) : (try freePort(), try freePort(), try freePort())
        for attempt in 1...3 {
            if attempt > 1 {
                self.process = Process()
                (self.port, self.adminPort, self.grpcPort) = (try freePort(), try freePort(), try freePort())
            }
            try self.spawn(config: config, arguments: arguments, environment: environment, launcher: launcher)
            guard waitUntilReady else { return }
            do {
                try await self.waitUntilReady()
                return
            } catch {
                let portTaken = !self.process.isRunning && self.log.contains("Address already in use")
                guard config != nil, portTaken, attempt < 3 else { throw error }
            }
        }
    }

    private func spawn(config: String?, arguments: [String], environment: [String: String], launcher: [String]) throws {
        var args = ["run"]
        if let config {
            let text = config
                .replacingOccurrences(of: "{PORT}", with: String(self.port))
                .replacingOccurrences(of: "{ADMIN_PORT}", with: String(self.adminPort))
                .replacingOccurrences(of: "{GRPC_PORT}", with: String(self.grpcPort))
                .replacingOccurrences(of: "{KAFKA}", with: kafkaBootstrap)
            let path = self.workDirectory.appendingPathComponent("sluice.yaml")
            try text.write(to: path, atomically: true, encoding: .utf8)
            args += ["--config", path.path]
        }
        if launcher.isEmpty {
            self.process.executableURL = URL(fileURLWithPath: try sluiceBinary())
            self.process.arguments = args + arguments
        } else {
            self.process.executableURL = URL(fileURLWithPath: try which(launcher[0]))
            self.process.arguments = Array(launcher.dropFirst()) + [try sluiceBinary()] + args + arguments
        }
        self.process.currentDirectoryURL = self.workDirectory
        if !environment.isEmpty { self.process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        _ = FileManager.default.createFile(atPath: self.logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: self.logURL)
        self.process.standardOutput = log
        self.process.standardError = log
        try spawnSerially { try self.process.run() }
    }

    var baseURL: String { "http://127.0.0.1:\(self.port)" }

    var log: String { (try? String(contentsOf: self.logURL, encoding: .utf8)) ?? "" }

    func waitUntilReady(timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard self.process.isRunning else {
                throw HarnessError("sluice exited with \(self.process.terminationStatus) before it was ready:\n\(self.log)")
            }
            if let response = try? await curl(["http://127.0.0.1:\(self.adminPort)/ready"]), response.status == 200 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw HarnessError("sluice not ready after \(timeout):\n\(self.log)")
    }

    /// Sends SIGTERM and waits for the exit status.
    func terminate(timeout: Duration = .seconds(30)) async throws -> Int32 {
        self.sendTerminate()
        return try await self.waitForExit(timeout: timeout)
    }

    /// Sends SIGTERM and returns at once: Sluice starts draining.
    func sendTerminate() {
        if self.process.isRunning { kill(self.process.processIdentifier, SIGTERM) }
    }

    /// Waits for the exit status; after `timeout`, kills the process and throws.
    func waitForExit(timeout: Duration = .seconds(30)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while self.process.isRunning {
            if ContinuousClock.now > deadline {
                kill(self.process.processIdentifier, SIGKILL)
                throw HarnessError("sluice did not exit within \(timeout) of SIGTERM:\n\(self.log)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return self.process.terminationStatus
    }

    deinit {
        if self.process.isRunning { kill(self.process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(at: self.workDirectory)
    }
}

/// One HTTP exchange through curl (a client no one here wrote).
struct CurlResponse {
    var status: Int
    var body: String
    var httpVersion: String
    var headers: String

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(self.body.utf8))) as? [String: Any] ?? [:]
    }

    /// `results` of an ingest response as (partition, offset) pairs.
    var receipts: [(partition: Int, offset: Int)] {
        ((self.json["results"] as? [[String: Any]]) ?? []).compactMap { result in
            guard let partition = result["partition"] as? Int, let offset = result["offset"] as? Int else { return nil }
            return (partition, offset)
        }
    }
}

func curl(_ arguments: [String], body: Data? = nil) async throws -> CurlResponse {
    let marker = "\n--sluice-e2e-status--"
    var args = ["-sS", "-D", "/dev/stderr", "-w", "\(marker)%{http_code} %{http_version}", "--max-time", "60"]
    if body != nil { args += ["--data-binary", "@-"] }
    let result = try await runProgram("curl", args + arguments, stdin: body)
    guard let range = result.stdout.range(of: marker, options: .backwards) else {
        throw HarnessError("curl failed (\(result.status)): \(result.stderr)")
    }
    let trailer = result.stdout[range.upperBound...].split(separator: " ")
    return CurlResponse(
        status: Int(trailer.first ?? "") ?? 0, body: String(result.stdout[..<range.lowerBound]),
        httpVersion: trailer.count > 1 ? String(trailer[1]) : "", headers: result.stderr)
}

/// One record read back from Kafka with kcat.
struct ConsumedRecord {
    var partition: Int
    var offset: Int
    var key: String?
    var value: String
    var headers: [(String, String)]
    /// The record's value is null (a tombstone), not empty.
    var valueIsNull = false
}

/// Reads every record of `topic` from the beginning.
func consume(_ topic: String, expecting count: Int, bootstrap: String = kafkaBootstrap) async throws -> [ConsumedRecord] {
    var records: [ConsumedRecord] = []
    // The topic may take a moment to show every record; retry for a bounded time.
    for _ in 0..<20 {
        let result = try await runProgram("kcat", ["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-J", "-m", "5"])
        records = result.stdout.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
            let flat = (object["headers"] as? [String]) ?? []
            var headers: [(String, String)] = []
            var index = 0
            while index + 1 < flat.count {
                headers.append((flat[index], flat[index + 1]))
                index += 2
            }
            return ConsumedRecord(
                partition: object["partition"] as? Int ?? -1, offset: object["offset"] as? Int ?? -1, key: object["key"] as? String,
                value: object["payload"] as? String ?? "", headers: headers, valueIsNull: object["payload"] is NSNull)
        }
        if records.count >= count { break }
        try await Task.sleep(for: .milliseconds(250))
    }
    return records.sorted { ($0.partition, $0.offset) < ($1.partition, $1.offset) }
}

/// A plain TCP connection for tests that must misbehave on the wire (slow or partial requests).
final class RawConnection: Sendable {
    let fd: Int32

    init(port: Int) throws {
        // self.fd is set last: a class whose properties are all set runs deinit even when its
        // init throws, and a second close() of a number another thread has reused since closes
        // someone else's descriptor (it closed Foundation's child-exit socket and hung the suite).
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket() failed") }
        var address = loopbackAddress(port: port)
        let connected = withSockaddr(&address) { connect(fd, $0, $1) == 0 }
        guard connected else {
            close(fd)
            throw HarnessError("connect to 127.0.0.1:\(port) failed")
        }
        self.fd = fd
    }

    func send(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(self.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Closes the sending side only (TCP half-close): the peer reads an end of stream.
    func shutdownWrite() {
        _ = shutdown(self.fd, Int32(SHUT_WR))
    }

    /// Reads until what arrived contains `marker` (true), or the peer closes or `timeout` passes (false).
    func read(until marker: String, timeout: Duration) -> Bool {
        var received: [UInt8] = []
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 65536)
        while ContinuousClock.now < deadline {
            var pollfd = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pollfd, 1, 50) > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return false }
            received.append(contentsOf: buffer[0..<n])
            if String(decoding: received, as: UTF8.self).contains(marker) { return true }
        }
        return false
    }

    /// Reads until the peer closes or `timeout` passes; returns what arrived and whether the peer closed.
    func readUntilClosed(timeout: Duration) -> (text: String, closed: Bool) {
        var received: [UInt8] = []
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 65536)
        while ContinuousClock.now < deadline {
            var pollfd = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
            let remaining = deadline - ContinuousClock.now
            let ms = Int32(max(1, remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000))
            guard poll(&pollfd, 1, ms) > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return (String(decoding: received, as: UTF8.self), true) }
            received.append(contentsOf: buffer[0..<n])
        }
        return (String(decoding: received, as: UTF8.self), false)
    }

    deinit {
        close(self.fd)
    }
}

extension RawConnection {
    // The waits below block for up to their timeout: from a test, they run on a thread of their
    // own instead of one of the runner's few cooperative threads.

    func read(until marker: String, timeout: Duration) async -> Bool {
        (try? await offThePool { self.read(until: marker, timeout: timeout) }) ?? false
    }

    func readUntilClosed(timeout: Duration) async -> (text: String, closed: Bool) {
        (try? await offThePool { self.readUntilClosed(timeout: timeout) }) ?? ("", false)
    }
}

/// An HTTP/1.1 response as it arrived on a `RawConnection`: status, lower-cased header block, and
/// the body with any chunked framing removed.
struct RawHTTPResponse {
    var status: Int
    var headers: String
    var body: String

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(self.body.utf8))) as? [String: Any] ?? [:]
    }

    /// Parses the last final (non-1xx) response in `text`; nil when there is none.
    init?(_ text: String) {
        var rest = Substring(text)
        while let headEnd = rest.range(of: "\r\n\r\n") {
            let head = rest[..<headEnd.lowerBound]
            let statusLine = head.prefix { $0 != "\r" }
            let parts = statusLine.split(separator: " ")
            guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let status = Int(parts[1]) else { return nil }
            rest = rest[headEnd.upperBound...]
            if (100..<200).contains(status) { continue }
            self.status = status
            self.headers = head.lowercased()
            guard self.headers.contains("transfer-encoding: chunked") else {
                self.body = String(rest)
                return
            }
            var body = ""
            while let sizeEnd = rest.range(of: "\r\n"), let size = Int(rest[..<sizeEnd.lowerBound], radix: 16), size > 0 {
                let start = sizeEnd.upperBound
                guard let end = rest.index(start, offsetBy: size, limitedBy: rest.endIndex) else { break }
                body += rest[start..<end]
                rest = rest[end...].dropFirst(2)
            }
            self.body = body
            return
        }
        return nil
    }
}

/// A Kafka-protocol broker of the test's own (noida-db, as scripts/kafka-broker.sh runs it), for
/// tests that pause or stop their broker without disturbing the others.
final class BrokerProcess: @unchecked Sendable {
    var process = Process()
    let port: Int
    let directory: URL
    var bootstrap: String { "127.0.0.1:\(self.port)" }

    init() async throws {
        self.port = try freePort()
        self.directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("sluice-broker-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
        try await self.start()
    }

    /// Starts the broker (again) on the same port and data directory; data persists across restarts.
    func start() async throws {
        self.process = Process()
        // noida-db stops cleanly only on SIGINT (its Ctrl-C), and a child spawned from a test
        // worker thread inherits that thread's blocked signals: unblock them before exec.
        self.process.executableURL = URL(fileURLWithPath: try which("python3"))
        self.process.arguments = [
            "-c",
            "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])",
            try which("noida-db"), "start", "--only", "kafka", "--host", "127.0.0.1", "--kafka-port", String(self.port),
            "--data-dir", self.directory.appendingPathComponent("data").path,
        ]
        let log = self.directory.appendingPathComponent("broker.log")
        if !FileManager.default.fileExists(atPath: log.path) { _ = FileManager.default.createFile(atPath: log.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        self.process.standardOutput = handle
        self.process.standardError = handle
        try spawnSerially { try self.process.run() }
        for _ in 0..<150 {
            if try await runProgram("kcat", ["-L", "-b", self.bootstrap, "-m", "2"]).status == 0 { return }
            guard self.process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        self.signal(SIGKILL)
        throw HarnessError("test broker did not start: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
    }

    /// Stops the broker (SIGINT, its Ctrl-C; SIGKILL after 30 s) and waits until it is gone.
    func stop() async {
        self.signal(SIGCONT)
        self.signal(SIGINT)
        for _ in 0..<300 where !self.pids.isEmpty { try? await Task.sleep(for: .milliseconds(100)) }
        if !self.pids.isEmpty { self.signal(SIGKILL) }
        for _ in 0..<50 where !self.pids.isEmpty { try? await Task.sleep(for: .milliseconds(100)) }
    }

    /// Every process of this broker: the launcher and the server it starts, found by the
    /// broker's own data directory on their command lines (nothing else has it).
    var pids: [Int32] {
        let marker = self.directory.path
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> Int32? in
            guard let pid = Int32(entry),
                let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"),
                String(decoding: cmdline, as: UTF8.self).contains(marker)
            else { return nil }
            return pid
        }
    }

    func signal(_ signal: Int32) {
        for pid in self.pids { kill(pid, signal) }
    }

    func pause() { self.signal(SIGSTOP) }
    func resume() { self.signal(SIGCONT) }

    deinit {
        self.signal(SIGCONT)
        self.signal(SIGINT)
        for _ in 0..<100 where !self.pids.isEmpty { Thread.sleep(forTimeInterval: 0.1) }
        if !self.pids.isEmpty { self.signal(SIGKILL) }
        try? FileManager.default.removeItem(at: self.directory)
    }
}

/// A field of /proc/PID/status in bytes (VmRSS, VmHWM, ...).
func procStatusBytes(_ pid: Int32, _ field: String) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
        let kb = line.split(separator: " ").compactMap { Int($0) }.first
        return kb.map { $0 * 1024 }
    }
    return nil
}

/// Bytes a process has read so far (/proc/PID/io rchar): how far an uploading curl got in its file.
func procReadBytes(_ pid: Int32) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/io", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("rchar:") {
        return Int(line.split(separator: " ").last ?? "")
    }
    return nil
}

/// A thread-safe counter for tests.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { self.lock.withLock { self.count += 1 } }
    var value: Int { self.lock.withLock { self.count } }
}

/// A server the test starts for itself (moto, MiniStack, the Kinesis fault server): its own
/// process, bound to 127.0.0.1, ready once its port is listening on a socket that the process (or
/// a child of it) holds; stopped by PID (SIGTERM, then SIGKILL) when the test lets go of it.
///
/// A port from `freePort()` was free a moment ago, not reserved: a process outside this test run
/// (a fleet script, another suite's own helper) can take it before the peer binds it. A peer
/// that then fails to bind, or a port answered by someone else, starts the peer again on fresh
/// ports (not for a `fixedPort`) instead of sending the test's requests to a stranger.
final class PeerProcess: @unchecked Sendable {
    let process: Process
    let port: Int
    /// A second port, for servers with two listeners (`{PORT2}`).
    let port2: Int
    let name: String
    let log: URL
    /// A directory of the peer's own files (config, state), removed with the log when it stops.
    let ownedDirectory: URL?
    var endpoint: String { "http://127.0.0.1:\(self.port)" }

    /// `command` and `environment` values have `{PORT}` and `{PORT2}` replaced by fresh ports.
    /// Ready once `{PORT}` is listening on a socket the started process holds.
    init(_ name: String, _ command: [String], environment: [String: String] = [:], fixedPort: Int? = nil, ownedDirectory: URL? = nil) async throws {
        self.name = name
        self.ownedDirectory = ownedDirectory
        self.log = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("sluice-\(name)-\(UUID().uuidString).log")
        var attempt = 0
        while true {
            attempt += 1
            let port = try fixedPort ?? freePort()
            let port2 = try freePort()
            let process = try Self.spawn(command, environment: environment, port: port, port2: port2, log: self.log)
            switch await Self.waitForListener(process, port: port) {
            case .ready:
                self.process = process
                self.port = port
                self.port2 = port2
                return
            case let outcome:
                Self.stop(process)
                if attempt < 3 && fixedPort == nil && outcome != .timedOut { continue }
                let error = HarnessError("\(name) did not start (\(outcome), attempt \(attempt), port \(port)): \(Self.tail(of: self.log))")
                // No deinit runs for an instance that never finished its init.
                Self.removeFiles(log: self.log, directory: ownedDirectory)
                throw error
            }
        }
    }

    private enum StartOutcome: Equatable { case ready, exited, portTakenByAnotherProcess, timedOut }

    private static func spawn(_ command: [String], environment: [String: String], port: Int, port2: Int, log: URL) throws -> Process {
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        let fill = { (text: String) in
            text.replacingOccurrences(of: "{PORT2}", with: String(port2)).replacingOccurrences(of: "{PORT}", with: String(port))
        }
        let process = Process()
        // A child spawned from a test worker thread inherits its blocked signals: unblock them
        // before exec so SIGTERM stops the server.
        process.executableURL = URL(fileURLWithPath: try which("python3"))
        process.arguments = [
            "-c",
            "import os, shutil, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execvp(sys.argv[1], sys.argv[1:])",
        ] + command.map(fill)
        process.environment = ProcessInfo.processInfo.environment.merging(environment.mapValues(fill)) { $1 }
        process.standardOutput = handle
        process.standardError = handle
        try spawnSerially { try process.run() }
        return process
    }

    private static func waitForListener(_ process: Process, port: Int) async -> StartOutcome {
        for _ in 0..<300 {
            let listeners = listeningSocketInodes(port: port)
            if !listeners.isEmpty {
                return socketInodes(ofProcessTree: process.processIdentifier).isDisjoint(with: listeners) ? .portTakenByAnotherProcess : .ready
            }
            guard process.isRunning else { return .exited }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return .timedOut
    }

    var logText: String { Self.tail(of: self.log) }

    private static func tail(of log: URL) -> String {
        (try? String(contentsOf: log, encoding: .utf8)).map { String($0.suffix(3000)) } ?? ""
    }

    func stop() { Self.stop(self.process) }

    private static func stop(_ process: Process) {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        for _ in 0..<50 where process.isRunning { Thread.sleep(forTimeInterval: 0.1) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    private static func removeFiles(log: URL, directory: URL?) {
        try? FileManager.default.removeItem(at: log)
        if let directory { try? FileManager.default.removeItem(at: directory) }
    }

    deinit {
        self.stop()
        Self.removeFiles(log: self.log, directory: self.ownedDirectory)
    }
}

/// The inodes of the sockets listening on TCP `port` (IPv4 or IPv6), from /proc/net/tcp{,6}.
func listeningSocketInodes(port: Int) -> Set<String> {
    let wanted = String(format: "%04X", port)
    var inodes: Set<String> = []
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        guard let text = readWholeProcFile(table) else { continue }
        for line in text.split(separator: "\n").dropFirst() {
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 9, fields[3] == "0A", fields[1].hasSuffix(":" + wanted) else { continue }
            inodes.insert(String(fields[9]))
        }
    }
    return inodes
}

/// The inodes of the sockets that `pid` and its descendants hold open.
func socketInodes(ofProcessTree pid: Int32) -> Set<String> {
    var tree: Set<Int32> = [pid]
    var parents: [(pid: Int32, parent: Int32)] = []
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
        guard let child = Int32(entry), let stat = readWholeProcFile("/proc/\(entry)/stat"),
              let close = stat.lastIndex(of: ")") else { continue }
        // After "pid (comm)": state, then the parent's pid.
        let rest = stat[stat.index(after: close)...].split(separator: " ")
        if rest.count > 1, let parent = Int32(rest[1]) { parents.append((child, parent)) }
    }
    var grew = true
    while grew {
        grew = false
        for (child, parent) in parents where tree.contains(parent) && !tree.contains(child) {
            tree.insert(child)
            grew = true
        }
    }
    var inodes: Set<String> = []
    for member in tree {
        let directory = "/proc/\(member)/fd"
        for fd in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(directory)/\(fd)"),
                  target.hasPrefix("socket:[") else { continue }
            inodes.insert(String(target.dropFirst("socket:[".count).dropLast()))
        }
    }
    return inodes
}

/// A /proc file read to its end: such files report size 0 and hand out a page or so per read(),
/// so a reader that stops at the first short read (Foundation's does) sees only its first lines.
func readWholeProcFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { return count == 0 ? String(decoding: bytes, as: UTF8.self) : nil }
        bytes += chunk[0..<count]
    }
}
