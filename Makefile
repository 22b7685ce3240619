# etcdpulse — build and test. `make test` is what CI runs; it installs
# everything the tests need from the Go module graph.

GO      ?= go
BIN     := $(CURDIR)/bin

# Build information, stamped the way Prometheus' promu does. The version
# lives in one place, the VERSION file (a plain go build reads it too, see
# version.go); a build without git or the Makefile falls back to Go's own
# build info (internal/buildinfo).
VERSION    := $(shell cat $(CURDIR)/VERSION)
REVISION   := $(shell git rev-parse HEAD 2>/dev/null)
ifneq ($(REVISION),)
# As Go marks vcs.modified: anything git status shows.
REVISION   := $(REVISION)$(shell test -z "$$(git status --porcelain 2>/dev/null)" || echo -modified)
endif
BRANCH     := $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null)
BUILD_USER := $(shell whoami)@$(shell uname -n)
BUILD_DATE := $(shell date -u +%Y%m%d-%H:%M:%S)
VERSION_PKG := github.com/prometheus/common/version
LDFLAGS := -X $(VERSION_PKG).Version=$(VERSION) -X $(VERSION_PKG).Revision=$(REVISION) \
	-X $(VERSION_PKG).Branch=$(BRANCH) -X $(VERSION_PKG).BuildUser=$(BUILD_USER) \
	-X $(VERSION_PKG).BuildDate=$(BUILD_DATE)

# Real etcd and etcdctl, built from the versions pinned in go.mod (tool lines).
ETCD    := $(BIN)/etcd
ETCDCTL := $(BIN)/etcdctl
# promtool and Prometheus 3.x, built from the module graph. Prometheus stays
# out of go.mod: one of its dependencies is not served by the proxy.
PROMETHEUS_VERSION := v0.316.0
PROMTOOL   := $(BIN)/promtool
PROMETHEUS := $(BIN)/prometheus
# An older etcd to stay compatible with: Debian 12's etcd-server (3.4),
# unpacked from its package under bin/ (no root needed, nothing installed
# system-wide).
ETCD_COMPAT := $(BIN)/etcd-3.4/usr/bin/etcd
# A real Kubernetes API server and helm, each built from the Go module graph
# in a tools module of its own (tools/kube, tools/helm), to render the chart
# and check every manifest by server-side dry-run.
KUBE_APISERVER := $(BIN)/kube-apiserver
HELM           := $(BIN)/helm
# The published CRD files of the operators the chart targets, taken from
# their modules (the module cache holds the whole repository).
PROMETHEUS_OPERATOR_VERSION := v0.94.0
GRAFANA_OPERATOR_VERSION    := v5.18.0
CRDS := $(BIN)/crds
# etcd built with its own failpoints (go.etcd.io/gofail), which tests switch
# at run time over HTTP (GOFAIL_HTTP) to stall a member's WAL or apply. It is
# bin/etcd's source, dependencies and Go, with `gofail enable` run over a
# copy of etcd's server module; the tools module tools/failpoints builds it
# from that copy (its replace names FAILPOINTS_SRC, so that path is fixed).
ETCD_FAILPOINTS         := $(BIN)/etcd-failpoints
ETCD_FAILPOINTS_VERSION := v3.7.3
GOFAIL_VERSION          := v0.2.0
FAILPOINTS_SRC          := $(CURDIR)/bin/etcd-failpoints-src
FAILPOINTS_PKGS         := etcdserver etcdserver/api/v3rpc storage/backend storage/wal

.PHONY: all build tools test lint docs dashboards generate chart-lint image print-image bench-detection bench-alerts clean

all: build

# Static binaries, as the image has (Dockerfile): without cgo the agent
# runs on any Linux, and the tests build with the same settings as the
# image, in one build cache.
export CGO_ENABLED := 0

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/etcdpulse ./cmd/etcdpulse

$(ETCD): go.mod go.sum
	$(GO) build -o $@ go.etcd.io/etcd/server/v3

$(ETCDCTL): go.mod go.sum
	$(GO) build -o $@ go.etcd.io/etcd/etcdctl/v3

$(PROMTOOL):
	GOBIN=$(BIN) $(GO) install -tags remove_all_sd github.com/prometheus/prometheus/cmd/promtool@$(PROMETHEUS_VERSION)

