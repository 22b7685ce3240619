package collectors

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// EtcdFlags are the settings of the local etcd member that the drift
// checks compare: its raft timing and its corruption checks, as etcd reads
// them from its command line, its ETCD_* environment or its
// --config-file.
type EtcdFlags struct {
	// Heartbeat and Election are --heartbeat-interval and
	// --election-timeout; etcd's defaults (100 ms, 1 s) when not set.
	Heartbeat, Election time.Duration
	// InitialCorruptCheck: the member compares its hash with its peers'
	// before serving (--experimental-initial-corrupt-check up to 3.5, the
	// InitialCorruptCheck feature gate from 3.6).
	InitialCorruptCheck bool
	// CorruptCheckTime is the period of the leader's full hash check of
	// every member (--experimental-corrupt-check-time up to 3.5,
	// --corrupt-check-time from 3.6); 0: off.
	CorruptCheckTime time.Duration
	// CompactHashCheck: the leader compares the hashes its followers
	// compute at each compaction (--experimental-compact-hash-check-enabled
	// in 3.5, the CompactHashCheck feature gate from 3.6).
	CompactHashCheck bool
}

// etcd's defaults for the raft timing (embed.NewConfig).
const (
	EtcdDefaultHeartbeat = 100 * time.Millisecond
	EtcdDefaultElection  = time.Second
)

// The flags ParseEtcdFlags reads, without dashes: etcd's own names
// (etcdmain and embed's config.go of 3.5, 3.6 and 3.7).
const (
	flagConfigFile        = "config-file"
	flagHeartbeat         = "heartbeat-interval"
	flagElection          = "election-timeout"
	flagInitialCorrupt    = "experimental-initial-corrupt-check"
	flagCorruptTimeOld    = "experimental-corrupt-check-time"
	flagCorruptTime       = "corrupt-check-time"
	flagCompactHashOld    = "experimental-compact-hash-check-enabled"
	flagFeatureGates      = "feature-gates"
	gateInitialCorrupt    = "InitialCorruptCheck"
	gateCompactHashCheck  = "CompactHashCheck"
	etcdEnvPrefix         = "ETCD_"
	maxEtcdConfigFileSize = 1 << 20
)

// etcdBoolFlags take no value on the command line (Go's flag package:
// --flag alone is true, --flag=false sets false).
var etcdBoolFlags = map[string]bool{flagInitialCorrupt: true, flagCompactHashOld: true}

// ParseEtcdFlags reads the settings from an etcd process's arguments
// (args[0] is the program) and environment (KEY=value), as etcd does: a
// --config-file (or ETCD_CONFIG_FILE) replaces both, read through
// readFile; otherwise a flag on the command line wins over its ETCD_*
// variable. What is set nowhere keeps etcd's default.
func ParseEtcdFlags(args, env []string, readFile func(string) ([]byte, error)) (EtcdFlags, error) {
	set := map[string]string{}
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name := strings.TrimLeft(a, "-")
		value, hasValue := "", false
		if k, v, ok := strings.Cut(name, "="); ok {
			name, value, hasValue = k, v, true
		}
		if !hasValue {
			switch {
			case etcdBoolFlags[name]:
				value = "true"
			case i+1 < len(args):
				// Go's flag package takes the next argument as the value
				// of any other flag.
				i++
				value = args[i]
			}
		}
		set[name] = value
	}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, etcdEnvPrefix) {
			continue
		}
		name := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, etcdEnvPrefix)), "_", "-")
		if _, onCommandLine := set[name]; !onCommandLine {
			set[name] = v
		}
	}
	if path := set[flagConfigFile]; path != "" {
		raw, err := readFile(path)
		if err != nil {
			return EtcdFlags{}, fmt.Errorf("etcd's --config-file: %w", err)
		}
		return parseEtcdConfigFile(raw)
	}
	return etcdFlagsFrom(set)
}

