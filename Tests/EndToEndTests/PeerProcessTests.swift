import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The harness must not count a peer as started because someone else answers on its port: a
/// foreign server there once made a proxy test talk to a stranger (five 401s from nowhere).
@Suite struct PeerProcessTests {
    @Test func aPortListenedOnByAnotherProcessIsNotTheStartedPeer() async throws {
        // This test process plays the stranger: it listens on the port the peer was given.
        let port = try freePort()
        let stranger = try listeningSocket(port: port)
        defer { close(stranger) }
        let started = ContinuousClock.now
        // The peer itself never binds the port, so the only listener there is the stranger.
        var refusal = ""
        do {
            let peer = try await PeerProcess("idle", ["python3", "-c", "import time; time.sleep(60)", "{PORT}"], fixedPort: port)
            Issue.record("counted as started on a port it does not hold: \(peer.port)")
        } catch let error as HarnessError {
            refusal = error.description
        }
        #expect(refusal.contains("portTakenByAnotherProcess"), "\(refusal)")
        // Told apart at once, not after the 30 s wait for a listener that never comes.
        #expect(ContinuousClock.now - started < .seconds(25))
    }

    @Test func aPeerListeningOnItsPortIsReadyAndItsSocketIsItsOwn() async throws {
        let peer = try await PeerProcess("http", ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{PORT}"])
        let other = try await PeerProcess("http", ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{PORT}"])
        // Many more sockets than /proc/net/tcp hands out in one read() (a page, ~27 lines): the
        // listener must be found wherever it is in the table.
        let crowd = try (0..<100).map { _ in try listeningSocket(port: freePort()) }
        defer { crowd.forEach { close($0) } }
        let listeners = listeningSocketInodes(port: peer.port)
        #expect(!listeners.isEmpty)
        #expect(!socketInodes(ofProcessTree: peer.process.processIdentifier).isDisjoint(with: listeners))
        #expect(socketInodes(ofProcessTree: other.process.processIdentifier).isDisjoint(with: listeners))
    }
}

private func listeningSocket(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw HarnessError("socket() failed") }
    var address = loopbackAddress(port: port)
    let bound = withSockaddr(&address) { bind(fd, $0, $1) == 0 }
    guard bound, listen(fd, 4) == 0 else {
        close(fd)
        throw HarnessError("cannot listen on \(port)")
    }
    return fd
}
