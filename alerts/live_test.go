package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdpulse/etcdpulse/agent"
	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/internal/promtool"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// liveSetup is a real 3-member etcd cluster, one agent per member at
// default settings, and a real Prometheus scraping the agents every 15 s
// with the shipped rules loaded.
type liveSetup struct {
	cluster *etcdtest.Cluster
	prom    string
}

// startLive starts the setup; prepare, when given, runs on the cluster
// before the agents start and may adjust their configuration.
func startLive(tb testing.TB, opts etcdtest.Options, prepare ...func(*etcdtest.Cluster, *agent.Config)) *liveSetup {
	tb.Helper()
	opts.Size, opts.Mode = 3, etcdtest.InProcess
	c := etcdtest.Start(tb, opts)
	urls := c.ClientURLs()
	var targets []string
	for i := range urls {
		cfg := agent.DefaultConfig()
		cfg.Etcd.Endpoints = append([]string{urls[i]}, append(append([]string{}, urls[:i]...), urls[i+1:]...)...)
		cfg.Disk.Enabled = false // no data dir beside these members' agents
		for _, p := range prepare {
			if i == 0 {
				p(c, &cfg)
			} else {
				p(nil, &cfg)
			}
		}
		a, err := agent.New(agent.Options{Config: &cfg, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			tb.Fatal(err)
		}
		srv := httptest.NewServer(a.Handler())
		if err := a.Start(context.Background()); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = a.Stop(); srv.Close() })
		targets = append(targets, strings.TrimPrefix(srv.URL, "http://"))
	}

	dir := tb.TempDir()
	rules, err := filepath.Abs("rules.yml")
	if err != nil {
		tb.Fatal(err)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 15s
  evaluation_interval: 15s
rule_files: [%q]
scrape_configs:
  - job_name: etcdpulse
    static_configs:
      - targets: ['%s']
        labels: {cluster: live}
`, rules, strings.Join(targets, "', '"))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		tb.Fatal(err)
	}
	s := &liveSetup{cluster: c, prom: startPrometheus(tb, dir)}
	s.waitFor(tb, "every agent scraped and the cluster healthy", 3*time.Minute, func() (bool, error) {
		v, err := s.query(`count(etcdpulse_up == 1) == 3 and on() max(etcdpulse_cluster_fault_tolerance) == 1`)
		return len(v) == 1, err
	})
	return s
}

// prometheusAttempts bounds how many ports startPrometheus tries.
const prometheusAttempts = 4

// startPrometheus runs Prometheus on dir/prometheus.yml and returns its URL
// once it is ready. Prometheus binds its port itself, from a flag: the port
// is found free a moment before, and when another process took it in
// between, Prometheus exits saying so and starts again on another one.
func startPrometheus(tb testing.TB, dir string) string {
	tb.Helper()
	for attempt := 1; ; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		promURL, err := tryPrometheus(tb, dir, attempt, addr)
		if err == nil {
			return promURL
		}
		if !errors.Is(err, errPortTaken) || attempt == prometheusAttempts {
			tb.Fatal(err)
		}
		tb.Logf("%v; starting it on another port", err)
	}
}

// errPortTaken marks a Prometheus that exited because its port was taken.
var errPortTaken = errors.New("its port was taken")

// tryPrometheus starts Prometheus once, listening on addr, and waits until
// it is ready or has exited.
func tryPrometheus(tb testing.TB, dir string, attempt int, addr string) (string, error) {
	promURL := "http://" + addr
	log, err := os.Create(filepath.Join(dir, fmt.Sprintf("prometheus-%d.log", attempt)))
	if err != nil {
		tb.Fatal(err)
	}
	defer log.Close() // Prometheus has its own descriptor
	cmd := exec.Command(promtool.PrometheusPath(tb),
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if tb.Failed() {
			out, _ := os.ReadFile(log.Name())
			tb.Logf("prometheus log (%s):\n%s", log.Name(), out)
		}
	})
	// Whoever took the port may accept connections and never answer: a
	// request gives up when Prometheus exits, or after a while.
	hc := &http.Client{Timeout: 5 * time.Second}
	exitCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-exitCtx.Done():
		}
	}()
	ready := false
	testenv.Eventually(tb, 2*time.Minute, "prometheus ready on "+promURL, func() error {
		select {
		case <-exited:
			return nil // it will never be
		default:
		}
		req, err := http.NewRequestWithContext(exitCtx, http.MethodGet, promURL+"/-/ready", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: %s", resp.Status)
		}
		ready = true
		return nil
	})
	select {
	case <-exited: // whoever answered, it was not this Prometheus
	default:
		if ready {
			return promURL, nil
		}
	}
	err = fmt.Errorf("prometheus on %s exited before it was ready (%v)", promURL, waitErr)
	if out, _ := os.ReadFile(log.Name()); strings.Contains(string(out), "address already in use") {
		err = fmt.Errorf("%w: %w", err, errPortTaken)
	}
	return "", err
}

// A Prometheus whose port another process holds is told apart from one
// that fails otherwise: that is what startPrometheus retries on.
func TestPrometheusPortTaken(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte("global: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// It accepts connections and never answers, as a stranger may.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if _, err := tryPrometheus(t, dir, 1, taken.Addr().String()); !errors.Is(err, errPortTaken) {
		t.Fatalf("Prometheus on a taken port: %v, want errPortTaken", err)
	}
	// An address of TEST-NET-1 (RFC 5737), not this machine's.
	if _, err := tryPrometheus(t, dir, 2, "192.0.2.1:9090"); err == nil || errors.Is(err, errPortTaken) {
		t.Fatalf("Prometheus on an address it cannot bind: %v, want a failure other than errPortTaken", err)
	}
}

func (s *liveSetup) waitFor(tb testing.TB, what string, limit time.Duration, cond func() (bool, error)) time.Duration {
	tb.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < limit {
		var ok bool
		if ok, err = cond(); ok {
			return time.Since(start)
		}
		time.Sleep(250 * time.Millisecond)
	}
	tb.Fatalf("%s: not within %s (last error: %v)", what, limit, err)
	return 0
}

func (s *liveSetup) get(path string, v any) error {
	resp, err := http.Get(s.prom + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", path, resp.Status, body)
	}
	return json.Unmarshal(body, v)
}

func (s *liveSetup) query(q string) ([]json.RawMessage, error) {
	var r struct {
		Data struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	err := s.get("/api/v1/query?query="+url.QueryEscape(q), &r)
	return r.Data.Result, err
}

// firing lists the names of the firing alerts.
func (s *liveSetup) firing() ([]string, error) {
	var r struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := s.get("/api/v1/alerts", &r); err != nil {
		return nil, err
	}
	var out []string
	for _, a := range r.Data.Alerts {
		if a.State == "firing" {
			out = append(out, a.Labels["alertname"])
		}
	}
	sort.Strings(out)
	return out, nil
}

// killTwo stops two of the three members, returning them.
func (s *liveSetup) killTwo(tb testing.TB) []*etcdtest.Member {
	victims := s.cluster.Members()[1:]
	for _, m := range victims {
		if err := m.Kill(); err != nil {
			tb.Fatal(err)
		}
	}
	return victims
}

func (s *liveSetup) quorumLostFiring() (bool, error) {
	f, err := s.firing()
	return slices.Contains(f, "EtcdQuorumLost"), err
}

// The shipped rules, loaded in a real Prometheus, page for quorum loss on
// a real cluster. How fast is measured in BenchmarkLiveQuorumLost; the
// deadline here is only a bound against hanging.
func TestLiveQuorumLost(t *testing.T) {
	s := startLive(t, etcdtest.Options{})
	if f, err := s.firing(); err != nil || len(f) != 0 {
		t.Fatalf("alerts firing on a healthy cluster: %v (%v)", f, err)
	}
	s.killTwo(t)
	d := s.waitFor(t, "EtcdQuorumLost firing", 5*time.Minute, s.quorumLostFiring)
	t.Logf("EtcdQuorumLost fired %s after two of three members were killed", d.Round(time.Second))
}

// One follower cut off from its peers keeps answering clients but reports
// no leader, so has_leader is 0 on every agent, while the other two commit.
// In a real Prometheus with the shipped rules that pages as quorum at risk,
// with the disagreement as a warning, and never as EtcdNoLeader; the cut-off
// member, answering but applying nothing, is EtcdReplicationLagging, and
// the two others committing, writes do not fail.
func TestLiveOneMemberCutOff(t *testing.T) {
	s := startLive(t, etcdtest.Options{PeerProxy: true})
	lead, err := s.cluster.WaitLeader(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	victim := s.cluster.Members()[0]
	if victim == lead {
		victim = s.cluster.Members()[1]
	}
	if err := victim.IsolatePeers(true); err != nil {
		t.Fatal(err)
	}
	var last []string
	s.waitFor(t, "EtcdQuorumAtRisk and EtcdLeaderDisagreement firing", 5*time.Minute, func() (bool, error) {
		f, err := s.firing()
		if slices.Contains(f, "EtcdNoLeader") {
			t.Fatalf("EtcdNoLeader fired for one cut-off member (firing: %v)", f)
		}
		last = f
		return slices.Contains(f, "EtcdQuorumAtRisk") && slices.Contains(f, "EtcdLeaderDisagreement"), err
	})
	// Both waited out a "for" of a minute: EtcdNoLeader ("for" 30s) would
	// have fired by now had its expression held.
	if v, err := s.query(`max(etcdpulse_cluster_has_leader) == 0 and on() max(etcdpulse_cluster_leader_voters) == 2`); err != nil || len(v) != 1 {
		t.Errorf("has_leader 0 with 2 voters following the leader: %d results (%v)", len(v), err)
	}
	// The cut-off member still answers the agents, but applies none of
	// the two others' writes: it serves data that ages a second a second.
	lagging := fmt.Sprintf(`ALERTS{alertname="EtcdReplicationLagging", alertstate="firing", member=%q}`, victim.Name())
	s.waitFor(t, "EtcdReplicationLagging firing for the cut-off member", 3*time.Minute, func() (bool, error) {
		v, err := s.query(lagging)
		return len(v) == 1, err
	})
	// The two others commit: no page about writes, not even pending.
	if v, err := s.query(`count_over_time(ALERTS{alertname="EtcdWritesFailing"}[10m])`); err != nil || len(v) > 0 {
		t.Errorf("EtcdWritesFailing pending or firing while two of three members commit: %s (%v)", v, err)
	}
	t.Logf("firing with one member cut off: %v", last)
}

// The password the agents share is changed in etcd: they cannot judge the
// cluster any more. In a real Prometheus with the shipped rules that is one
// warning per agent and member, and no page about quorum or the leader,
// not even pending.
func TestLivePasswordChanged(t *testing.T) {
	var cli *clientv3.Client
	s := startLive(t, etcdtest.Options{}, func(c *etcdtest.Cluster, cfg *agent.Config) {
		if c != nil {
			c.EnableAuth(t, "root-password")
			cli = c.Client(t)
			for _, step := range []func() error{
				func() error { _, err := cli.RoleAdd(t.Context(), "etcdpulse"); return err },
				func() error { _, err := cli.UserAdd(t.Context(), "etcdpulse", "old"); return err },
				func() error { _, err := cli.UserGrantRole(t.Context(), "etcdpulse", "etcdpulse"); return err },
			} {
				if err := step(); err != nil {
					t.Fatal(err)
				}
			}
		}
		cfg.Etcd.Username, cfg.Etcd.Password = "etcdpulse", "old"
	})
	if _, err := cli.UserChangePassword(t.Context(), "etcdpulse", "new"); err != nil {
		t.Fatal(err)
	}
	// Writes fail too, for the agents' own reason (authentication): that
	// is no more etcd failing writes than the rest.
	pages := `ALERTS{alertname=~"EtcdQuorumLost|EtcdQuorumAtRisk|EtcdNoLeader|EtcdMemberUnhealthy|EtcdWritesFailing"}`
	s.waitFor(t, "EtcdpulseAgentRefused firing for every agent and member", 5*time.Minute, func() (bool, error) {
		if v, err := s.query(pages); err != nil || len(v) > 0 {
			t.Fatalf("a page about the cluster went pending or fired on a healthy cluster: %s (%v)", v, err)
		}
		v, err := s.query(`count(ALERTS{alertname="EtcdpulseAgentRefused", alertstate="firing", reason="authentication"})`)
		return len(v) == 1 && strings.Contains(string(v[0]), `"9"`), err
	})
	if v, err := s.query(`count_over_time(` + pages + `[10m])`); err != nil || len(v) > 0 {
		t.Errorf("a page about the cluster was pending or firing at some point: %s (%v)", v, err)
	}
}

// BenchmarkLiveQuorumLost measures the time from killing two of three
// members to EtcdQuorumLost firing in Prometheus (15 s scrape and
// evaluation intervals). Run: make bench-alerts.
func BenchmarkLiveQuorumLost(b *testing.B) {
	s := startLive(b, etcdtest.Options{})
	var times []time.Duration
	for range b.N {
		victims := s.killTwo(b)
		times = append(times, s.waitFor(b, "EtcdQuorumLost firing", 5*time.Minute, s.quorumLostFiring))
		for _, m := range victims {
			if err := m.RestartNoWait(); err != nil {
				b.Fatal(err)
			}
		}
		s.waitFor(b, "recovery", 5*time.Minute, func() (bool, error) {
			ok, err := s.quorumLostFiring()
			return !ok, err
		})
		s.waitFor(b, "healthy again", 5*time.Minute, func() (bool, error) {
			v, err := s.query(`max(etcdpulse_cluster_fault_tolerance) == 1`)
			return len(v) == 1, err
		})
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(times[len(times)/2].Seconds(), "s-median/fire")
	b.ReportMetric(times[len(times)-1].Seconds(), "s-max/fire")
	b.Logf("time to EtcdQuorumLost firing: %v", times)
}
