package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// FailpointEtcdBinaryEnv names the environment variable giving etcd built
// with its own failpoints (go.etcd.io/gofail), the same etcd as EtcdBinary
// otherwise (`make tools` builds bin/etcd-failpoints, `make test` sets it).
const FailpointEtcdBinaryEnv = "ETCDPULSE_ETCD_FAILPOINTS_BIN"

// FailpointEtcdBinary returns $ETCDPULSE_ETCD_FAILPOINTS_BIN. Without it
// the test is unavailable: a failure under `make test`, a skip under a
// plain `go test`. Options.Failpoints runs it by default.
func FailpointEtcdBinary(t testing.TB) string {
	t.Helper()
	return testenv.EnvFile(t, FailpointEtcdBinaryEnv, "`make tools` builds bin/etcd-failpoints (etcd with gofail's failpoints) and `make test` sets it")
}

// Failpoints etcd 3.7 declares (`// gofail: var` in its sources) that
// tests use; the Makefile enables those of etcdserver, its v3rpc API,
// storage/backend and storage/wal.
const (
	// FailpointRaftBeforeSave runs in the raft loop before each save of
	// entries and hard state to the WAL: sleeping there is a WAL disk that
	// stalls. The member stops ticking, stepping its own Ready and sending
	// what it would have sent after the save (a follower's acks, a
	// leader's next heartbeats); Status and serializable reads still
	// answer.
	FailpointRaftBeforeSave = "raftBeforeSave"
	// FailpointBeforeApplyOneEntryNormal runs before the member applies
	// each normal entry: sleeping there is a stuck apply.
	FailpointBeforeApplyOneEntryNormal = "beforeApplyOneEntryNormal"
	// FailpointBeforeSendWatchResponse runs before each watch response
	// goes out: sleeping there is a lagging watch.
	FailpointBeforeSendWatchResponse = "beforeSendWatchResponse"
)

// SetFailpoint sets the member's failpoint name to term in gofail's term
// language, for example "sleep(5000)" (each evaluation sleeps 5 s),
// "return" or "1*sleep(2000)" (once). The cluster must run with
// Options.Failpoints. A failpoint set lasts until ClearFailpoint or the
// member's process ends (Restart starts with none).
func (m *Member) SetFailpoint(ctx context.Context, name, term string) error {
	return m.failpoint(ctx, http.MethodPut, name, term)
}

// ClearFailpoint clears the member's failpoint name; clearing one that is
// not set is no error. An evaluation under way (a sleep) runs to its end.
func (m *Member) ClearFailpoint(ctx context.Context, name string) error {
	return m.failpoint(ctx, http.MethodDelete, name, "")
}

// errFailpointsOff: the cluster was started without Options.Failpoints.
var errFailpointsOff = errors.New("etcdtest: the cluster runs without Options.Failpoints")

func (m *Member) failpoint(ctx context.Context, method, name, term string) error {
	if m.failpointAddr == "" {
		return errFailpointsOff
	}
	if name == "" || strings.ContainsAny(name, "/?#") {
		return fmt.Errorf("etcdtest: bad failpoint name %q", name)
	}
	u := "http://" + m.failpointAddr + "/" + url.PathEscape(name)
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(term))
	if err != nil {
		return err
	}
	resp, err := failpointClient.Do(req)
	if err != nil {
		return fmt.Errorf("etcdtest: %s failpoint %s of %s: %w", method, name, m.name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusNoContent {
		what := "set to " + term
		if method == http.MethodDelete {
			what = "cleared"
		}
		m.c.log.Info("etcdtest: failpoint "+what, "member", m.name, "failpoint", name)
		return nil
	}
	// gofail answers 400 to clearing a failpoint that is not set.
	if method == http.MethodDelete && strings.Contains(string(body), "failpoint is disabled") {
		return nil
	}
	return fmt.Errorf("etcdtest: %s failpoint %s of %s: %s: %s", method, name, m.name, resp.Status, strings.TrimSpace(string(body)))
}

// failpointClient talks to gofail's HTTP endpoint, on loopback only.
var failpointClient = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
