import NIOCore
import SluiceCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How a request body turns into events, chosen by Content-Type.
public enum BodyFormat: Sendable, Equatable {
    /// `application/x-ndjson`: one JSON event per line, decoded as the body streams.
    case ndjson
    /// `application/json`: an array is one event per element, anything else one event.
    case json
    /// Any other type: the whole body is one event.
    case raw

    public init(contentType: String?) {
        // (application/json first: the commonest type of a one-event request, and each string
        // comparison that fails costs about as much as one that matches.)
        switch MediaType.essence(of: contentType) {
        case "application/json":
            self = .json
        case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines":
            self = .ndjson
        default:
            self = .raw
        }
    }
}

/// A body that could not be decoded; `status` is 400 for bad input and 413 for a limit.
/// Splits a streamed NDJSON body into events without holding more than one partial line.
public struct NDJSONDecoder {
    let maxLineBytes: Int
    private var carry: ByteBuffer?
    public private(set) var line = 0
    /// The line of each event decoded since `clearEventLines()` (blank lines yield no event).
    public private(set) var eventLines: [Int] = []

    public init(maxLineBytes: Int) {
        self.maxLineBytes = maxLineBytes
    }

    /// Decodes every complete line in `chunk` and appends one event per non-empty line.
    public mutating func feed(_ chunk: ByteBuffer, into events: inout [Event]) throws(IngestError) {
        var chunk = chunk
        var estimated = false
        while let length = Self.offsetOfNewline(in: chunk) {
            if !estimated {
                // Room for the chunk's lines at once, guessed from its first line's length: grown
                // by doubling from empty, the two arrays were reallocated and copied ~8 times for a
                // request of 100 events (~90 instructions per event). Bounded by the chunk's size.
                estimated = true
                let lines = min(chunk.readableBytes / (length + 1) + 1, Self.maxLinesReserved)
                if events.capacity < events.count + lines { events.reserveCapacity(events.count + lines) }
                if self.eventLines.capacity < self.eventLines.count + lines { self.eventLines.reserveCapacity(self.eventLines.count + lines) }
            }
            var lineBuffer = chunk.readSlice(length: length)!
            chunk.moveReaderIndex(forwardBy: 1)
            if var carry = self.carry {
                self.carry = nil
                carry.writeBuffer(&lineBuffer)
                lineBuffer = carry
            }
            try self.emit(lineBuffer, into: &events)
        }
        if chunk.readableBytes > 0 {
            if self.carry == nil {
                // Copy: holding a slice would pin the whole chunk for one partial line.
                var carry = ByteBufferAllocator().buffer(capacity: min(self.maxLineBytes, max(chunk.readableBytes * 2, 1024)))
                carry.writeBuffer(&chunk)
                self.carry = carry
            } else {
                self.carry!.writeBuffer(&chunk)
            }
            // A CR that ends a line of exactly max_event_bytes is not part of the event, whether
            // or not its LF came in the same read.
            let endsWithCR = self.carry!.readableBytesView.last == UInt8(ascii: "\r")
            if self.carry!.readableBytes > self.maxLineBytes + (endsWithCR ? 1 : 0) {
                throw IngestError(
                    .eventTooLarge, "line \(self.line + 1) is longer than max_event_bytes (\(self.maxLineBytes) bytes)", line: self.line + 1)
            }
        }
    }

    /// The most lines `feed` makes room for at once (more grow the arrays as usual).
    static let maxLinesReserved = 1024

    private static func offsetOfNewline(in buffer: ByteBuffer) -> Int? {
        buffer.withUnsafeReadableBytes { raw in
            guard let base = raw.baseAddress, raw.count > 0, let found = memchr(base, 0x0A, raw.count) else { return nil }
            return base.distance(to: UnsafeRawPointer(found))
        }
    }

    public mutating func clearEventLines() {
        self.eventLines.removeAll(keepingCapacity: true)
    }

    /// Decodes a last line that has no trailing newline.
    public mutating func finish(into events: inout [Event]) throws(IngestError) {
        guard let carry = self.carry else { return }
        self.carry = nil
        try self.emit(carry, into: &events)
    }

    /// What one line holds.
    private enum LineVerdict {
        /// One valid JSON value in its first `length` bytes (a trailing CR left out).
        case event(length: Int)
        case blank
        case tooLarge
        case invalid(JSONScanner.SyntaxError)
    }

