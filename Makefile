# etcdpulse — build and test. `make test` is what CI runs; it installs
# everything the tests need from the Go module graph.

GO      ?= go
BIN     := $(CURDIR)/bin
VERSION ?= 0.1.0-dev
LDFLAGS := -X github.com/prometheus/common/version.Version=$(VERSION)

# Real etcd and etcdctl, built from the versions pinned in go.mod (tool lines).
ETCD    := $(BIN)/etcd
ETCDCTL := $(BIN)/etcdctl

.PHONY: all build tools test lint docs bench-detection clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/etcdpulse ./cmd/etcdpulse

$(ETCD): go.mod go.sum
	$(GO) build -o $@ go.etcd.io/etcd/server/v3

$(ETCDCTL): go.mod go.sum
	$(GO) build -o $@ go.etcd.io/etcd/etcdctl/v3

tools: $(ETCD) $(ETCDCTL)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# The whole suite, against real etcd clusters (in process and as processes).
test: tools lint
	ETCDPULSE_ETCD_BIN=$(ETCD) ETCDPULSE_ETCDCTL_BIN=$(ETCDCTL) \
	  $(GO) test -count=1 -timeout 20m ./...

docs:
	$(GO) run ./cmd/etcdpulse docs metrics > docs/metrics.md

# Time to detect each fault on a 3-member cluster (docs/benchmarks.md).
bench-detection: tools
	ETCDPULSE_ETCD_BIN=$(ETCD) $(GO) test -run '^$$' -bench BenchmarkDetection -benchtime 5x -timeout 30m ./agent/

clean:
	rm -rf $(BIN)
