import NIOCore
import NIOHTTP1
import SluicePolicy

/// The body of one request, read part by part from the connection (HTTP/1.1) or stream
/// (HTTP/2). Reading is pull-based: while the handler does not ask for the next part,
/// NIO stops reading the socket (HTTP/1.1) or withholds WINDOW_UPDATE (HTTP/2).
public struct RequestBody {
    private var source: Source?
    /// Bytes of body read so far.
    public private(set) var bytesRead = 0
    /// Whether the end of the body has been reached.
    public private(set) var isComplete = false
    /// The request's trailer fields (chunked HTTP/1.1, or a trailing HEADERS frame on HTTP/2),
    /// once the end has been reached.
    public private(set) var trailers: HTTPHeaders?
    /// Sends `100 Continue` when the client asked for it; called before the first read, so a
    /// request refused before its body is read never invites the body.
    private var sendContinue: (@Sendable () async throws -> Void)?
    /// When set, every part read is fed to it as it passes (an idempotent request's fingerprint).
    var fingerprint: RequestFingerprint?

    enum Source {
        case channel(RequestParts)
        case chunks(ArraySlice<ByteBuffer>)
    }

    init(parts: RequestParts, sendContinue: (@Sendable () async throws -> Void)? = nil) {
        self.source = .channel(parts)
        self.sendContinue = sendContinue
    }

    /// A body held in memory, delivered in the given chunks (tests, internal callers).
    public init(chunks: [ByteBuffer]) {
        self.source = .chunks(chunks[...])
    }

    /// Sends `100 Continue` now if the client asked for it and it has not gone out: before a
    /// response head that goes out while the body is still to be read (full duplex).
    public mutating func inviteBody() async throws {
        guard let sendContinue = self.sendContinue else { return }
        self.sendContinue = nil
        try await sendContinue()
    }

    /// The next part of the body, or nil at its end.
    public mutating func next() async throws -> ByteBuffer? {
        guard !self.isComplete, let source = self.source else { return nil }
        if let sendContinue = self.sendContinue {
            self.sendContinue = nil
            try await sendContinue()
        }
        switch source {
        case .chunks(var chunks):
            guard let buffer = chunks.popFirst() else {
                self.isComplete = true
                return nil
            }
            self.source = .chunks(chunks)
            self.bytesRead += buffer.readableBytes
            self.fingerprint?.add(body: buffer)
            return buffer
        case .channel(let parts):
            switch try await parts.next() {
            case .body(let buffer):
                self.bytesRead += buffer.readableBytes
                self.fingerprint?.add(body: buffer)
                return buffer
            case .end(let trailers):
                self.isComplete = true
                self.trailers = trailers
                return nil
            case nil:
                self.isComplete = true
                return nil
            case .head:
                throw RequestBodyError.unexpectedHead
            }
        }
    }

    /// Reads and discards the rest of the body, up to `limit` bytes. Returns whether the end was reached.
    /// A client still waiting for `100 Continue` has sent no body: nothing to drain.
    public mutating func drain(limit: Int) async -> Bool {
        if self.sendContinue != nil { return false }
        let start = self.bytesRead
        while !self.isComplete, self.bytesRead - start <= limit {
            do {
                guard try await self.next() != nil else { break }
            } catch {
                return false
            }
        }
        return self.isComplete
    }
}

enum RequestBodyError: Error {
    case unexpectedHead
}
