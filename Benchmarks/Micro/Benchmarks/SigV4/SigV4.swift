import Benchmark
import Foundation
import KinesisSink

// SigV4 signing cost per PutRecords call, beside the irreducible part of it: SHA-256 of the
// same body (the payload hash every SigV4 request needs). The ratio sign/hash says how much the
// canonical request, string to sign and HMAC chain add on top.

let credentials = AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
let signer = SigV4Signer(region: "us-east-1", service: "kinesis")
let headers = [("Content-Type", "application/x-amz-json-1.1"), ("X-Amz-Target", "Kinesis_20131202.PutRecords")]

/// A PutRecords body of `records` records of 200 bytes (base64 in JSON, as sent).
func putRecordsBody(records: Int) -> Data {
    let data = Data(repeating: 0x78, count: 200).base64EncodedString()
    let entries = (0..<records).map { #"{"Data":"\#(data)","PartitionKey":"key-\#($0)"}"# }
    return Data(#"{"Records":[\#(entries.joined(separator: ","))],"StreamName":"events"}"#.utf8)
}

let small = putRecordsBody(records: 1)
let full = putRecordsBody(records: 500)

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .throughput], maxDuration: .seconds(2))

    for (name, body) in [("1 record", small), ("500 records", full)] {
        Benchmark("sign PutRecords, \(name) (\(body.count) B)") { benchmark in
            for _ in benchmark.scaledIterations {
                let signature = signer.sign(
                    method: "POST", host: "kinesis.us-east-1.amazonaws.com", path: "/", headers: headers,
                    payloadSHA256: SigV4Signer.hexSHA256(body), credentials: credentials, date: Date())
                blackHole(signature.signature)
            }
        }
        Benchmark("reference: SHA-256 of the body, \(name) (\(body.count) B)") { benchmark in
            for _ in benchmark.scaledIterations {
                blackHole(SigV4Signer.hexSHA256(body))
            }
        }
    }
}
