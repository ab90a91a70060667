import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore

/// `sluice top`: the ops console's numbers as a refreshing table on a terminal: per sink,
/// route and upstream, averaged over the newest samples of the admin listener's `/stats`.
struct Top: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show live throughput, latency and in-flight per sink, route and upstream.",
        discussion: """
            Reads GET /stats of a running gateway's admin listener once a second. With a bearer token \
            on the admin API, pass it in an environment variable (--token-env) or a file (--token-file).
            """
    )

    @Option(name: .long, help: "The admin listener's URL.")
    var admin = "http://127.0.0.1:9901"

    @Option(name: .long, help: "An environment variable holding the admin bearer token.")
    var tokenEnv: String?

    @Option(name: .long, help: "A file holding the admin bearer token.")
    var tokenFile: String?

    @Option(name: .long, help: "Seconds the figures are averaged over.")
    var window = 5

    @Flag(name: .long, help: "Print the table once and exit (for scripts).")
    var once = false

    func validate() throws {
        guard (1...300).contains(self.window) else { throw ValidationError("--window is 1 to 300 seconds") }
        if self.tokenEnv != nil, self.tokenFile != nil { throw ValidationError("give --token-env or --token-file, not both") }
    }

    func run() async throws {
        var token: String?
        if let name = self.tokenEnv {
            guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
                throw ValidationError("the environment variable \(name) is not set")
            }
            token = value
        }
        if let file = self.tokenFile {
            guard let value = try? String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) else {
                throw ValidationError("cannot read the token file \(file)")
            }
            token = value
        }
        let base = self.admin.hasSuffix("/") ? String(self.admin.dropLast()) : self.admin
        var samples: [[String: Any]] = []
        var latest = 0
        while true {
            var request = HTTPClientRequest(url: "\(base)/stats?since=\(latest)")
            if let token { request.headers.add(name: "authorization", value: "Bearer \(token)") }
            let document: [String: Any]
            do {
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
                let body = try await response.body.collect(upTo: 16 * 1024 * 1024)
                guard response.status == .ok else {
                    throw ValidationError("\(base)/stats answered \(response.status.code): \(String(buffer: body))")
                }
                guard let object = try JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] else {
                    throw ValidationError("\(base)/stats did not answer a JSON object")
                }
                document = object
            } catch let error as ValidationError {
                throw error
            } catch {
                throw ValidationError("cannot reach \(base): \(error)")
            }
            samples += (document["samples"] as? [[String: Any]]) ?? []
            samples = Array(samples.suffix(self.window))
            latest = (document["latest"] as? Int) ?? latest
            let table = TopTable(samples: samples).render()
            if self.once {
                if samples.isEmpty {
                    // A gateway that just started has no sample yet: wait for the first.
                    try await Task.sleep(for: .seconds(1))
                    continue
                }
                print(table, terminator: "")
                return
            }
            FileHandle.standardOutput.write(Data(("\u{1B}[H\u{1B}[2J" + table).utf8))
            try await Task.sleep(for: .seconds(1))
        }
    }
}

/// The table `sluice top` prints, from the newest samples of `/stats`.
struct TopTable {
    let samples: [[String: Any]]

    func render() -> String {
        var out = "sluice top — averaged over \(self.samples.count) s\n\n"
        out += self.section(
            "SINK", kind: "sinks",
            columns: [
                ("READY", { $0.last.flatMap { $0["ready"] as? Bool }.map { $0 ? "yes" : "no" } ?? "-" }),
                ("EVENTS/S", { Self.number(Self.mean($0, "events_per_second")) }),
                ("MB/S", { Self.megabytes(Self.mean($0, "bytes_per_second")) }),
                ("P50", { Self.latency(Self.mean($0, "ack_latency_p50_seconds")) }),
                ("P99", { Self.latency(Self.mean($0, "ack_latency_p99_seconds")) }),
                ("IN-FLIGHT/LIMIT", { values in
                    let last = values.last ?? [:]
                    return "\((last["in_flight_events"] as? Int) ?? 0)/\((last["max_in_flight_events"] as? Int) ?? 0)"
                }),
                ("WAITING", { "\(($0.last?["waiting_requests"] as? Int) ?? 0)" }),
                ("ERRORS/S", { Self.number(Self.mean($0, "errors_per_second")) }),
            ])
        out += "\n"
        out += self.section(
            "ROUTE", kind: "routes",
            columns: [
                ("REQ/S", { Self.number(Self.mean($0, "requests_per_second")) }),
                ("EVENTS/S", { Self.number(Self.mean($0, "events_per_second")) }),
                ("MB/S", { Self.megabytes(Self.mean($0, "bytes_per_second")) }),
                ("ERRORS/S", { Self.number(Self.mean($0, "errors_per_second")) }),
            ])
        out += "\n"
        out += self.section(
            "UPSTREAM", kind: "upstreams",
            columns: [
                ("REQ/S", { Self.number(Self.mean($0, "requests_per_second")) }),
                ("IN-PROGRESS", { "\(($0.last?["requests_in_progress"] as? Int) ?? 0)" }),
                ("WAITING", { "\(($0.last?["requests_waiting"] as? Int) ?? 0)" }),
                ("ENDPOINTS", { "\(($0.last?["endpoints_in_service"] as? Int) ?? 0)/\(($0.last?["endpoints"] as? Int) ?? 0)" }),
                ("ERRORS/S", { Self.number(Self.mean($0, "errors_per_second")) }),
            ])
        return out
    }

    private func section(_ title: String, kind: String, columns: [(String, ([[String: Any]]) -> String)]) -> String {
        var names: [String] = []
        for sample in self.samples {
            for name in ((sample[kind] as? [String: Any]) ?? [:]).keys.sorted() where !names.contains(name) { names.append(name) }
        }
        var rows = [[title] + columns.map(\.0)]
        for name in names {
            let values = self.samples.compactMap { ($0[kind] as? [String: Any])?[name] as? [String: Any] }
            rows.append([name] + columns.map { $0.1(values) })
        }
        if names.isEmpty { rows.append(["(none)"] + columns.map { _ in "" }) }
        let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            zip(row, widths).enumerated().map { index, cell in
                index == 0 ? cell.0.padding(toLength: cell.1, withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: cell.1 - cell.0.count) + cell.0
            }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }

    static func mean(_ values: [[String: Any]], _ key: String) -> Double? {
        let numbers = values.compactMap { ($0[key] as? NSNumber)?.doubleValue }
        return numbers.isEmpty ? nil : numbers.reduce(0, +) / Double(numbers.count)
    }

    static func number(_ value: Double?) -> String {
        guard let value else { return "-" }
        return value >= 100 ? String(Int(value.rounded())) : String(format: "%.1f", value)
    }

    static func megabytes(_ value: Double?) -> String {
        guard let value else { return "-" }
        return String(format: "%.2f", value / 1_000_000)
    }

    static func latency(_ value: Double?) -> String {
        guard let value else { return "-" }
        return value < 1 ? String(format: "%.1fms", value * 1000) : String(format: "%.2fs", value)
    }
}
