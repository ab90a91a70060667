/// The configuration `sluice run` uses without `--config`: a copy of configs/quickstart.yaml
/// (a test keeps the two identical).
enum DefaultConfig {
    static let yaml = #"""
# Sluice quickstart: runs with nothing else installed.
# Events POSTed to /v1/events/{topic} are appended to NDJSON segment files in ./data/events.
#
#   curl -s localhost:8080/v1/events/orders -H 'content-type: application/x-ndjson' \
#        --data-binary $'{"id":1}\n{"id":2}\n'
listeners:
  - name: main
    address: 127.0.0.1:8080

admin:
  address: 127.0.0.1:9901          # GET /ready, GET /health

sinks:
  - name: archive
    file:
      directory: ./data/events
      segment_bytes: 64MiB
      fsync: always                  # fsync before every ack

routes:
  - name: ingest
    match: { path: "/v1/events/{topic}", methods: [POST] }
    ingest:
      sink: archive
      topic: "{topic}"
      key: header:X-Event-Key
      headers_to_kafka: [X-Request-Id]
      ack: sink
"""#
}
