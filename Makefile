# The two commands a newcomer needs:
#   make run    set up, build, and run Sluice on the embedded quickstart config
#   make test   set up and run every test (starts and stops a local Kafka-protocol broker)
.PHONY: run test bench build

run:
	scripts/run.sh

test:
	scripts/test.sh

build:
	swift build

bench:
	Benchmarks/kafka-ingest.sh
	Benchmarks/instructions.sh
