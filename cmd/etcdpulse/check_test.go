package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/etcdpulse/etcdpulse/agent"
	"github.com/etcdpulse/etcdpulse/internal/etcdtest"
	"github.com/etcdpulse/etcdpulse/internal/testenv"
)

// The check command against a real cluster: the report in both formats,
// the exit codes, and the maintenance gate's answer.
func TestCheckCommand(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Size: 3, Mode: etcdtest.InProcess})
	ctx := t.Context()
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := c.Member(0)
	args := []string{"check", "--etcd.endpoints=" + m.ClientURL(), "--etcd.data-dir=" + m.DataDir(), "--disk.duration=0s"}

	code, out, errOut := runCmd(append(args, "--output=json")...)
	var r agent.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("check --output=json: %v\n%s\n%s", err, out, errOut)
	}
	if code != 0 || r.Level > agent.Info || len(r.Findings) < 10 {
		t.Errorf("healthy cluster: exit code %d, level %s, %d lines, want 0, PASS and a line per check\n%s", code, r.Level, len(r.Findings), out)
	}

	code, out, _ = runCmd(args...)
	for _, want := range []string{"PASS leader " + leader.Name(), "PASS fault tolerance 1: 3 of 3 voters healthy, quorum 2", "PASS m1 healthy", " failed, 0 warnings, "} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}

	code, out, _ = runCmd(append(args, "--maintenance="+leader.Name())...)
	if code != 2 || !strings.Contains(out, "maintenance: no: "+leader.Name()+" cannot be taken down now") || !strings.Contains(out, "move-leader ") {
		t.Errorf("maintenance of the leader: exit code %d, want 2 and the move-leader command:\n%s", code, out)
	}
}

func TestCheckCommandErrors(t *testing.T) {
	addr := testenv.RefusedAddr(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		says string
	}{
		{"unreachable", []string{"--etcd.endpoints=http://" + addr, "--no-disk.enabled", "--disk.duration=0s", "--timeout=20s"}, 2, "FAIL no member answered"},
		{"bad output", []string{"--output=yaml"}, 3, `--output must be text or json, got "yaml"`},
		{"bad flag", []string{"--no-such-flag"}, 3, "no-such-flag"},
		{"disk past the deadline", []string{"--disk.duration=40s", "--timeout=30s"}, 3, "--disk.duration (40s) must be shorter than --timeout (30s)"},
		{"bad configuration", []string{"--etcd.endpoints=http://" + addr, "--disk.syncs=0"}, 3, "disk.syncs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(append([]string{"check"}, tc.args...)...)
			if code != tc.code || !strings.Contains(out+errOut, tc.says) {
				t.Errorf("exit code %d, want %d with %q:\n%s%s", code, tc.code, tc.says, out, errOut)
			}
		})
	}
}
