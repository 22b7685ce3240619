package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/crypto/bcrypt"

	"github.com/etcdpulse/etcdpulse/agent"
	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// --web.config.file: the agent's own endpoints behind basic auth, through
// exporter-toolkit, on a real socket.
func TestServeWebConfigBasicAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(webConfig, []byte(fmt.Sprintf("basic_auth_users:\n  prometheus: %s\n", hash)), 0o600); err != nil {
		t.Fatal(err)
	}
	h := quietAgent(t, nil).handler
	ls, err := listenAll([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ls, webConfig, h, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	url := "http://" + ls[0].Addr().String() + "/healthz"
	get := func(user, pass string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body) //nolint:errcheck
				resp.Body.Close()
				return resp.StatusCode
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
		}
	}
	if code := get("", ""); code != http.StatusUnauthorized {
		t.Errorf("without credentials: %d, want 401", code)
	}
	if code := get("prometheus", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("with a wrong password: %d, want 401", code)
	}
	if code := get("prometheus", "s3cret"); code != http.StatusOK {
		t.Errorf("with the password: %d, want 200", code)
	}
}

// A taken port is a clear error naming the flag.
func TestListenPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = listenAll([]string{l.Addr().String()})
	if err == nil || !strings.HasPrefix(err.Error(), "--web.listen-address "+l.Addr().String()+": the port is already in use") {
		t.Fatalf("error = %v", err)
	}
}