// etcdFlagsFrom interprets the flags set, by name.
func etcdFlagsFrom(set map[string]string) (EtcdFlags, error) {
	f := EtcdFlags{Heartbeat: EtcdDefaultHeartbeat, Election: EtcdDefaultElection}
	millis := func(name string, d *time.Duration) error {
		if v, ok := set[name]; ok {
			ms, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil {
				return fmt.Errorf("etcd's --%s %q: %w", name, v, err)
			}
			*d = time.Duration(ms) * time.Millisecond
		}
		return nil
	}
	boolean := func(name string, b *bool) error {
		if v, ok := set[name]; ok {
			x, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("etcd's --%s %q: %w", name, v, err)
			}
			*b = x
		}
		return nil
	}
	duration := func(name string, d *time.Duration) error {
		if v, ok := set[name]; ok {
			x, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("etcd's --%s %q: %w", name, v, err)
			}
			*d = x
		}
		return nil
	}
	for _, err := range []error{
		millis(flagHeartbeat, &f.Heartbeat),
		millis(flagElection, &f.Election),
		boolean(flagInitialCorrupt, &f.InitialCorruptCheck),
		boolean(flagCompactHashOld, &f.CompactHashCheck),
		duration(flagCorruptTimeOld, &f.CorruptCheckTime),
		duration(flagCorruptTime, &f.CorruptCheckTime),
	} {
		if err != nil {
			return EtcdFlags{}, err
		}
	}
	if v, ok := set[flagFeatureGates]; ok {
		gates, err := parseFeatureGates(v)
		if err != nil {
			return EtcdFlags{}, err
		}
		if on, ok := gates[gateInitialCorrupt]; ok {
			f.InitialCorruptCheck = on
		}
		if on, ok := gates[gateCompactHashCheck]; ok {
			f.CompactHashCheck = on
		}
	}
	return f, nil
}

// parseFeatureGates reads --feature-gates: "A=true,B=false".
func parseFeatureGates(v string) (map[string]bool, error) {
	gates := map[string]bool{}
	for _, kv := range strings.Split(v, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("etcd's --%s: %q is not Gate=true|false", flagFeatureGates, kv)
		}
		b, err := strconv.ParseBool(strings.TrimSpace(val))
		if err != nil {
			return nil, fmt.Errorf("etcd's --%s: %q: %w", flagFeatureGates, kv, err)
		}
		gates[strings.TrimSpace(k)] = b
	}
	return gates, nil
}

// parseEtcdConfigFile reads etcd's YAML configuration file, whose keys are
// the flags' names. etcd decodes it as JSON into time.Duration, so the
// corruption check period is a number of nanoseconds; a Go duration
// string is taken too.
func parseEtcdConfigFile(raw []byte) (EtcdFlags, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return EtcdFlags{}, fmt.Errorf("etcd's --config-file: %w", err)
	}
	set := map[string]string{}
	for k, v := range doc {
		switch x := v.(type) {
		case nil:
		case string:
			set[k] = x
		default:
			set[k] = fmt.Sprint(x)
		}
	}
	for _, name := range []string{flagCorruptTimeOld, flagCorruptTime} {
		if v, ok := set[name]; ok {
			if ns, err := strconv.ParseInt(v, 10, 64); err == nil {
				set[name] = time.Duration(ns).String()
			}
		}
	}
	return etcdFlagsFrom(set)
}

// ReadEtcdProcessFlags reads the flags of a running etcd process from
// /proc: its command line, its environment, and the --config-file it
// names, seen from its own root and working directory (a container's
// files, from the host). Reading the environment and the process's root
// needs etcd's user or CAP_SYS_PTRACE, as the process metrics do.
func ReadEtcdProcessFlags(pid int) (EtcdFlags, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		return EtcdFlags{}, fmt.Errorf("the etcd process's command line: %w", err)
	}
	environ, err := os.ReadFile(filepath.Join(dir, "environ"))
	if err != nil {
		return EtcdFlags{}, fmt.Errorf("the etcd process's environment: %w", err)
	}
	readFile := func(path string) ([]byte, error) {
		if !filepath.IsAbs(path) {
			path = filepath.Join("cwd", path)
		} else {
			path = filepath.Join("root", path)
		}
		f, err := os.Open(filepath.Join(dir, path))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(&limitedReader{f, maxEtcdConfigFileSize}); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	return ParseEtcdFlags(splitNUL(cmdline), splitNUL(environ), readFile)
}

// limitedReader fails a file larger than its limit instead of truncating it.
type limitedReader struct {
	f interface{ Read([]byte) (int, error) }
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	n, err := l.f.Read(p)
	if l.n -= int64(n); l.n < 0 {
		return n, fmt.Errorf("larger than %d bytes", maxEtcdConfigFileSize)
	}
	return n, err
}

// splitNUL splits /proc's NUL-separated lists.
func splitNUL(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\x00")
}