$(PROMETHEUS):
	GOBIN=$(BIN) $(GO) install -tags remove_all_sd github.com/prometheus/prometheus/cmd/prometheus@$(PROMETHEUS_VERSION)

$(ETCD_COMPAT):
	rm -rf $(BIN)/etcd-3.4 && mkdir -p $(BIN)/etcd-3.4
	cd $(BIN)/etcd-3.4 && { apt-get download etcd-server || { apt-get update && apt-get download etcd-server; }; }
	dpkg-deb -x $(BIN)/etcd-3.4/etcd-server_*.deb $(BIN)/etcd-3.4
	$@ --version | grep '^etcd Version: 3\.4\.'

$(KUBE_APISERVER): tools/kube/go.mod tools/kube/go.sum
	cd tools/kube && $(GO) build -o $@ k8s.io/kubernetes/cmd/kube-apiserver

$(HELM): tools/helm/go.mod tools/helm/go.sum
	cd tools/helm && $(GO) build -o $@ helm.sh/helm/v3/cmd/helm

# The copy is made afresh each time, from the module cache, and changed the
# same way (gofail's rewrite, one requirement added with go mod edit, not
# go get, which would resolve and could move other versions): the build reads
# nothing from it but sources and its go.mod, and checks every other module
# against tools/failpoints/go.sum. No go command runs inside the copy, so
# its toolchain line (a newer patch release) never asks for a download.
$(ETCD_FAILPOINTS): tools/failpoints/go.mod tools/failpoints/go.sum Makefile
	rm -rf $(FAILPOINTS_SRC)
	d=$$(cd / && $(GO) mod download -json go.etcd.io/etcd/server/v3@$(ETCD_FAILPOINTS_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p') && \
	  test -n "$$d" && cp -R "$$d" $(FAILPOINTS_SRC)
	chmod -R u+w $(FAILPOINTS_SRC)
	$(GO) run go.etcd.io/gofail@$(GOFAIL_VERSION) enable $(addprefix $(FAILPOINTS_SRC)/,$(FAILPOINTS_PKGS))
	$(GO) mod edit -require=go.etcd.io/gofail@$(GOFAIL_VERSION) $(FAILPOINTS_SRC)/go.mod
	cd tools/failpoints && $(GO) build -o $@ go.etcd.io/etcd/server/v3
	$@ --version | grep -x 'etcd Version: $(ETCD_FAILPOINTS_VERSION:v%=%)'

# moddir prints the directory of MODULE@VERSION in the module cache,
# downloading it first.
moddir = $$(cd tools/kube && $(GO) mod download -json $(1) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p')

$(CRDS)/.done: Makefile
	rm -rf $(CRDS) && mkdir -p $(CRDS)
	d=$(call moddir,github.com/prometheus-operator/prometheus-operator@$(PROMETHEUS_OPERATOR_VERSION)) && \
	  cp $$d/example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml \
	     $$d/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml \
	     $$d/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml $(CRDS)/
	d=$(call moddir,github.com/grafana/grafana-operator/v5@$(GRAFANA_OPERATOR_VERSION)) && \
	  cp $$d/config/crd/bases/grafana.integreatly.org_grafanadashboards.yaml $(CRDS)/
	chmod 644 $(CRDS)/*.yaml && touch $@

# The container image (Dockerfile). Its name is defined once, as the chart's
# image.repository in deploy/helm/etcdpulse/values.yaml, and its tag is
# VERSION, the chart's appVersion: the chart runs what this builds (a test
# checks that print-image agrees with the chart). PLATFORMS builds several
# architectures (docker buildx, or podman --manifest); IMAGE_BUILD_FLAGS
# passes more, such as --push.
IMAGE_REPOSITORY = $(shell sed -n 's/^  repository: *//p' deploy/helm/etcdpulse/values.yaml | head -n 1)
IMAGE            = $(IMAGE_REPOSITORY):$(VERSION)
PLATFORMS        ?=
IMAGE_BUILD_FLAGS ?=
CONTAINER_ENGINE ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)
IMAGE_ARGS = --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) $(IMAGE_BUILD_FLAGS)

image:
	@test -n "$(CONTAINER_ENGINE)" || { echo "make image: needs docker or podman (CONTAINER_ENGINE=...)" >&2; exit 1; }
ifeq ($(PLATFORMS),)
	$(CONTAINER_ENGINE) build $(IMAGE_ARGS) -t $(IMAGE) .
else ifneq ($(findstring podman,$(CONTAINER_ENGINE)),)
	$(CONTAINER_ENGINE) build --platform $(PLATFORMS) $(IMAGE_ARGS) --manifest $(IMAGE) .
else
	$(CONTAINER_ENGINE) buildx build --platform $(PLATFORMS) $(IMAGE_ARGS) -t $(IMAGE) .
endif

print-image:
	@echo $(IMAGE)

tools: $(ETCD) $(ETCDCTL) $(ETCD_FAILPOINTS) $(PROMTOOL) $(PROMETHEUS) $(ETCD_COMPAT) $(KUBE_APISERVER) $(HELM) $(CRDS)/.done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# The whole suite, against real etcd clusters (in process and as processes).
test: tools lint
	ETCDPULSE_ETCD_BIN=$(ETCD) ETCDPULSE_ETCDCTL_BIN=$(ETCDCTL) \
	ETCDPULSE_ETCD_COMPAT_BIN=$(ETCD_COMPAT) ETCDPULSE_ETCD_FAILPOINTS_BIN=$(ETCD_FAILPOINTS) \
	ETCDPULSE_PROMTOOL=$(PROMTOOL) ETCDPULSE_PROMETHEUS=$(PROMETHEUS) \
	ETCDPULSE_KUBE_APISERVER=$(KUBE_APISERVER) ETCDPULSE_HELM=$(HELM) ETCDPULSE_CRDS=$(CRDS) \
	ETCDPULSE_STRICT=1 \
	  $(GO) test -count=1 -timeout 25m ./...

docs:
	$(GO) run ./cmd/etcdpulse docs metrics > docs/metrics.md
	$(GO) run ./cmd/etcdpulse docs config > docs/configuration.md

dashboards:
	$(GO) run ./cmd/etcdpulse dashboards --output-dir dashboards/json

# The Helm chart (the source) and the plain manifest rendered from it.
CHART := deploy/helm/etcdpulse

# Everything generated from code and committed: the tests fail when stale.
# The chart reads the rules and dashboards as files (never templated), and
# deploy/etcdpulse.yaml is rendered from the chart once they are fresh.
generate: docs dashboards $(HELM)
	$(GO) run ./cmd/etcdpulse alerts > alerts/rules.yml
	$(GO) run ./cmd/etcdpulse alerts --format=prometheusrule > alerts/prometheusrule.yaml
	$(GO) run ./cmd/etcdpulse alerts > $(CHART)/files/rules.yaml
	rm -rf $(CHART)/files/dashboards && mkdir -p $(CHART)/files/dashboards
	$(GO) run ./cmd/etcdpulse dashboards --output-dir $(CHART)/files/dashboards
	{ printf '%s\n' '# Generated by `make generate` from deploy/helm/etcdpulse with' \
	    '# `helm template etcdpulse deploy/helm/etcdpulse --namespace etcdpulse --set namespace.create=true`; do not edit.'; \
	  $(HELM) template etcdpulse $(CHART) --namespace etcdpulse --set namespace.create=true; } > deploy/etcdpulse.yaml.tmp
	mv deploy/etcdpulse.yaml.tmp deploy/etcdpulse.yaml

# helm lint --strict for every distribution (the tests in deploy/ do too).
chart-lint: $(HELM)
	for d in kubeadm k3s rke2 k0s external; do \
	  $(HELM) lint --strict $(CHART) --set distribution=$$d || exit 1; \
	done

# Time to detect each fault on a 3-member cluster (docs/benchmarks.md); the
# wedged members run on bin/etcd-failpoints.
bench-detection: tools
	ETCDPULSE_ETCD_BIN=$(ETCD) ETCDPULSE_ETCD_FAILPOINTS_BIN=$(ETCD_FAILPOINTS) \
	  $(GO) test -run '^$$' -bench BenchmarkDetection -benchtime 5x -timeout 30m ./agent/

# Time from two of three members killed to EtcdQuorumLost firing in a real
# Prometheus with the shipped rules (docs/benchmarks.md).
bench-alerts: tools
	ETCDPULSE_ETCD_BIN=$(ETCD) ETCDPULSE_PROMETHEUS=$(PROMETHEUS) \
	  $(GO) test -run '^$$' -bench BenchmarkLiveQuorumLost -benchtime 5x -timeout 60m ./alerts/

clean:
	rm -rf $(BIN)
