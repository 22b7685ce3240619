package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// testAgent is an agent running against a real cluster, served on a real
// loopback socket.
type testAgent struct {
	*Agent
	url  string
	stop func()
}

// startAgent runs an agent with the default schedule whose local member is
// endpoints[0].
func startAgent(t testing.TB, endpoints []string, mutate func(*Config)) *testAgent {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Etcd.Endpoints = endpoints
	if mutate != nil {
		mutate(&cfg)
	}
	return serveAgent(t, Options{Config: &cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// serveAgent builds and runs an agent from opts, serving its handler on a
// real loopback socket until the test ends.
func serveAgent(t testing.TB, opts Options) *testAgent {
	t.Helper()
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return serveAttached(t, a)
}

// serveAttached starts a built agent and serves its handler on a real
// loopback socket until the test ends.
func serveAttached(t testing.TB, a *Agent) *testAgent {
	t.Helper()
	srv := httptest.NewServer(a.Handler())
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ta := &testAgent{Agent: a, url: srv.URL}
	var once sync.Once
	ta.stop = func() {
		once.Do(func() {
			if err := a.Stop(); err != nil {
				t.Error(err)
			}
			srv.Close()
		})
	}
	t.Cleanup(ta.stop)
	return ta
}

// agentsFor starts one agent per member of c, each with its member first.
func agentsFor(t testing.TB, c *etcdtest.Cluster) []*testAgent {
	return agentsWith(t, c, nil)
}

// agentsWith is agentsFor with each agent's configuration adjusted by
// configure (if not nil) for the member it sits beside.
func agentsWith(t testing.TB, c *etcdtest.Cluster, configure func(m *etcdtest.Member, cfg *Config)) []*testAgent {
	var out []*testAgent
	urls := c.ClientURLs()
	for i := range urls {
		eps := append([]string{urls[i]}, append(append([]string{}, urls[:i]...), urls[i+1:]...)...)
		var f func(*Config)
		if configure != nil {
			m := c.Member(i)
			f = func(cfg *Config) { configure(m, cfg) }
		}
		out = append(out, startAgent(t, eps, f))
	}
	return out
}

// metrics is one scrape of /metrics, parsed.
type metrics map[string]*dto.MetricFamily

func (a *testAgent) scrape() (metrics, error) {
	resp, err := http.Get(a.url + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	return metrics(mfs), err
}

// value returns the sample of name whose labels include the given
// name=value pairs.
func (m metrics) value(name string, labels ...string) (float64, bool) {
	return testenv.Sample(m, name, labels...)
}

// labelsWhere lists the `member` label of every sample of name equal to v.
func (m metrics) labelsWhere(name string, v float64) []string {
	var out []string
	if mf, ok := m[name]; ok {
		for _, s := range mf.Metric {
			if s.Gauge != nil && s.Gauge.GetValue() == v {
				for _, l := range s.Label {
					if l.GetName() == "member" {
						out = append(out, l.GetValue())
					}
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// expect is a condition on one scrape; it returns nil when it holds.
type expect func(metrics) error

func gauge(name string, want float64, labels ...string) expect {
	return func(m metrics) error {
		got, ok := m.value(name, labels...)
		if !ok {
			return fmt.Errorf("%s%v absent", name, labels)
		}
		if got != want {
			return fmt.Errorf("%s%v = %v, want %v", name, labels, got, want)
		}
		return nil
	}
}

func gaugeBelow(name string, limit float64) expect {
	return func(m metrics) error {
		got, ok := m.value(name)
		if !ok {
			return fmt.Errorf("%s absent", name)
		}
		if got >= limit {
			return fmt.Errorf("%s = %v, want < %v", name, got, limit)
		}
		return nil
	}
}

func leaderIs(member string) expect {
	return func(m metrics) error {
		if got := m.labelsWhere("etcdpulse_member_is_leader", 1); len(got) != 1 || got[0] != member {
			return fmt.Errorf("leader = %v, want %s", got, member)
		}
		return nil
	}
}

func leaderIsNot(member string) expect {
	return func(m metrics) error {
		got := m.labelsWhere("etcdpulse_member_is_leader", 1)
		if len(got) != 1 || got[0] == member {
			return fmt.Errorf("leader = %v, want one leader other than %s", got, member)
		}
		return nil
	}
}

func counterAtLeast(name string, min float64) expect {
	return func(m metrics) error {
		got, _ := m.value(name)
		if got < min {
			return fmt.Errorf("%s = %v, want >= %v", name, got, min)
		}
		return nil
	}
}

// check scrapes once and reports the first failed expectation.
func (a *testAgent) check(exps ...expect) error {
	m, err := a.scrape()
	if err != nil {
		return err
	}
	var errs []string
	for _, e := range exps {
		if err := e(m); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// waitFor scrapes until every expectation holds. The deadline is generous:
// machines here are shared; the detection time itself is measured in
// BenchmarkDetection, not asserted.
func (a *testAgent) waitFor(t testing.TB, what string, exps ...expect) time.Duration {
	t.Helper()
	start := time.Now()
	testenv.Eventually(t, 45*time.Second, what, func() error { return a.check(exps...) })
	return time.Since(start)
}

// parseYAML reads a configuration over the defaults, as the command's file
// does (the command also checks the fields; these tests need not).
func parseYAML(t testing.TB, text string) Config {
	t.Helper()
	cfg := DefaultConfig()
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Fatalf("%s: %v", text, err)
	}
	return cfg
}
