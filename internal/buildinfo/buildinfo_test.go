package buildinfo

import (
	"runtime/debug"
	"testing"
)

func settings(kv ...string) []debug.BuildSetting {
	var out []debug.BuildSetting
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

func TestComplete(t *testing.T) {
	const rev = "0123456789abcdef0123456789abcdef01234567"
	checkout := &debug.BuildInfo{
		Main:     debug.Module{Version: "v0.0.0-20261202032400-0123456789ab+dirty"},
		Settings: settings("vcs", "git", "vcs.revision", rev, "vcs.time", "2026-12-02T03:24:00Z", "vcs.modified", "false"),
	}
	modified := &debug.BuildInfo{Main: checkout.Main, Settings: settings("vcs.revision", rev, "vcs.time", "2026-12-02T04:24:00+01:00", "vcs.modified", "true")}
	cases := []struct {
		name string
		in   Info
		bi   *debug.BuildInfo
		want Info
	}{
		{"make build: -X wins", Info{"1.2.3", "abc", "main", "me@host", "20261201-10:00:00"}, checkout,
			Info{"1.2.3", "abc", "main", "me@host", "20261201-10:00:00"}},
		{"go build in a checkout", Info{}, checkout,
			Info{"0.1.0", rev, Unknown, Unknown, "20261202-03:24:00"}},
		{"go build with changes", Info{}, modified,
			Info{"0.1.0", rev + "-modified", Unknown, Unknown, "20261202-03:24:00"}},
		{"go install pkg@tag", Info{}, &debug.BuildInfo{Main: debug.Module{Version: "v0.1.0"}},
			Info{"0.1.0", "v0.1.0", Unknown, Unknown, Unknown}},
		{"go install pkg@commit", Info{}, &debug.BuildInfo{Main: debug.Module{Version: "v0.1.1-0.20261202032400-0123456789ab"}},
			Info{"0.1.0", "0123456789ab", Unknown, Unknown, Unknown}},
		{"go build outside a checkout (a git worktree too)", Info{}, &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			Info{"0.1.0", Unknown, Unknown, Unknown, Unknown}},
		{"no build info", Info{}, nil,
			Info{"0.1.0", Unknown, Unknown, Unknown, Unknown}},
		{"make build without git", Info{Version: "0.1.0", BuildUser: "me@host", BuildDate: "20261201-10:00:00"}, checkout,
			Info{"0.1.0", rev, Unknown, "me@host", "20261201-10:00:00"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Complete(c.in, c.bi, "0.1.0"); got != c.want {
				t.Errorf("Complete = %+v\nwant       %+v", got, c.want)
			}
		})
	}
}
