package agent

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is every setting of the agent, one field per section of the YAML
// file. Start from DefaultConfig. The etcd and probes sections are the
// core's; every other section is one capability's, its type and defaults
// declared in that capability's file. Settings lists every field with its
// flag and help.
type Config struct {
	Etcd   EtcdConfig   `yaml:"etcd"`
	Probes ProbesConfig `yaml:"probes"`
	// The capabilities' own sections.
	Disk    DiskConfig    `yaml:"disk"`
	Network NetworkConfig `yaml:"network"`
	Host    HostConfig    `yaml:"host"`
	// Certificates is the certificates capability's (certificates.go).
	Certificates CertificatesConfig `yaml:"certificates"`
	// Backups is the backups capability's (backups.go).
	Backups BackupsConfig `yaml:"backups"`
	// Keyspace is the key space capability's (keyspace.go).
	Keyspace KeyspaceConfig `yaml:"keyspace"`
}

// EtcdConfig says how to reach the local member and where its data is.
type EtcdConfig struct {
	// Endpoints: the local member's client URL first; any others are only
	// used to find the cluster while the local member does not answer.
	Endpoints   []string  `yaml:"endpoints"`
	TLS         TLSConfig `yaml:"tls"`
	DialTimeout Duration  `yaml:"dial_timeout"`
	Username    string    `yaml:"username"`
	Password    string    `yaml:"password"`
	// KeyPrefix is the only key space the agent reads probe keys from or
	// writes to.
	KeyPrefix string `yaml:"key_prefix"`
	// DataDir is the member's --data-dir, for the disk probe and the host
	// collector.
	DataDir string `yaml:"data_dir"`
	// WALDir is the member's --wal-dir; empty means DataDir/member/wal.
	WALDir string `yaml:"wal_dir"`
	// MetricsURL is the local member's own /metrics (kubeadm:
	// http://127.0.0.1:2381/metrics); empty means not read. It is the
	// setting of the etcd metrics capability (etcdmetrics.go).
	MetricsURL string `yaml:"metrics_url"`
	// QuotaBackendBytes is the members' --quota-backend-bytes, for members
	// that do not report their quota (etcd 3.4 and 3.5); 0 means not known.
	// It is the setting of the capacity capability (capacity.go).
	QuotaBackendBytes int64 `yaml:"quota_backend_bytes"`
	// ReadOnly turns off every write: the capabilities that need one
	// (writes.go, replication.go) report themselves off.
	ReadOnly bool `yaml:"read_only"`
}

// WAL returns the member's WAL directory.
func (e EtcdConfig) WAL() string {
	if e.WALDir != "" {
		return e.WALDir
	}
	return filepath.Join(e.DataDir, "member", "wal")
}

// TLSConfig holds the client certificate files for etcd.
type TLSConfig struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// Enabled reports whether any TLS setting is given.
func (t TLSConfig) Enabled() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.InsecureSkipVerify
}

// ProbesConfig schedules the probes. Interval and Timeout are the defaults
// each probe inherits unless it sets its own.
type ProbesConfig struct {
	Interval   Duration      `yaml:"interval"`
	Timeout    Duration      `yaml:"timeout"`
	Status     ProbeSchedule `yaml:"status"`
	Read       ProbeSchedule `yaml:"read"`
	MemberList ProbeSchedule `yaml:"member_list"`
	Write      ProbeSchedule `yaml:"write"`
	Watch      ProbeSchedule `yaml:"watch"`
	Hash       ProbeSchedule `yaml:"hash"`
}

// ProbeSchedule overrides the default schedule for one probe; zero keeps
// the default.
type ProbeSchedule struct {
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
}

// Schedule returns a probe's schedule: its own settings over the defaults.
func (c ProbesConfig) Schedule(s ProbeSchedule) (interval, timeout time.Duration) {
	interval, timeout = time.Duration(c.Interval), time.Duration(c.Timeout)
	if s.Interval > 0 {
		interval = time.Duration(s.Interval)
	}
	if s.Timeout > 0 {
		timeout = time.Duration(s.Timeout)
	}
	return interval, timeout
}

// Duration is a time.Duration written as "1s", "1.5s", "250ms" in YAML.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, errors.New(`expected a duration such as "1s"`))
	}
	if err := d.Set(s); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}

