// Package buildinfo completes the build information that
// github.com/prometheus/common/version reports (the version command, the
// start log line, etcdpulse_build_info, the landing page) when the build
// did not stamp it with -ldflags -X, as `make build` does: for a plain
// `go build` or `go install` it takes what Go's own build info recorded.
//
// It is internal to etcdpulse: not public API.
package buildinfo

import (
	"regexp"
	"runtime/debug"
	"time"

	"github.com/prometheus/common/version"

	"github.com/etcdpulse/etcdpulse"
)

// Info is the build information that the version package holds.
type Info struct {
	Version   string
	Revision  string
	Branch    string
	BuildUser string
	BuildDate string
}

// Unknown is what a field says when neither the build nor Go recorded it.
const Unknown = "unknown"

// DateFormat is the build date's layout, as Prometheus' promu stamps it.
const DateFormat = "20060102-15:04:05"

// pseudoVersion matches a Go module pseudo-version, such as
// v0.0.0-20261202032400-0123456789ab, and captures its commit.
var pseudoVersion = regexp.MustCompile(`^v\d+\.\d+\.\d+-(?:[0-9A-Za-z.-]*\.)?\d{14}-([0-9a-f]{12})(?:\+[0-9A-Za-z.]+)?$`)

// Complete returns in with each empty field filled: the version from the
// VERSION file (fileVersion), the revision and date from the VCS settings
// Go records when it builds inside a checkout (vcs.revision with
// "-modified" when vcs.modified, vcs.time: the commit's time, the nearest
// to a build date there is), else the revision from the module version
// `go install pkg@version` records (the tag, or a pseudo-version's commit);
// whatever is still empty says Unknown. bi may be nil.
func Complete(in Info, bi *debug.BuildInfo, fileVersion string) Info {
	out := in
	if out.Version == "" {
		out.Version = fileVersion
	}
	settings := map[string]string{}
	if bi != nil {
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
	}
	if out.Revision == "" {
		if rev := settings["vcs.revision"]; rev != "" {
			out.Revision = rev
			if settings["vcs.modified"] == "true" {
				out.Revision += "-modified"
			}
		} else if bi != nil {
			out.Revision = moduleRevision(bi.Main.Version)
		}
	}
	if out.BuildDate == "" {
		if t, err := time.Parse(time.RFC3339, settings["vcs.time"]); err == nil {
			out.BuildDate = t.UTC().Format(DateFormat)
		}
	}
	for _, f := range []*string{&out.Revision, &out.Branch, &out.BuildUser, &out.BuildDate} {
		if *f == "" {
			*f = Unknown
		}
	}
	return out
}

// moduleRevision is the revision a module version names: a pseudo-version's
// commit, or the version itself (a tag). "(devel)" and "" name none.
func moduleRevision(v string) string {
	if v == "" || v == "(devel)" {
		return ""
	}
	if m := pseudoVersion.FindStringSubmatch(v); m != nil {
		return m[1]
	}
	return v
}

// Stamp completes the version package's variables; what -ldflags -X set
// stays. Call it once, before anything reads them.
func Stamp() {
	bi, _ := debug.ReadBuildInfo()
	out := Complete(Info{
		Version:   version.Version,
		Revision:  version.Revision,
		Branch:    version.Branch,
		BuildUser: version.BuildUser,
		BuildDate: version.BuildDate,
	}, bi, etcdpulse.Version())
	version.Version = out.Version
	version.Revision = out.Revision
	version.Branch = out.Branch
	version.BuildUser = out.BuildUser
	version.BuildDate = out.BuildDate
}
