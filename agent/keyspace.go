package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/etcdpulse/etcdpulse/collectors"
	"github.com/etcdpulse/etcdpulse/probes"
)

// keyspace counts the keys of each Kubernetes resource in the local
// member's store, under kube-apiserver's --etcd-prefix, and for the
// largest resources per namespace (probes.KeyspaceProbe): which resource
// fills the database (events, leases, a runaway custom resource). It
// reads no value, sends only serializable requests to the local member,
// about two per resource, within a budget per run and a pause between
// requests; it runs rarely and is skipped while the local member is
// unhealthy or slow. docs/benchmarks.md has its cost on 1M keys.
var keyspace = capability{
	name:  "keyspace",
	title: "Kubernetes key space",
	settings: []Setting{
		setting("keyspace.enabled", "Count the keys of each Kubernetes resource under keyspace.prefix (count-only and one-key keys-only requests to the local member; no value is read).", func(c *Config) any { return &c.Keyspace.Enabled }),
		setting("keyspace.interval", "Time between two runs of the key space walk.", func(c *Config) any { return &c.Keyspace.Interval }),
		setting("keyspace.prefix", "kube-apiserver's --etcd-prefix: the resources' keys are <prefix>/<resource>/... and <prefix>/<group>/<resource>/....", func(c *Config) any { return &c.Keyspace.Prefix }),
		setting("keyspace.top_resources", "Resources exported by name, the largest first; the others are summed under resource=\"other\".", func(c *Config) any { return &c.Keyspace.TopResources }),
		setting("keyspace.namespace_resources", "How many of the largest namespaced resources are also counted per namespace; 0: none.", func(c *Config) any { return &c.Keyspace.NamespaceResources }),
		setting("keyspace.top_namespaces", "Namespaces exported by name for each of those resources; the others are summed under namespace=\"_other\".", func(c *Config) any { return &c.Keyspace.TopNamespaces }),
		setting("keyspace.max_requests", "Most requests one run sends; a walk that needs more resumes at the next run where this one stopped.", func(c *Config) any { return &c.Keyspace.MaxRequests }),
		setting("keyspace.pause", "Time between two requests of a run.", func(c *Config) any { return &c.Keyspace.Pause }),
	},
	metrics:  collectors.KeyspaceMetrics,
	defaults: func(c *Config) { c.Keyspace = defaultKeyspaceConfig() },
	validate: func(c *Config, bad badFunc) { c.Keyspace.validate(bad) },
	wire:     wireKeyspace,
}

// KeyspaceConfig configures the key space capability.
type KeyspaceConfig struct {
	// Enabled turns the capability on.
	Enabled bool `yaml:"enabled"`
	// Interval is the time between two runs.
	Interval Duration `yaml:"interval"`
	// Prefix is kube-apiserver's --etcd-prefix.
	Prefix string `yaml:"prefix"`
	// TopResources is how many resources are exported by name.
	TopResources int `yaml:"top_resources"`
	// NamespaceResources is how many of the largest namespaced resources
	// are counted per namespace.
	NamespaceResources int `yaml:"namespace_resources"`
	// TopNamespaces is how many namespaces of each are exported by name.
	TopNamespaces int `yaml:"top_namespaces"`
	// MaxRequests bounds the requests of one run.
	MaxRequests int `yaml:"max_requests"`
	// Pause is the time between two requests.
	Pause Duration `yaml:"pause"`
}

// Key space defaults: a walk every 10 minutes (a resource that fills a
// quota in hours shows in time), 20 resources and 10 namespaces of the 3
// largest (about 60 series), and at most 2,000 requests 10 ms apart per
// run (20 s of pauses; a cluster of 100 resources and 500 namespaces needs
// about 600).
const (
	DefaultKeyspaceInterval           = 10 * time.Minute
	DefaultKeyspacePrefix             = "/registry"
	DefaultKeyspaceTopResources       = 20
	DefaultKeyspaceNamespaceResources = 3
	DefaultKeyspaceTopNamespaces      = 10
	DefaultKeyspaceMaxRequests        = 2000
	DefaultKeyspacePause              = 10 * time.Millisecond
)

// Bounds of the key space settings: the label sets stay small, and a run
// fits its interval.
const (
	maxKeyspaceTop         = 100
	maxKeyspaceNsResources = 10
	minKeyspaceMaxRequests = 10
	// keyspaceSlowThreshold: a local member slower than this to answer
	// its status, a serializable read or a one-key request of the walk
	// postpones the walk, as it does the hash check.
	keyspaceSlowThreshold  = 500 * time.Millisecond
	keyspaceRequestTimeout = 10 * time.Second
)

func defaultKeyspaceConfig() KeyspaceConfig {
	return KeyspaceConfig{
		Enabled:            true,
		Interval:           Duration(DefaultKeyspaceInterval),
		Prefix:             DefaultKeyspacePrefix,
		TopResources:       DefaultKeyspaceTopResources,
		NamespaceResources: DefaultKeyspaceNamespaceResources,
		TopNamespaces:      DefaultKeyspaceTopNamespaces,
		MaxRequests:        DefaultKeyspaceMaxRequests,
		Pause:              Duration(DefaultKeyspacePause),
	}
}

