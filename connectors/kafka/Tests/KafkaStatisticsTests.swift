@testable import KafkaSink
import SluiceObservability
import Testing

/// librdkafka's statistics document (trimmed from a real one: librdkafka 2.0.2 against the test
/// broker) into the sink's series.
@Suite struct KafkaStatisticsTests {
    static func document(txerrs: Int, msgCount: Int) -> String {
        """
        {"name":"rdkafka#producer-1","type":"producer","ts":5016523,"msg_cnt":\(msgCount),"msg_size":0,
         "brokers":{
           "127.0.0.1:19092/bootstrap":{"name":"127.0.0.1:19092/bootstrap","nodeid":-1,"txerrs":0,"txretries":0,
              "rtt":{"min":0,"max":0,"avg":0,"sum":0,"cnt":0,"p50":0,"p90":0,"p99":0}},
           "127.0.0.1:19092/1":{"name":"127.0.0.1:19092/1","nodeid":1,"state":"UP","txerrs":\(txerrs),"txretries":2,
              "rtt":{"min":90,"max":1047,"avg":250,"sum":2500,"stddev":10,"p50":102,"p75":150,"p90":184,"p95":300,"p99":1047,"cnt":10},
              "throttle":{"min":0,"max":0,"avg":1500,"sum":0,"cnt":0},
              "toppars":{"orders-0":{"topic":"orders","partition":0}}}},
         "topics":{
           "orders":{"topic":"orders","batchsize":{"sum":900,"cnt":3},"batchcnt":{"sum":12,"cnt":3,"p50":4},
              "partitions":{"0":{"partition":0,"msgq_cnt":0}}},
           "clicks":{"topic":"clicks","batchsize":{"sum":100,"cnt":1},"batchcnt":{"sum":4,"cnt":1}}},
         "tx":12,"txmsgs":16,"note":"a \\"quoted\\" word","flags":[true,false,null,-1.5e2]}
        """
    }

    static func update(_ statistics: KafkaStatistics, _ text: String) -> Bool {
        var bytes = Array(text.utf8)
        return bytes.withUnsafeMutableBytes { statistics.update(json: UnsafeRawBufferPointer($0)) }
    }

    @Test func statisticsBecomeTheKafkaSeries() {
        let exporter = PrometheusExporter(version: "test")
        let statistics = KafkaStatistics(sink: "events", factory: exporter.factory)
        #expect(Self.update(statistics, Self.document(txerrs: 3, msgCount: 7)))
        #expect(Self.update(statistics, Self.document(txerrs: 5, msgCount: 0)))
        let text = String(decoding: exporter.scrape(), as: UTF8.self)
        #expect(text.contains(#"sluice_kafka_broker_rtt_seconds{sink="events",broker="127.0.0.1:19092/1",quantile="0.99"} 0.001047"#))
        #expect(text.contains(#"sluice_kafka_broker_rtt_seconds_count{sink="events",broker="127.0.0.1:19092/1"} 10.0"#))
        #expect(text.contains("# TYPE sluice_kafka_broker_rtt_seconds summary"))
        #expect(text.contains(#"sluice_kafka_broker_throttle_seconds{sink="events",broker="127.0.0.1:19092/1"} 1.5"#))
        // Totals: the second document's 5, not 3 + 5.
        #expect(text.contains(#"sluice_kafka_broker_transmit_errors_total{sink="events",broker="127.0.0.1:19092/1"} 5"#))
        #expect(text.contains(#"sluice_kafka_broker_transmit_retries_total{sink="events",broker="127.0.0.1:19092/1"} 2"#))
        #expect(text.contains(#"sluice_kafka_queue_messages{sink="events"} 0.0"#))
        // (12 + 4) events in 4 batches; (900 + 100) bytes.
        #expect(text.contains(#"sluice_kafka_batch_events_average{sink="events"} 4.0"#))
        #expect(text.contains(#"sluice_kafka_batch_bytes_average{sink="events"} 250.0"#))
        #expect(!text.contains("bootstrap"), "bootstrap entries are addresses, not brokers")
        #expect(!text.contains("orders"), "topics never become labels")
    }

    @Test func aNewProducerRestartsTheTotals() {
        let exporter = PrometheusExporter(version: "test")
        let statistics = KafkaStatistics(sink: "events", factory: exporter.factory)
        #expect(Self.update(statistics, Self.document(txerrs: 5, msgCount: 0)))
        #expect(Self.update(statistics, Self.document(txerrs: 1, msgCount: 0)))
        let text = String(decoding: exporter.scrape(), as: UTF8.self)
        #expect(text.contains(#"sluice_kafka_broker_transmit_errors_total{sink="events",broker="127.0.0.1:19092/1"} 6"#))
    }

    @Test func totalsBeyondIntOrNotNumbersDoNotTrap() {
        let exporter = PrometheusExporter(version: "test")
        let statistics = KafkaStatistics(sink: "events", factory: exporter.factory)
        let huge = Self.document(txerrs: 0, msgCount: 0).replacingOccurrences(of: #""txerrs":0,"txretries":2"#, with: #""txerrs":3e40,"txretries":-7"#)
        #expect(Self.update(statistics, huge))
        let text = String(decoding: exporter.scrape(), as: UTF8.self)
        #expect(text.contains(#"sluice_kafka_broker_transmit_errors_total{sink="events",broker="127.0.0.1:19092/1"} \#(Int.max)"#), "clamped")
        #expect(KafkaStatistics.total(nil) == 0 && KafkaStatistics.total(-3) == 0 && KafkaStatistics.total(.nan) == 0)
        #expect(KafkaStatistics.total(.infinity) == 0 && KafkaStatistics.total(41.9) == 41 && KafkaStatistics.total(1e300) == Int.max)
    }

    @Test func malformedDocumentsAreRefusedWhole() {
        let statistics = KafkaStatistics(sink: "events", factory: PrometheusExporter(version: "test").factory)
        let refused = [
            "", "{", #"{"msg_cnt":}"#, #"{"a":1}x"#, "[" + String(repeating: "[", count: 100) + "]", #"{"a":"\#u{01}"}"#,
            "+1", "01", "1.", ".5", "1e", "-", #""\q""#, "[1,]", #"{"a" 1}"#, "tru", "nul",
        ]
        for text in refused {
            #expect(!Self.update(statistics, text), "\(text)")
        }
        var invalidUTF8: [UInt8] = Array(#"{"a":""#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8)
        #expect(!invalidUTF8.withUnsafeMutableBytes { statistics.update(json: UnsafeRawBufferPointer($0)) })
        for text in ["0", "-0.5e-3", "1E+2", #""\u00e9\ud83d\ude00""#, " [ ] ", #"{"a":{"b":[true,false,null]}}"#, "1e999", #""\ud800""#, #""\udc00x""#, #""\ud800\u0041""#] {
            #expect(Self.update(statistics, text), "\(text)")
        }
    }
}
