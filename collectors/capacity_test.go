package collectors

import (
	"bytes"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/etcdpulse/etcdpulse/probes"
)

// capacityView is a cluster whose members report their quota in every way
// etcd does: m1 local, m2 and m3 remote, m4 down.
func capacityView(statuses map[string]*probes.Status) probes.View {
	ok := probes.Outcome{OK: true, At: time.Unix(1700000000, 0)}
	var members []probes.Member
	var results []probes.TargetResults
	for i, name := range []string{"m1", "m2", "m3", "m4"} {
		m := probes.Member{ID: uint64(i + 1), Name: name, ClientURLs: []string{"http://10.0.0." + name[1:] + ":2379"}}
		members = append(members, m)
		r := probes.TargetResults{Member: m, Endpoint: m.ClientURLs[0], Local: i == 0, Outcomes: map[string]probes.Outcome{}}
		if st := statuses[name]; st != nil {
			st.MemberID = m.ID
			r.Status, r.Outcomes["status"] = st, ok
		}
		results = append(results, r)
	}
	return probes.Evaluate(probes.View{}, time.Unix(1700000000, 0), true, members, results)
}

// The quota is each member's own where its status says it (3.6 and
// later), else the local member's metrics URL, else the configured one,
// else etcd's default, labelled as such.
func TestCapacityQuotaSources(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name       string
		statuses   map[string]*probes.Status
		localQuota int64 // 0: the metrics URL not read
		configured int64
		want       string
	}{
		{
			name: "status on 3.6 and later, whatever else is set",
			statuses: map[string]*probes.Status{
				"m1": {Version: "3.7.3", DBSize: 4 * mib, DBSizeInUse: 3 * mib, DBQuota: 8 * mib},
				"m2": {Version: "3.6.0", DBSize: 2 * mib, DBSizeInUse: 2 * mib}, // 3.6.0 reports the flag's 0: the default
				"m3": {Version: "3.7.3", DBSize: 1 * mib, DBSizeInUse: 1 * mib, DBQuota: -1},
			},
			localQuota: 16 * mib, configured: 32 * mib,
			want: `
etcdpulse_member_db_fragmented_ratio{member="m1"} 0.25
etcdpulse_member_db_fragmented_ratio{member="m2"} 0
etcdpulse_member_db_fragmented_ratio{member="m3"} 0
etcdpulse_member_db_quota_bytes{member="m1"} 8.388608e+06
etcdpulse_member_db_quota_bytes{member="m2"} 2.147483648e+09
etcdpulse_member_db_quota_source{member="m1",source="status"} 1
etcdpulse_member_db_quota_source{member="m2",source="status"} 1
etcdpulse_member_db_quota_source{member="m3",source="status"} 1
etcdpulse_member_db_quota_used_ratio{member="m1"} 0.5
etcdpulse_member_db_quota_used_ratio{member="m2"} 0.0009765625
`,
		},
		{
			name: "3.5: the metrics URL for the local member, the configuration for the others",
			statuses: map[string]*probes.Status{
				"m1": {Version: "3.5.21", DBSize: 4 * mib, DBSizeInUse: 4 * mib},
				"m2": {Version: "3.5.21", DBSize: 4 * mib, DBSizeInUse: 1 * mib},
				"m3": {Version: "3.4.23", DBSize: 8 * mib, DBSizeInUse: 8 * mib},
			},
			localQuota: 16 * mib, configured: 32 * mib,
			want: `
etcdpulse_member_db_fragmented_ratio{member="m1"} 0
etcdpulse_member_db_fragmented_ratio{member="m2"} 0.75
etcdpulse_member_db_fragmented_ratio{member="m3"} 0
etcdpulse_member_db_quota_bytes{member="m1"} 1.6777216e+07
etcdpulse_member_db_quota_bytes{member="m2"} 3.3554432e+07
etcdpulse_member_db_quota_bytes{member="m3"} 3.3554432e+07
etcdpulse_member_db_quota_source{member="m1",source="metrics_url"} 1
etcdpulse_member_db_quota_source{member="m2",source="config"} 1
etcdpulse_member_db_quota_source{member="m3",source="config"} 1
etcdpulse_member_db_quota_used_ratio{member="m1"} 0.25
etcdpulse_member_db_quota_used_ratio{member="m2"} 0.125
etcdpulse_member_db_quota_used_ratio{member="m3"} 0.25
`,
		},
		{
			name: "3.4 with nothing set: etcd's default, assumed",
			statuses: map[string]*probes.Status{
				"m1": {Version: "3.4.23", DBSize: 1 << 30, DBSizeInUse: 1 << 29},
				"m2": {Version: "3.4.23", DBSize: 20480}, // before 3.4: no size in use
			},
			want: `
etcdpulse_member_db_fragmented_ratio{member="m1"} 0.5
etcdpulse_member_db_quota_bytes{member="m1"} 2.147483648e+09
etcdpulse_member_db_quota_bytes{member="m2"} 2.147483648e+09
etcdpulse_member_db_quota_source{member="m1",source="default"} 1
etcdpulse_member_db_quota_source{member="m2",source="default"} 1
etcdpulse_member_db_quota_used_ratio{member="m1"} 0.5
etcdpulse_member_db_quota_used_ratio{member="m2"} 9.5367431640625e-06
`,
		},
		{
			name: "a local member with its quota off, read from its metrics URL",
			statuses: map[string]*probes.Status{
				"m1": {Version: "3.5.21", DBSize: 4 * mib, DBSizeInUse: 4 * mib},
			},
			localQuota: -1, configured: 32 * mib,
			want: `
etcdpulse_member_db_fragmented_ratio{member="m1"} 0
etcdpulse_member_db_quota_source{member="m1",source="metrics_url"} 1
`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCapacityCollector(CapacityOptions{
				View:       fixedView{v: capacityView(tc.statuses)},
				LocalQuota: func() (int64, bool) { return tc.localQuota, tc.localQuota != 0 },
				Quota:      tc.configured,
			})
			compareMetrics(t, c, CapacityMetrics, tc.want, MemberDBFragmentedRatio.Name, MemberDBQuota.Name, MemberDBQuotaSource.Name, MemberDBQuotaUsedRatio.Name)
			problems, err := promlint.New(bytes.NewReader(gather(t, c))).Lint()
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				t.Errorf("promlint: %s: %s", p.Metric, p.Text)
			}
		})
	}
}