// Set parses a duration such as "1s" or "500ms".
func (d *Duration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf(`%q is not a duration (expected a number with a unit, such as "1s" or "500ms")`, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// String formats the duration.
func (d Duration) String() string { return time.Duration(d).String() }

// Core defaults.
const (
	DefaultEndpoint  = "http://127.0.0.1:2379"
	DefaultKeyPrefix = "/etcdpulse/"
	DefaultDataDir   = "/var/lib/etcd"
	DefaultInterval  = time.Second
	// DefaultTimeout is the deadline of a probe run, and so the time a
	// member may take to answer a linearizable read and still be healthy:
	// twice etcd's default election timeout, as the Kubernetes API server's
	// etcd health check uses.
	DefaultTimeout     = 2 * time.Second
	DefaultDialTimeout = 2 * time.Second
)

// DefaultConfig returns the configuration used when nothing is set: the
// core's defaults and each capability's.
func DefaultConfig() Config {
	c := Config{
		Etcd: EtcdConfig{
			Endpoints:   []string{DefaultEndpoint},
			DataDir:     DefaultDataDir,
			DialTimeout: Duration(DefaultDialTimeout),
			KeyPrefix:   DefaultKeyPrefix,
		},
		Probes: ProbesConfig{
			Interval: Duration(DefaultInterval),
			Timeout:  Duration(DefaultTimeout),
		},
	}
	for _, cp := range capabilities {
		if cp.defaults != nil {
			cp.defaults(&c)
		}
	}
	return c
}

// FieldError is a configuration value that is wrong, named by its YAML path
// and its flag.
type FieldError struct {
	Field string
	Flag  string
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Flag != "" {
		return fmt.Sprintf("%s (--%s): %s", e.Field, e.Flag, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Field, e.Msg)
}

// badFunc reports a problem with the setting at a YAML path (with an
// index, such as etcd.endpoints[0], for an element of a list).
type badFunc func(path, format string, args ...any)

// fieldError builds the error for the setting at path, its flag from the
// settings table.
func fieldError(path, msg string) *FieldError {
	base, _, _ := strings.Cut(path, "[")
	return &FieldError{Field: path, Flag: flagOf(base), Msg: msg}
}

// Validate checks the whole configuration, the core's settings and each
// capability's, and returns every problem.
func (c *Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fieldError(path, fmt.Sprintf(format, args...)))
	}
	c.validateEtcd(bad)
	for _, p := range []struct {
		path string
		d    Duration
	}{{"probes.interval", c.Probes.Interval}, {"probes.timeout", c.Probes.Timeout}} {
		if p.d <= 0 {
			bad(p.path, "must be positive, got %s", p.d)
		}
	}
	for _, cp := range capabilities {
		if cp.validate != nil {
			cp.validate(c, bad)
		}
	}
	return errors.Join(errs...)
}

func (c *Config) validateEtcd(bad badFunc) {
	if len(c.Etcd.Endpoints) == 0 {
		bad("etcd.endpoints", "at least one client URL is required, the local member's first")
	}
	for i, ep := range c.Etcd.Endpoints {
		u, err := url.Parse(ep)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "unix" && u.Scheme != "unixs") || u.Host == "" && u.Path == "":
			bad(fmt.Sprintf("etcd.endpoints[%d]", i), "%q is not a client URL (expected http://host:port or https://host:port)", ep)
		case (u.Scheme == "http" || u.Scheme == "https") && !validPort(u.Port(), 1):
			bad(fmt.Sprintf("etcd.endpoints[%d]", i), "%q has port %q: expected a number from 1 to 65535, such as %q", ep, u.Port(), DefaultEndpoint)
		}
	}
	tlsFiles := []struct{ path, file string }{
		{"etcd.tls.ca_file", c.Etcd.TLS.CAFile},
		{"etcd.tls.cert_file", c.Etcd.TLS.CertFile},
		{"etcd.tls.key_file", c.Etcd.TLS.KeyFile},
	}
	for _, f := range tlsFiles {
		if f.file == "" {
			continue
		}
		if _, err := os.Stat(f.file); err != nil {
			bad(f.path, "cannot read %q: %v", f.file, errors.Unwrap(err))
		}
	}
	if (c.Etcd.TLS.CertFile == "") != (c.Etcd.TLS.KeyFile == "") {
		bad("etcd.tls.cert_file", "a client certificate and its key go together: set both etcd.tls.cert_file and etcd.tls.key_file, or neither")
	}
	if c.Etcd.DialTimeout <= 0 {
		bad("etcd.dial_timeout", "must be positive, got %s", c.Etcd.DialTimeout)
	}
	if c.Etcd.Password != "" && c.Etcd.Username == "" {
		bad("etcd.username", "a password is set without a username: set etcd.username too, or remove etcd.password")
	}
	if p := c.Etcd.KeyPrefix; !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") || len(p) < 3 {
		bad("etcd.key_prefix", "%q must start and end with \"/\" and name a key space of its own, such as %q", c.Etcd.KeyPrefix, DefaultKeyPrefix)
	}
}

// validPort: empty (the scheme's default), or a number from low to 65535.
func validPort(p string, low int) bool {
	if p == "" {
		return true
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= low && n <= 65535
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	if path == "" || dir == "" {
		return false
	}
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