// net/http's own errors, a failed TLS handshake here, go to the agent's
// structured logger and not to the standard log.
func TestServeErrorLogIsStructured(t *testing.T) {
	certs := etcdtest.NewTLS(t)
	webConfig := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(webConfig, []byte(fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\n", certs.ServerCertFile, certs.ServerKeyFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	// The standard log is process-wide: this test must not run in parallel.
	var std testenv.Buffer
	defer log.SetOutput(log.Writer())
	log.SetOutput(&std)

	var structured testenv.Buffer
	logger := slog.New(slog.NewJSONHandler(&structured, nil))
	ls, err := listenAll([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	go func() { done <- serve(ctx, ls, webConfig, ok, logger) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	addr := ls[0].Addr().String()

	// TLS works, so the handshake error below is the client's fault alone.
	pool, err := certs.CertPool()
	if err != nil {
		t.Fatal(err)
	}
	tlsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if body := fetch(t, tlsClient, "https://"+addr+"/"); body != "ok\n" {
		t.Fatalf("over TLS: %q, want ok", body)
	}
	if body := fetch(t, http.DefaultClient, "http://"+addr+"/"); !strings.Contains(body, "Client sent an HTTP request to an HTTPS server") {
		t.Fatalf("plain HTTP to the TLS port: %q", body)
	}
	want := "http: TLS handshake error from 127.0.0.1:"
	var line map[string]any
	for deadline := time.Now().Add(30 * time.Second); line == nil; time.Sleep(50 * time.Millisecond) {
		for _, l := range strings.Split(structured.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(l), &rec) == nil && strings.HasPrefix(fmt.Sprint(rec["msg"]), want) {
				line = rec
			}
		}
		if line == nil && time.Now().After(deadline) {
			t.Fatalf("no %q in the structured log:\n%s\nstandard log:\n%s", want, structured.String(), std.String())
		}
	}
	if line["level"] != "ERROR" || !strings.Contains(fmt.Sprint(line["msg"]), "client sent an HTTP request to an HTTPS server") {
		t.Errorf("structured record = %v, want level ERROR and the cause", line)
	}
	if strings.Contains(std.String(), "TLS handshake error") {
		t.Errorf("the standard log got the handshake error:\n%s", std.String())
	}
}

// fetch GETs url, retrying while the server is not up yet, and returns the
// body.
func fetch(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := c.Get(url)
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
}

// servedAgent is an agent built and served as run builds and serves it,
// on a loopback test server.
type servedAgent struct {
	*agent.Agent
	url     string
	handler http.Handler
}

// quietAgent is an agent on an endpoint where nothing listens, with the
// capabilities that touch the host off: for tests of the HTTP side.
func quietAgent(t *testing.T, mutate func(*fileConfig)) *servedAgent {
	t.Helper()
	closed := "http://" + testenv.RefusedAddr(t) // connections are refused
	cfg := defaultFileConfig()
	cfg.Etcd.Endpoints = []string{closed}
	cfg.Disk.Enabled, cfg.Network.Enabled, cfg.Host.Enabled = false, false, false
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	return serveAgent(t, cfg, nil)
}

// serveAgent builds, starts and serves the agent of cfg as run does, on a
// loopback test server, until the test ends.
func serveAgent(t testing.TB, cfg fileConfig, tp trace.TracerProvider) *servedAgent {
	t.Helper()
	a, h, err := newAgent(cfg, slog.New(slog.DiscardHandler), tp)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		if err := a.Stop(); err != nil {
			t.Error(err)
		}
	})
	return &servedAgent{Agent: a, url: srv.URL, handler: h}
}

// status GETs url and returns the status code and body.
func status(t *testing.T, url string) (int, string) {
	t.Helper()
	code, body := testenv.Get(t, url, "")
	return code, string(body)
}

// scrape parses the agent's /metrics.
func (a *servedAgent) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	_, body := status(t, a.url+defaultTelemetryPath)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// Go's profiles are served only when enabled, and the landing page offers
// its pprof links only then.
func TestPprof(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		t.Run(fmt.Sprintf("enable_pprof=%v", enabled), func(t *testing.T) {
			a := quietAgent(t, func(c *fileConfig) { c.Web.EnablePprof = enabled })
			code, landing := status(t, a.url+"/")
			if code != http.StatusOK || !strings.Contains(landing, "etcdpulse") {
				t.Fatalf("landing page: %d %q", code, landing)
			}
			if got := strings.Contains(landing, `href="/debug/pprof/heap"`); got != enabled {
				t.Errorf("landing page links /debug/pprof/heap: %v, want %v:\n%s", got, enabled, landing)
			}
			heapCode, heap := status(t, a.url+"/debug/pprof/heap")
			indexCode, index := status(t, a.url+"/debug/pprof/")
			if !enabled {
				if heapCode != http.StatusNotFound || indexCode != http.StatusNotFound {
					t.Errorf("/debug/pprof/heap: %d, /debug/pprof/: %d; want 404 for both", heapCode, indexCode)
				}
				return
			}
			// A heap profile is a gzipped protobuf.
			if heapCode != http.StatusOK || !strings.HasPrefix(heap, "\x1f\x8b") {
				t.Errorf("/debug/pprof/heap: %d, %d bytes; want 200 and a gzipped profile", heapCode, len(heap))
			}
			if indexCode != http.StatusOK || !strings.Contains(index, "goroutine") {
				t.Errorf("/debug/pprof/: %d %q", indexCode, index)
			}
		})
	}
}

// exporterFamilies are the agent's metrics about itself, client_golang's
// standard families: on /metrics unless web.disable_exporter_metrics is
// set, and not in the catalogue, which lists etcdpulse's own.
var exporterFamilies = []string{
	// collectors.NewGoCollector, default set
	"go_gc_duration_seconds", "go_gc_gogc_percent", "go_gc_gomemlimit_bytes", "go_goroutines", "go_info",
	"go_memstats_alloc_bytes", "go_memstats_alloc_bytes_total", "go_memstats_buck_hash_sys_bytes",
	"go_memstats_frees_total", "go_memstats_gc_sys_bytes", "go_memstats_heap_alloc_bytes",
	"go_memstats_heap_idle_bytes", "go_memstats_heap_inuse_bytes", "go_memstats_heap_objects",
	"go_memstats_heap_released_bytes", "go_memstats_heap_sys_bytes", "go_memstats_last_gc_time_seconds",
	"go_memstats_mallocs_total", "go_memstats_mcache_inuse_bytes", "go_memstats_mcache_sys_bytes",
	"go_memstats_mspan_inuse_bytes", "go_memstats_mspan_sys_bytes", "go_memstats_next_gc_bytes",
	"go_memstats_other_sys_bytes", "go_memstats_stack_inuse_bytes", "go_memstats_stack_sys_bytes",
	"go_memstats_sys_bytes", "go_sched_gomaxprocs_threads", "go_threads",
	// collectors.NewProcessCollector (Linux)
	"process_cpu_seconds_total", "process_max_fds", "process_network_receive_bytes_total",
	"process_network_transmit_bytes_total", "process_open_fds", "process_resident_memory_bytes",
	"process_start_time_seconds", "process_virtual_memory_bytes", "process_virtual_memory_max_bytes",
	// promhttp.InstrumentMetricHandler
	"promhttp_metric_handler_requests_in_flight", "promhttp_metric_handler_requests_total",
}

// The process's own go_*, process_* and promhttp_* metrics are served
// beside the agent's, every one of the standard families, and all of them
// go with web.disable_exporter_metrics.
func TestExporterMetrics(t *testing.T) {
	on := quietAgent(t, nil)
	off := quietAgent(t, func(c *fileConfig) { c.Web.DisableExporterMetrics = true })
	// The handler counts a scrape once it is answered: scrape twice.
	for _, a := range []*servedAgent{on, off} {
		a.scrape(t)
	}
	got := on.scrape(t)
	for _, name := range exporterFamilies {
		if _, ok := got[name]; !ok {
			t.Errorf("%s absent", name)
		}
	}
	for name := range got {
		if isExporterFamily(name) && !slices.Contains(exporterFamilies, name) {
			t.Errorf("%s exported, but not in exporterFamilies", name)
		}
	}
	if v, ok := value(got, "promhttp_metric_handler_requests_total", "code", "200"); !ok || v < 1 {
		t.Errorf("promhttp_metric_handler_requests_total{code=200} = %v (present %v), want >= 1 after a scrape", v, ok)
	}
	if v, ok := value(got, "process_start_time_seconds"); !ok || v <= 0 {
		t.Errorf("process_start_time_seconds = %v (present %v)", v, ok)
	}
	for name := range off.scrape(t) {
		if isExporterFamily(name) {
			t.Errorf("%s exported with web.disable_exporter_metrics", name)
		}
	}
}

func isExporterFamily(name string) bool {
	return strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "promhttp_")
}

// web.telemetry_path moves the metrics, and the landing page's link with
// them.
func TestTelemetryPath(t *testing.T) {
	a := quietAgent(t, func(c *fileConfig) { c.Web.TelemetryPath = "/agent/metrics" })
	code, body := status(t, a.url+"/agent/metrics")
	if code != http.StatusOK || !strings.Contains(body, "\netcdpulse_build_info{") {
		t.Errorf("/agent/metrics: %d, want 200 with etcdpulse_build_info:\n%s", code, body)
	}
	if code, _ := status(t, a.url+"/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics: %d, want 404", code)
	}
	if _, landing := status(t, a.url+"/"); !strings.Contains(landing, `href="/agent/metrics"`) {
		t.Errorf("the landing page does not link /agent/metrics:\n%s", landing)
	}
}

// value returns the sample of name whose labels include the given
// name=value pairs.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	return testenv.Sample(mfs, name, labels...)
}
