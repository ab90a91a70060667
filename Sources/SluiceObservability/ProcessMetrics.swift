#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CoreMetrics
import NIOConcurrencyHelpers
import SluiceCore

/// The standard `process_*` series (resident memory, descriptors, CPU, start time), read from
/// /proc when scraped. On a system without /proc they stay at zero.
final class ProcessMetrics: Sendable {
    private let residentMemory: Gauge
    private let openFDs: Gauge
    private let maxFDs: Gauge
    private let cpu: FloatingPointCounter
    private let startTime: Gauge
    /// CPU seconds already added to the counter (it only takes increments).
    private let cpuCounted = NIOLockedValueBox<Double>(0)

    init(factory: any MetricsFactory) {
        self.residentMemory = MetricCatalogue.processResidentMemory.gauge(factory: factory)
        self.openFDs = MetricCatalogue.processOpenFDs.gauge(factory: factory)
        self.maxFDs = MetricCatalogue.processMaxFDs.gauge(factory: factory)
        self.cpu = MetricCatalogue.processCPU.floatingPointCounter(factory: factory)
        self.startTime = MetricCatalogue.processStartTime.gauge(factory: factory)
        if let start = Self.startTimeSeconds() { self.startTime.record(start) }
    }

    func update() {
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        if let statm = Self.read("/proc/self/statm"), let resident = statm.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) {
            self.residentMemory.record(resident * pageSize)
        }
        if let open = Self.countEntries("/proc/self/fd") { self.openFDs.record(open) }
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 { self.maxFDs.record(Int(limit.rlim_cur)) }
        if let fields = Self.statFields() {
            let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
            // utime and stime: fields 14 and 15 of /proc/self/stat.
            if fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]), ticks > 0 {
                let total = (user + system) / ticks
                let delta = self.cpuCounted.withLockedValue { counted -> Double in
                    let delta = total - counted
                    if delta > 0 { counted = total }
                    return delta
                }
                if delta > 0 { self.cpu.increment(by: delta) }
            }
        }
    }

    /// Fields of /proc/self/stat after the command name (which may hold spaces): field 3 first.
    private static func statFields() -> [Substring]? {
        guard let stat = read("/proc/self/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        return stat[stat.index(after: close)...].split(separator: " ")
    }

    private static func startTimeSeconds() -> Double? {
        // starttime: field 22, in clock ticks after boot; boot time: btime in /proc/stat.
        guard let fields = statFields(), fields.count > 19, let ticksAfterBoot = Double(fields[19]),
            let stat = read("/proc/stat"),
            let line = stat.split(separator: "\n").first(where: { $0.hasPrefix("btime ") }),
            let boot = Double(line.dropFirst(6).trimmingCharacters(in: " "))
        else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        return ticks > 0 ? boot + ticksAfterBoot / ticks : nil
    }

    private static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
            if bytes.count > 1 << 20 { break }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func countEntries(_ path: String) -> Int? {
        guard let dir = opendir(path) else { return nil }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            let isDot = withUnsafeBytes(of: entry.pointee.d_name) { name in name[0] == UInt8(ascii: ".") }
            if !isDot { count += 1 }
        }
        // The descriptor opendir itself holds.
        return max(0, count - 1)
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in character: Character) -> Substring {
        var s = self
        while s.first == character { s = s.dropFirst() }
        while s.last == character { s = s.dropLast() }
        return s
    }
}
