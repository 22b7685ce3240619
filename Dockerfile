# syntax=docker/dockerfile:1
# The etcdpulse image: a static binary (CGO_ENABLED=0) on distroless/static,
# run as distroless' non-root user. The build has no -trimpath: the paths it
# records are the container's own (/src, /go), the same on every build, and
# `make test` builds the test binaries exactly so (CGO_ENABLED=0), sharing
# one build cache. `make image` builds it for this machine's
# architecture, `make image PLATFORMS=linux/amd64,linux/arm64` for several
# (docker buildx or podman). The image's name lives in
# deploy/helm/etcdpulse/values.yaml (image.repository), its version in
# VERSION; the Makefile passes both. cmd/etcdpulse/image_test.go builds the
# binary exactly as the build stage below and runs it as ENTRYPOINT + CMD
# would, so a change here that breaks the image fails the tests.

# The Go release of go.mod's go line.
ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=unknown
ARG REVISION=unknown
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=${VERSION} -X github.com/prometheus/common/version.Revision=${REVISION}" \
      -o /out/etcdpulse ./cmd/etcdpulse

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=unknown
ARG REVISION=unknown
LABEL org.opencontainers.image.title="etcdpulse" \
      org.opencontainers.image.description="Health-monitoring agent for etcd: probes its member and the cluster, exports Prometheus metrics" \
      org.opencontainers.image.source="https://github.com/etcdpulse/etcdpulse" \
      org.opencontainers.image.documentation="https://github.com/etcdpulse/etcdpulse/blob/main/docs/install.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/etcdpulse /usr/bin/etcdpulse
# distroless' nonroot user. The Helm chart runs it as root (with every
# capability dropped) where etcd's keys are readable by root only: see
# docs/install.md.
USER 65532:65532
EXPOSE 12379
ENTRYPOINT ["/usr/bin/etcdpulse"]
CMD ["run"]
