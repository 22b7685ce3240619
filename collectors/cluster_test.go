package collectors

import (
	"bytes"
	"flag"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"

	"github.com/etcdpulse/etcdpulse/internal/golden"
	"github.com/etcdpulse/etcdpulse/probes"
)

var update = flag.Bool("update", false, "rewrite golden files")

// fixedView is a view that probes named every ran against every member.
type fixedView struct {
	v     probes.View
	every []string
}

func (f fixedView) View() probes.View { return f.v }

func (f fixedView) Ready() bool { return !f.v.At.IsZero() }

func (f fixedView) EveryMemberProbes() []string { return f.every }

// goldenView is a 3-member cluster with one member down and an alarm.
func goldenView() probes.View {
	ok := probes.Outcome{OK: true, At: time.Unix(1700000000, 0)}
	failed := probes.Outcome{Err: "timeout", At: time.Unix(1700000000, 0)}
	st := func(id uint64, index uint64) *probes.Status {
		return &probes.Status{MemberID: id, Leader: 0xa, Term: 7, RaftIndex: index, AppliedIndex: index - 1,
			DBSize: 1 << 20, DBSizeInUse: 1 << 19, DBQuota: 2 << 30, Version: "3.7.3",
			Alarms: []probes.Alarm{{MemberID: 0xb, Type: "NOSPACE"}}}
	}
	members := []probes.Member{
		{ID: 0xa, Name: "etcd-a", ClientURLs: []string{"https://10.0.0.1:2379"}},
		{ID: 0xb, Name: "etcd-b", ClientURLs: []string{"https://10.0.0.2:2379"}},
		{ID: 0xc, Name: "etcd-c", ClientURLs: []string{"https://10.0.0.3:2379"}},
		{ID: 0xd, IsLearner: true},
	}
	results := []probes.TargetResults{
		{Member: members[0], Endpoint: "https://10.0.0.1:2379", Local: true, Status: st(0xa, 100),
			Outcomes: map[string]probes.Outcome{"status": ok, "read_linearizable": ok, "read_serializable": ok, "member_list": ok}},
		{Member: members[1], Endpoint: "https://10.0.0.2:2379", Status: st(0xb, 90),
			Outcomes: map[string]probes.Outcome{"status": ok, "read_linearizable": ok, "read_serializable": ok}},
		{Member: members[2], Endpoint: "https://10.0.0.3:2379",
			Outcomes: map[string]probes.Outcome{"status": failed, "read_linearizable": failed, "read_serializable": failed}},
		{Member: members[3]},
	}
	return probes.Evaluate(probes.View{Leader: 0xa, Term: 6, LeaderChanges: 2}, time.Unix(1700000000, 0), true, members, results)
}

func gather(t *testing.T, c prometheus.Collector) []byte {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestClusterCollectorGolden(t *testing.T) {
	names := []string{"status", "read_linearizable", "read_serializable"}
	got := gather(t, NewClusterCollector(fixedView{goldenView(), names}))
	const path = "testdata/cluster.golden"
	if !golden.Matches(t, path, got, *update) {
		t.Errorf("/metrics differs from %s (run go test ./collectors -update to accept):\n%s", path, got)
	}
	problems, err := promlint.New(bytes.NewReader(got)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func TestNoSeriesBeforeFirstRound(t *testing.T) {
	if got := gather(t, NewClusterCollector(fixedView{})); len(got) != 0 {
		t.Errorf("before the first round the collector exported:\n%s", got)
	}
}
