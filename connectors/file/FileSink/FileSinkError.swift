import SluiceCore

/// A file sink I/O failure.
public struct FileSinkError: Error, Sendable, CustomStringConvertible {
    public var operation: String
    public var path: String
    public var errno: Int32

    public var description: String {
        "\(self.operation) \(self.path): \(String(cString: strerror(self.errno)))"
    }

    /// Disk full or an I/O error may clear; a permission problem will not.
    public var isRetryable: Bool {
        self.errno != EACCES && self.errno != EPERM && self.errno != EROFS
    }

    public var deliveryFailure: DeliveryFailure {
        // Retryable or not by the error (a full disk may clear; a read-only one will not).
        DeliveryFailure(
            code: ErrorCode.fileWriteFailed.code, message: "file sink: \(self.description)", isRetryable: self.isRetryable,
            httpStatus: ErrorCode.fileWriteFailed.httpStatus)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