// Sizes are those the member reported; nothing before the first round, and
// nothing for a member that does not answer (m4 in every case above).
func TestCapacitySizes(t *testing.T) {
	if got := gather(t, NewCapacityCollector(CapacityOptions{View: fixedView{}})); len(got) != 0 {
		t.Errorf("before the first round the collector exported:\n%s", got)
	}
	c := NewCapacityCollector(CapacityOptions{View: fixedView{v: capacityView(map[string]*probes.Status{
		"m2": {Version: "3.7.3", DBSize: 3 << 20, DBSizeInUse: 1 << 20, DBQuota: 4 << 20},
	})}})
	compareMetrics(t, c, CapacityMetrics, `
etcdpulse_member_db_size_bytes{member="m2"} 3.145728e+06
etcdpulse_member_db_size_in_use_bytes{member="m2"} 1.048576e+06
etcdpulse_member_db_fragmented_ratio{member="m2"} 0.6666666666666666
etcdpulse_member_db_quota_bytes{member="m2"} 4.194304e+06
etcdpulse_member_db_quota_used_ratio{member="m2"} 0.75
etcdpulse_member_db_quota_source{member="m2",source="status"} 1
`)
}

func TestStatusHasQuota(t *testing.T) {
	for v, want := range map[string]bool{
		"3.7.3": true, "3.6.0": true, "3.6.0-alpha.0": true, "4.0.0": true,
		"3.5.21": false, "3.4.23": false, "": false, "3": false, "x.y": false,
	} {
		if got := statusHasQuota(v); got != want {
			t.Errorf("statusHasQuota(%q) = %v, want %v", v, got, want)
		}
	}
}
