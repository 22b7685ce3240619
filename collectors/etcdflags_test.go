package collectors

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

func TestParseEtcdFlags(t *testing.T) {
	defaults := EtcdFlags{Heartbeat: EtcdDefaultHeartbeat, Election: EtcdDefaultElection}
	with := func(f func(*EtcdFlags)) EtcdFlags { e := defaults; f(&e); return e }
	files := map[string]string{
		"/etc/etcd/etcd.yaml":  "name: m0\nheartbeat-interval: 250\nelection-timeout: 2500\nexperimental-initial-corrupt-check: true\nexperimental-corrupt-check-time: 60000000000\n",
		"/etc/etcd/gates.yaml": "feature-gates: InitialCorruptCheck=true,CompactHashCheck=true\ncorrupt-check-time: 5m\n",
		"/etc/etcd/bad.yaml":   "heartbeat-interval: [1, 2]\n",
	}
	readFile := func(path string) ([]byte, error) {
		if s, ok := files[path]; ok {
			return []byte(s), nil
		}
		return nil, fs.ErrNotExist
	}
	for _, tc := range []struct {
		name    string
		args    []string
		env     []string
		want    EtcdFlags
		wantErr string
	}{
		{name: "nothing set: etcd's defaults", args: []string{"etcd", "--name=m0", "--data-dir", "/var/lib/etcd"}, want: defaults},
		{name: "flags with =", args: []string{"etcd", "--heartbeat-interval=250", "--election-timeout=2500"},
			want: with(func(f *EtcdFlags) { f.Heartbeat, f.Election = 250*time.Millisecond, 2500*time.Millisecond })},
		{name: "flags with a separate value, one dash", args: []string{"etcd", "-heartbeat-interval", "50", "--election-timeout", "600"},
			want: with(func(f *EtcdFlags) { f.Heartbeat, f.Election = 50*time.Millisecond, 600*time.Millisecond })},
		{name: "etcd 3.5 corruption flags", args: []string{"etcd", "--experimental-initial-corrupt-check", "--experimental-compact-hash-check-enabled=true", "--experimental-corrupt-check-time=1m", "--snapshot-count", "10000"},
			want: with(func(f *EtcdFlags) {
				f.InitialCorruptCheck, f.CompactHashCheck, f.CorruptCheckTime = true, true, time.Minute
			})},
		{name: "a bool flag does not take the next argument", args: []string{"etcd", "--experimental-initial-corrupt-check", "--heartbeat-interval=200"},
			want: with(func(f *EtcdFlags) { f.InitialCorruptCheck, f.Heartbeat = true, 200*time.Millisecond })},
		{name: "etcd 3.6 feature gates", args: []string{"etcd", "--feature-gates=InitialCorruptCheck=true,CompactHashCheck=true,StopGRPCServiceOnDefrag=false", "--corrupt-check-time=10m"},
			want: with(func(f *EtcdFlags) {
				f.InitialCorruptCheck, f.CompactHashCheck, f.CorruptCheckTime = true, true, 10*time.Minute
			})},
		{name: "a gate set false wins over the old flag", args: []string{"etcd", "--experimental-initial-corrupt-check", "--feature-gates=InitialCorruptCheck=false"}, want: defaults},
		{name: "environment", args: []string{"etcd"}, env: []string{"PATH=/bin", "ETCD_HEARTBEAT_INTERVAL=300", "ETCD_ELECTION_TIMEOUT=3000", "ETCD_FEATURE_GATES=CompactHashCheck=true"},
			want: with(func(f *EtcdFlags) {
				f.Heartbeat, f.Election, f.CompactHashCheck = 300*time.Millisecond, 3*time.Second, true
			})},
		{name: "the command line wins over the environment", args: []string{"etcd", "--heartbeat-interval=150"}, env: []string{"ETCD_HEARTBEAT_INTERVAL=300"},
			want: with(func(f *EtcdFlags) { f.Heartbeat = 150 * time.Millisecond })},
		{name: "a config file replaces flags and environment", args: []string{"etcd", "--config-file=/etc/etcd/etcd.yaml", "--heartbeat-interval=10"}, env: []string{"ETCD_ELECTION_TIMEOUT=100"},
			want: EtcdFlags{Heartbeat: 250 * time.Millisecond, Election: 2500 * time.Millisecond, InitialCorruptCheck: true, CorruptCheckTime: time.Minute}},
		{name: "a config file from the environment, with gates", args: []string{"etcd"}, env: []string{"ETCD_CONFIG_FILE=/etc/etcd/gates.yaml"},
			want: with(func(f *EtcdFlags) {
				f.InitialCorruptCheck, f.CompactHashCheck, f.CorruptCheckTime = true, true, 5*time.Minute
			})},
		{name: "a config file that cannot be read", args: []string{"etcd", "--config-file", "/nowhere.yaml"}, wantErr: "etcd's --config-file: file does not exist"},
		{name: "a bad config file", args: []string{"etcd", "--config-file=/etc/etcd/bad.yaml"}, wantErr: `etcd's --heartbeat-interval "[1 2]": strconv.ParseUint: parsing "[1 2]": invalid syntax`},
		{name: "a bad value", args: []string{"etcd", "--heartbeat-interval=fast"}, wantErr: `etcd's --heartbeat-interval "fast": strconv.ParseUint: parsing "fast": invalid syntax`},
		{name: "a bad gate", args: []string{"etcd", "--feature-gates=CompactHashCheck"}, wantErr: `etcd's --feature-gates: "CompactHashCheck" is not Gate=true|false`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseEtcdFlags(tc.args, tc.env, readFile)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// The flags of a real process, read from /proc: a child given etcd's
// flags on its command line and in its environment.
func TestReadEtcdProcessFlags(t *testing.T) {
	if _, err := os.Stat("/proc/self/cmdline"); err != nil {
		t.Skip("no /proc")
	}
	// sh waits for its sleep, with the flag on its command line.
	cmd := exec.Command("sh", "-c", "sleep 30", "etcd", "--heartbeat-interval=200")
	cmd.Env = append(os.Environ(), "ETCD_ELECTION_TIMEOUT=2000", "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK=true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	want := EtcdFlags{Heartbeat: 200 * time.Millisecond, Election: 2 * time.Second, InitialCorruptCheck: true}
	// Until the child has exec'd, /proc shows the test binary's command
	// line and environment, not sleep's.
	testenv.Eventually(t, 30*time.Second, "the child's flags", func() error {
		got, err := ReadEtcdProcessFlags(cmd.Process.Pid)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("got %+v, want %+v", got, want)
		}
		return nil
	})
	if _, err := ReadEtcdProcessFlags(1 << 30); err == nil || !strings.Contains(err.Error(), "command line") {
		t.Errorf("no such process: err = %v", err)
	}
}
