# berth — build, test, demo. Packaging targets (deb, rpm) live in
# packaging/packaging.mk.

GO      ?= go
VERSION := $(shell cat packaging/VERSION)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     := bin/berth

.PHONY: build test demo vet bench clean fuzz pgo
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/berth

# test: vet, then every test with the race detector, through testsummary,
# which prints go test's usual lines and ends with how many tests ran,
# failed and were skipped (and why), last line "N passed, N failed, N
# skipped"; it fails when a test or a package does.
test:
	$(GO) vet ./...
	$(GO) build -o bin/testsummary ./packaging/testsummary
	./bin/testsummary -go $(GO) -- -race -count=1 -timeout 40m ./...
	$(GO) test -race -count=1 ./balancer/ -args -engine=loop

# The benchmark (bench/README.md): wrk against berth, nginx, Node's cluster
# module and Passenger, in interleaved rounds; writes bench/RESULTS.md.
# Knobs: BENCH_ROUNDS, BENCH_DURATION, BENCH_PEERS, BENCH_LOADS. Never run in CI.
bench: build
	$(GO) build -o bin/bench ./bench
	./bin/bench

# pgo: refresh cmd/berth/default.pgo, the CPU profile `go build` optimizes
# berth with (profile-guided optimization; DESIGN.md says why and when):
# the bench's loads against a build with pprof (-tags berthdebug), one round,
# berth on both engines, each run's profile merged. About 3 minutes.
pgo:
	CGO_ENABLED=0 $(GO) build -pgo=off -trimpath -tags berthdebug -o bin/berth-profile ./cmd/berth
	$(GO) build -o bin/bench ./bench
	GO=$(GO) ./bin/bench -berth bin/berth-profile -profile cmd/berth/default.pgo

demo: build
	./$(BIN) serve examples/hello --port 3000 --workers 2

# Each fuzz target for FUZZTIME (go test runs only their seed corpus).
# A duration can fail a clean run on Go 1.26: the coordinator reports its
# own deadline as "context deadline exceeded" when a worker is mid-input as
# time runs out (go.dev/issue/75804, fixed in Go 1.27). A count such as
# FUZZTIME=20000x has no deadline to race, so CI uses one.
FUZZTIME ?= 30s
FUZZ_TARGETS := ./balancer/h1:FuzzDifferential ./balancer/h1:FuzzDifferentialFraming \
	./balancer/h1:FuzzReadRequest \
	./balancer/h1:FuzzChunked ./balancer/h1:FuzzReadResponse \
	./balancer/static:FuzzCleanPath ./balancer/static:FuzzParseRange \
	./balancer/static:FuzzValidators ./balancer/limits:FuzzParseSize \
	./balancer/cache:FuzzCacheControl ./cmd/berth:FuzzConfigFile
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $$t for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
	done

clean:
	rm -rf bin

-include packaging/packaging.mk
