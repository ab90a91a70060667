import GRPCCore
import SluiceCore

/// A Zerobus failure as a client sees it, for the records of one table: the service refused them
/// (or the sink's token) for good, the stream failed in a way a new stream may cure, or the
/// records went unacknowledged past `delivery_timeout`.
public struct ZerobusSinkError: Error, Sendable, CustomStringConvertible {
    public enum Reason: Sendable {
        /// No token: the workspace refused the credentials (permanent) or could not be reached.
        case token(ZerobusTokenError)
        /// The service refused the stream or its records with a status a retry will not change.
        case refused(RPCError)
        /// The stream failed (network, server, time-out opening it); a new stream may succeed.
        case streamFailed(String)
        /// Not acknowledged within `delivery_timeout`; the last stream error, if any.
        case deliveryTimeout(Duration, lastError: String?)
    }

    public var table: String
    public var reason: Reason

    public init(table: String, reason: Reason) {
        self.table = table
        self.reason = reason
    }

    /// How a stream that did not end cleanly failed. `timedOut`: it was cancelled before it opened.
    init(table: String, rpc error: RPCError, timedOut: Bool) {
        self.table = table
        if Self.refusal(error.code) != nil {
            self.reason = .refused(error)
        } else if error.code == .cancelled && timedOut {
            self.reason = .streamFailed("opening the stream timed out")
        } else {
            self.reason = .streamFailed(Self.said(error))
        }
    }

    /// Refusing status codes: the failure code and the HTTP status a client sees.
    private static func refusal(_ code: RPCError.Code) -> (code: String, httpStatus: Int)? {
        switch code {
        case .invalidArgument: return ("zerobus_invalid_argument", 400)
        case .unauthenticated: return ("zerobus_unauthenticated", 502)
        case .permissionDenied: return ("zerobus_permission_denied", 403)
        case .outOfRange: return ("zerobus_out_of_range", 502)
        case .unimplemented: return ("zerobus_unimplemented", 502)
        case .notFound: return ("zerobus_not_found", 404)
        default: return nil
        }
    }

    private static func said(_ error: RPCError) -> String {
        "\(error.code)" + (error.message.isEmpty ? "" : ": \(error.message)")
    }

    public var isRetryable: Bool {
        switch self.reason {
        case .token(let error): return !error.isPermanent
        case .refused: return false
        case .streamFailed, .deliveryTimeout: return true
        }
    }

    /// Whether the service refused the sink's credentials (a new token may be worth one try).
    public var refusesCredentials: Bool {
        switch self.reason {
        case .token(let error): return error.isPermanent
        case .refused(let error): return error.code == .unauthenticated
        case .streamFailed, .deliveryTimeout: return false
        }
    }

    public var code: String {
        switch self.reason {
        case .token(let error): return error.isPermanent ? "zerobus_token_refused" : "zerobus_token_unavailable"
        case .refused(let error): return Self.refusal(error.code)?.code ?? ErrorCode.zerobusUnavailable.code
        case .streamFailed: return ErrorCode.zerobusUnavailable.code
        case .deliveryTimeout: return ErrorCode.zerobusDeliveryTimeout.code
        }
    }

    public var httpStatus: Int {
        switch self.reason {
        case .token: return 502
        case .refused(let error): return Self.refusal(error.code)?.httpStatus ?? 502
        case .streamFailed: return ErrorCode.zerobusUnavailable.httpStatus
        case .deliveryTimeout: return ErrorCode.zerobusDeliveryTimeout.httpStatus
        }
    }

    public var description: String {
        switch self.reason {
        case .token(let error): return "no Zerobus token: \(error)"
        case .refused(let error): return "Zerobus refused the records for table \(self.table): \(Self.said(error))"
        case .streamFailed(let what): return "Zerobus stream for table \(self.table) failed: \(what)"
        case .deliveryTimeout(let timeout, let last):
            return "not acknowledged by Zerobus within delivery_timeout (\(timeout))" + (last.map { "; last error: \($0)" } ?? "")
                + "; it may still be stored, so a retry may duplicate it"
        }
    }

    /// The per-event failure a client sees.
    public var deliveryFailure: DeliveryFailure {
        DeliveryFailure(code: self.code, message: self.description, isRetryable: self.isRetryable, httpStatus: self.httpStatus)
    }
}