    private mutating func emit(_ buffer: ByteBuffer, into events: inout [Event]) throws(IngestError) {
        self.line += 1
        let line = self.line
        let maxLineBytes = self.maxLineBytes
        // One look at the bytes (each read of a ByteBuffer's storage is checked for exclusive
        // access at run time): drop a trailing CR, then blank, too large, or one JSON value.
        let verdict: LineVerdict = buffer.withUnsafeReadableBytes { raw in
            var raw = raw
            if let last = raw.last, last == UInt8(ascii: "\r") { raw = UnsafeRawBufferPointer(start: raw.baseAddress, count: raw.count - 1) }
            if raw.count > maxLineBytes { return .tooLarge }
            if JSONScanner(bytes: raw).skipSpace(0) == raw.count { return .blank }
            do throws(JSONScanner.SyntaxError) {
                try JSONScanner.validate(raw)
                return .event(length: raw.count)
            } catch {
                return .invalid(error)
            }
        }
        switch verdict {
        case .event(let length):
            var value = buffer
            if length < value.readableBytes { value.moveWriterIndex(to: value.readerIndex + length) }
            events.append(Event(value: value, valueIsJSON: true))
            self.eventLines.append(line)
        case .blank:
            return
        case .tooLarge:
            throw IngestError(.eventTooLarge, "line \(line) is longer than max_event_bytes (\(maxLineBytes) bytes)", line: line)
        case .invalid(let error):
            throw .invalidJSON(line: line, error)
        }
    }
}

/// Decodes a whole `application/json` body.
public enum JSONBodyDecoder {
    public static func decode(_ body: ByteBuffer, maxEventBytes: Int) throws(IngestError) -> [Event] {
        let outcome: Result<[Range<Int>]?, JSONScanner.SyntaxError> = body.withUnsafeReadableBytes { raw in
            do throws(JSONScanner.SyntaxError) {
                return .success(try JSONScanner.topLevelArrayElements(raw))
            } catch {
                return .failure(error)
            }
        }
        switch outcome {
        case .failure(let error):
            throw .invalidJSON(line: nil, error)
        case .success(nil):
            guard body.readableBytes <= maxEventBytes else {
                throw IngestError(.eventTooLarge, "the event is larger than max_event_bytes (\(maxEventBytes) bytes)")
            }
            return [Event(value: body, valueIsJSON: true)]
        case .success(let ranges?):
            var events: [Event] = []
            events.reserveCapacity(ranges.count)
            for (index, range) in ranges.enumerated() {
                guard range.count <= maxEventBytes else {
                    throw IngestError(.eventTooLarge, "array element \(index) is larger than max_event_bytes (\(maxEventBytes) bytes)")
                }
                events.append(Event(value: body.getSlice(at: body.readerIndex + range.lowerBound, length: range.count)!, valueIsJSON: true))
            }
            return events
        }
    }
}

/// The one reading of a media type in a request header.
public enum MediaType {
    /// The media type of a Content-Type value, or of one range of an Accept value: what comes
    /// before the first `;`, without the spaces and tabs around it, lower-cased
    /// (`Application/JSON; charset=utf-8` -> `application/json`); "" for none. One pass over the
    /// bytes: splitting the header into substrings and trimming them cost ~6,800 instructions
    /// per request.
    public static func essence(of value: String?) -> String {
        guard let value else { return "" }
        return Self.essence(value.utf8.span)
    }

    public static func essence(of value: Substring) -> String {
        Self.essence(value.utf8.span)
    }

    static func essence(_ bytes: Span<UInt8>) -> String {
        var end = 0
        while end < bytes.count, bytes[end] != UInt8(ascii: ";") { end += 1 }
        var start = 0
        while start < end, bytes[start] == UInt8(ascii: " ") || bytes[start] == UInt8(ascii: "\t") { start += 1 }
        while end > start, bytes[end - 1] == UInt8(ascii: " ") || bytes[end - 1] == UInt8(ascii: "\t") { end -= 1 }
        let type = bytes.extracting(start..<end)
        var ascii = true
        for i in 0..<type.count where type[i] >= 0x80 { ascii = false }
        guard ascii else { return type.withUnsafeBufferPointer { String(decoding: $0, as: UTF8.self) }.lowercased() }
        return String(unsafeUninitializedCapacity: type.count) { out in
            for i in 0..<type.count {
                let byte = type[i]
                out[i] = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
            }
            return type.count
        }
    }
}
