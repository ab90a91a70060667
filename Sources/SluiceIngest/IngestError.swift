import SluiceCore

/// Why a request (or one of its events) cannot be ingested: a code from the catalogue, what
/// was wrong, and the NDJSON line when the problem is on one.
public struct IngestError: Error, Sendable, Equatable {
    public var code: ErrorCode
    public var message: String
    /// The 1-based NDJSON line, when the problem is on one.
    public var line: Int?

    public init(_ code: ErrorCode, _ message: String, line: Int? = nil) {
        self.code = code
        self.message = message
        self.line = line
    }

    /// As the failure of one event.
    public var deliveryFailure: DeliveryFailure { DeliveryFailure(self.code, self.message) }

    static func invalidJSON(line: Int?, _ error: JSONScanner.SyntaxError) -> IngestError {
        let place = line.map { "line \($0), column \(error.offset + 1)" } ?? "byte \(error.offset + 1)"
        return IngestError(.invalidJSON, "\(place): \(error.message)", line: line)
    }

    public static func bodyTooLarge(limit: Int) -> IngestError {
        IngestError(.bodyTooLarge, "the body is larger than max_body_bytes (\(limit) bytes)")
    }

    public static func tooManyEvents(limit: Int) -> IngestError {
        IngestError(.tooManyEvents, "the request holds more than max_events (\(limit)) events")
    }
}