// validate reports problems through bad.
func (c KeyspaceConfig) validate(bad badFunc) {
	if !c.Enabled {
		return
	}
	if c.Interval <= 0 {
		bad("keyspace.interval", "must be positive, got %s", c.Interval)
	}
	if !strings.HasPrefix(c.Prefix, "/") {
		bad("keyspace.prefix", "must begin with \"/\" (kube-apiserver's --etcd-prefix, /registry by default), got %q", c.Prefix)
	}
	if c.TopResources < 1 || c.TopResources > maxKeyspaceTop {
		bad("keyspace.top_resources", "must be between 1 and %d, got %d", maxKeyspaceTop, c.TopResources)
	}
	if c.NamespaceResources < 0 || c.NamespaceResources > maxKeyspaceNsResources {
		bad("keyspace.namespace_resources", "must be between 0 and %d, got %d", maxKeyspaceNsResources, c.NamespaceResources)
	}
	if c.TopNamespaces < 1 || c.TopNamespaces > maxKeyspaceTop {
		bad("keyspace.top_namespaces", "must be between 1 and %d, got %d", maxKeyspaceTop, c.TopNamespaces)
	}
	if c.MaxRequests < minKeyspaceMaxRequests {
		bad("keyspace.max_requests", "must be at least %d, got %d", minKeyspaceMaxRequests, c.MaxRequests)
	}
	switch {
	case c.Pause < 0:
		bad("keyspace.pause", "must not be negative, got %s", c.Pause)
	case c.Interval > 0 && c.MaxRequests > 0 && time.Duration(c.Pause)*time.Duration(c.MaxRequests) >= time.Duration(c.Interval):
		bad("keyspace.pause", "times keyspace.max_requests (%s) must be shorter than keyspace.interval (%s), got %s", time.Duration(c.Pause)*time.Duration(c.MaxRequests), c.Interval, c.Pause)
	}
}

func wireKeyspace(w *wiring) error {
	c := w.cfg.Keyspace
	if !c.Enabled {
		return nil
	}
	interval := time.Duration(c.Interval)
	runs := collectors.NewKeyspaceRuns()
	p := &probes.KeyspaceProbe{
		Prefix:             c.Prefix,
		NamespaceResources: c.NamespaceResources,
		TopNamespaces:      c.TopNamespaces,
		MaxRequests:        c.MaxRequests,
		Pause:              time.Duration(c.Pause),
		SlowThreshold:      keyspaceSlowThreshold,
		// A run stops short of its deadline (the interval) by this.
		RequestTimeout: min(keyspaceRequestTimeout, interval/10),
		Fresh:          interval / 2,
		View:           func() probes.View { return w.view.View() },
		Runs:           runs,
		Logger:         w.logger.With("probe", probes.ProbeKeyspace),
	}
	w.collect(runs, collectors.NewKeyspaceCollector(p, c.TopResources))
	// A run ends by itself before its deadline (it stops short of it and
	// resumes at the next run).
	w.probe(p, probes.LocalMember, interval, interval)
	w.check(func(_ context.Context, in checkInput) []Finding {
		return checkKeyspace(in.view, p.Last(), p.LastResult(), c.Prefix)
	})
	return nil
}

// checkKeyspaceTop is how many resources the check line names.
const checkKeyspaceTop = 5

// checkKeyspace gives the key space line: the largest resources of the
// last complete walk, or why there was none.
func checkKeyspace(v probes.View, last probes.KeyspaceWalk, result, prefix string) []Finding {
	if !v.MembershipKnown {
		return nil // the cluster's own line fails
	}
	f := Finding{Check: "keyspace"}
	if !last.Completed.IsZero() {
		f.Value = fmt.Sprint(last.Keys)
		if last.Keys == 0 {
			f.Summary = fmt.Sprintf("no key under %s: not a Kubernetes store, or keyspace.prefix is not kube-apiserver's --etcd-prefix", prefix)
			return []Finding{f}
		}
		var names []string
		for i, r := range last.Resources {
			if i == checkKeyspaceTop {
				break
			}
			names = append(names, fmt.Sprintf("%s %d (%.0f%%)", r.Resource, r.Keys, 100*float64(r.Keys)/float64(last.Keys)))
		}
		f.Summary = fmt.Sprintf("%d keys under %s in %d resources (%d requests); the largest: %s", last.Keys, prefix, len(last.Resources), last.Requests, strings.Join(names, ", "))
		return []Finding{f}
	}
	f.Level = Warn
	switch result {
	case probes.KeyspaceSkippedUnhealthy:
		f.Summary = "key space not counted: the local member is not healthy"
	case probes.KeyspaceSkippedSlow:
		f.Summary = "key space not counted: the local member is slow to answer (a defragmentation, or load)"
	case probes.KeyspacePartial:
		f.Summary = "key space walk not finished: it needs more than keyspace.max_requests requests and resumes at the next run"
		f.Hint = "raise keyspace.max_requests for a single-run walk"
	default:
		f.Summary = "key space not counted"
		for _, m := range v.Members {
			if o := m.Outcomes[probes.ProbeKeyspace]; m.Local && !o.At.IsZero() && o.Err != "" {
				f.Summary += ": " + o.Err
			}
		}
	}
	return []Finding{f}
}
