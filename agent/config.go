package agent

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is every setting of the agent. The YAML file (--config.file) holds
// it; flags override single fields.
type Config struct {
	Etcd   EtcdConfig   `yaml:"etcd"`
	Web    WebConfig    `yaml:"web"`
	Log    LogConfig    `yaml:"log"`
	Probes ProbesConfig `yaml:"probes"`
	// Disk is the fsync probe (config_disk.go).
	Disk DiskConfig `yaml:"disk"`
	// Network is the peer latency probe (config_network.go).
	Network NetworkConfig `yaml:"network"`
	// Host is the host and etcd-process collector (config_host.go).
	Host HostConfig `yaml:"host"`
}

// EtcdConfig says how to reach the local member.
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
	// http://127.0.0.1:2381/metrics); empty means not scraped.
	MetricsURL string `yaml:"metrics_url"`
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

// WebConfig is the agent's own HTTP server.
type WebConfig struct {
	ListenAddresses []string `yaml:"listen_addresses"`
	// SystemdSocket serves on the sockets systemd passes (socket
	// activation) instead of binding ListenAddresses; Linux only.
	SystemdSocket bool `yaml:"systemd_socket"`
	// ConfigFile is an exporter-toolkit web config (TLS, basic auth).
	ConfigFile string `yaml:"config_file"`
	// TelemetryPath is where the metrics are served.
	TelemetryPath string `yaml:"telemetry_path"`
	// DisableExporterMetrics leaves the agent's own go_*, process_* and
	// promhttp_metric_handler_* metrics out of its registry.
	DisableExporterMetrics bool `yaml:"disable_exporter_metrics"`
	// EnablePprof serves Go's runtime profiles under /debug/pprof/. Off by
	// default: a CPU profile costs the agent's node CPU while it runs, and
	// the endpoints are for whoever debugs the agent, not for Prometheus.
	EnablePprof bool `yaml:"enable_pprof"`
}

// LogConfig is the agent's logging.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// ProbesConfig schedules the probes. Interval and Timeout are the defaults
// each probe inherits unless it sets its own.
type ProbesConfig struct {
	Interval   Duration      `yaml:"interval"`
	Timeout    Duration      `yaml:"timeout"`
	Status     ProbeSchedule `yaml:"status"`
	Read       ProbeSchedule `yaml:"read"`
	MemberList ProbeSchedule `yaml:"member_list"`
}

// ProbeSchedule overrides the default schedule for one probe.
type ProbeSchedule struct {
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
}

// Duration is a time.Duration written as "1s", "1.5s", "250ms" in YAML.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDuration(n)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = v
	return nil
}

func parseDuration(n *yaml.Node) (Duration, error) {
	var s string
	if err := n.Decode(&s); err != nil {
		return 0, errors.New(`expected a duration such as "1s"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf(`%q is not a duration (expected a number with a unit, such as "1s" or "500ms")`, s)
	}
	return Duration(v), nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// String formats the duration.
func (d Duration) String() string { return time.Duration(d).String() }

// Defaults.
const (
	DefaultListenAddress = ":12379"
	DefaultTelemetryPath = "/metrics"
	DefaultEndpoint      = "http://127.0.0.1:2379"
	DefaultKeyPrefix     = "/etcdpulse/"
	DefaultDataDir       = "/var/lib/etcd"
	DefaultInterval      = time.Second
	// DefaultTimeout is the deadline of a probe run, and so the time a
	// member may take to answer a linearizable read and still be healthy:
	// twice etcd's default election timeout, as the Kubernetes API server's
	// etcd health check uses.
	DefaultTimeout     = 2 * time.Second
	DefaultDialTimeout = 2 * time.Second
)

// DefaultConfig returns the configuration used when nothing is set.
func DefaultConfig() Config {
	return Config{
		Etcd: EtcdConfig{
			Endpoints:   []string{DefaultEndpoint},
			DataDir:     DefaultDataDir,
			DialTimeout: Duration(DefaultDialTimeout),
			KeyPrefix:   DefaultKeyPrefix,
		},
		Web: WebConfig{ListenAddresses: []string{DefaultListenAddress}, TelemetryPath: DefaultTelemetryPath},
		Log: LogConfig{Level: "info", Format: "logfmt"},
		Probes: ProbesConfig{
			Interval: Duration(DefaultInterval),
			Timeout:  Duration(DefaultTimeout),
		},
		Disk:    defaultDiskConfig(),
		Network: defaultNetworkConfig(),
		Host:    defaultHostConfig(),
	}
}

// LoadFile reads a YAML configuration over the defaults. Unknown fields
// are errors that name the field and its line.
func LoadFile(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("--config.file: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("--config.file %s: %w", path, err)
	}
	return cfg, nil
}

// Parse reads a YAML configuration over the defaults.
func Parse(data []byte) (Config, error) {
	cfg := DefaultConfig()
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return cfg, fmt.Errorf("not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(root.Content) == 0 {
		return cfg, nil // an empty file keeps the defaults
	}
	if err := checkFields(root.Content[0], reflect.TypeOf(cfg), ""); err != nil {
		return cfg, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return cfg, decodeError(err)
	}
	return cfg, nil
}

// checkFields walks the YAML tree beside the Go type and reports the first
// unknown field with its full path, which yaml's own error does not give.
func checkFields(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct && t != reflect.TypeOf(Duration(0)):
		if n.Kind != yaml.MappingNode {
			if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
				return nil
			}
			return fmt.Errorf("line %d: field %s: expected a mapping", n.Line, strings.TrimPrefix(path, "."))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			f, ok := fieldByTag(t, key.Value)
			if !ok {
				return fmt.Errorf("line %d: unknown field %q (valid fields of %s: %s)", key.Line, strings.TrimPrefix(path+"."+key.Value, "."), sectionName(path), strings.Join(tags(t), ", "))
			}
			if err := checkFields(val, f.Type, path+"."+key.Value); err != nil {
				return err
			}
		}
	case t == reflect.TypeOf(Duration(0)):
		if _, err := parseDuration(n); err != nil {
			return fmt.Errorf("line %d: field %s: %w", n.Line, strings.TrimPrefix(path, "."), err)
		}
	case isScalar(t.Kind()):
		if n.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: field %s: expected %s, got a %s", n.Line, strings.TrimPrefix(path, "."), kindName(t.Kind()), nodeKindName(n.Kind))
		}
		if n.Tag == "!!null" {
			return nil
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			return fmt.Errorf("line %d: field %s: expected %s, got %q", n.Line, strings.TrimPrefix(path, "."), kindName(t.Kind()), n.Value)
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("line %d: field %s: expected a list, such as [\"a\", \"b\"]", n.Line, strings.TrimPrefix(path, "."))
		}
		for _, c := range n.Content {
			if err := checkFields(c, t.Elem(), path+"[]"); err != nil {
				return err
			}
		}
	}
	return nil
}

func isScalar(k reflect.Kind) bool {
	switch k {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "an integer"
}

func nodeKindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

func sectionName(path string) string {
	if path == "" {
		return "the top level"
	}
	return strings.TrimPrefix(path, ".")
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if strings.Split(f.Tag.Get("yaml"), ",")[0] == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func tags(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		if tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]; tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	return out
}

func decodeError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return errors.New(strings.TrimPrefix(te.Errors[0], "yaml: "))
	}
	return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
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

// Validate checks the whole configuration and returns every problem.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, flag, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Flag: flag, Msg: fmt.Sprintf(format, args...)})
	}
	if len(c.Etcd.Endpoints) == 0 {
		bad("etcd.endpoints", "etcd.endpoints", "at least one client URL is required, the local member's first")
	}
	for i, ep := range c.Etcd.Endpoints {
		u, err := url.Parse(ep)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "unix" && u.Scheme != "unixs") || u.Host == "" && u.Path == "":
			bad(fmt.Sprintf("etcd.endpoints[%d]", i), "etcd.endpoints", "%q is not a client URL (expected http://host:port or https://host:port)", ep)
		case (u.Scheme == "http" || u.Scheme == "https") && !validPort(u.Port(), 1):
			bad(fmt.Sprintf("etcd.endpoints[%d]", i), "etcd.endpoints", "%q has port %q: expected a number from 1 to 65535, such as %q", ep, u.Port(), DefaultEndpoint)
		}
	}
	tlsFiles := []struct{ field, flag, path string }{
		{"etcd.tls.ca_file", "etcd.cacert", c.Etcd.TLS.CAFile},
		{"etcd.tls.cert_file", "etcd.cert", c.Etcd.TLS.CertFile},
		{"etcd.tls.key_file", "etcd.key", c.Etcd.TLS.KeyFile},
	}
	for _, f := range tlsFiles {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			bad(f.field, f.flag, "cannot read %q: %v", f.path, errors.Unwrap(err))
		}
	}
	if (c.Etcd.TLS.CertFile == "") != (c.Etcd.TLS.KeyFile == "") {
		bad("etcd.tls.cert_file", "etcd.cert", "a client certificate and its key go together: set both etcd.tls.cert_file and etcd.tls.key_file, or neither")
	}
	if c.Etcd.DialTimeout <= 0 {
		bad("etcd.dial_timeout", "", "must be positive, got %s", c.Etcd.DialTimeout)
	}
	if !strings.HasPrefix(c.Etcd.KeyPrefix, "/") || !strings.HasSuffix(c.Etcd.KeyPrefix, "/") || len(c.Etcd.KeyPrefix) < 3 {
		bad("etcd.key_prefix", "", "%q must start and end with \"/\" and name a key space of its own, such as %q", c.Etcd.KeyPrefix, DefaultKeyPrefix)
	}
	if len(c.Web.ListenAddresses) == 0 {
		bad("web.listen_addresses", "web.listen-address", "at least one address is required, such as %q", DefaultListenAddress)
	}
	for i, a := range c.Web.ListenAddresses {
		_, port, err := net.SplitHostPort(a)
		switch {
		case strings.HasPrefix(a, "vsock://"):
			bad(fmt.Sprintf("web.listen_addresses[%d]", i), "web.listen-address", "%q: vsock addresses are not supported; give host:port, such as %q", a, DefaultListenAddress)
		case err != nil:
			bad(fmt.Sprintf("web.listen_addresses[%d]", i), "web.listen-address", "%q is not host:port (expected, for example, %q)", a, DefaultListenAddress)
		case port == "" || !validPort(port, 0):
			bad(fmt.Sprintf("web.listen_addresses[%d]", i), "web.listen-address", "%q has port %q: expected a number from 0 to 65535, such as %q", a, port, DefaultListenAddress)
		}
	}
	if c.Web.ConfigFile != "" {
		if _, err := os.Stat(c.Web.ConfigFile); err != nil {
			bad("web.config_file", "web.config.file", "cannot read %q: %v", c.Web.ConfigFile, errors.Unwrap(err))
		}
	}
	if msg := telemetryPathProblem(c.Web.TelemetryPath); msg != "" {
		bad("web.telemetry_path", "web.telemetry-path", "%s", msg)
	}
	if c.Web.SystemdSocket && runtime.GOOS != "linux" {
		bad("web.systemd_socket", "web.systemd-socket", "systemd socket activation is only available on Linux, not on %s", runtime.GOOS)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "logfmt", "json":
	default:
		bad("log.format", "log.format", "%q is not one of logfmt, json", c.Log.Format)
	}
	if c.Probes.Interval <= 0 {
		bad("probes.interval", "", "must be positive, got %s", c.Probes.Interval)
	}
	if c.Probes.Timeout <= 0 {
		bad("probes.timeout", "", "must be positive, got %s", c.Probes.Timeout)
	}
	for _, p := range []struct {
		name string
		s    ProbeSchedule
	}{{"status", c.Probes.Status}, {"read", c.Probes.Read}, {"member_list", c.Probes.MemberList}} {
		if p.s.Interval < 0 {
			bad("probes."+p.name+".interval", "", "must not be negative, got %s", p.s.Interval)
		}
		if p.s.Timeout < 0 {
			bad("probes."+p.name+".timeout", "", "must not be negative, got %s", p.s.Timeout)
		}
	}
	c.Disk.validate(c.Etcd, bad)
	c.Network.validate(bad)
	c.Host.validate(c.Etcd, bad)
	return errors.Join(errs...)
}

// validPort: empty (the scheme's default), or a number from low to 65535.
func validPort(p string, low int) bool {
	if p == "" {
		return true
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= low && n <= 65535
}

// telemetryPathRE is a path of plain segments: what http.ServeMux takes
// as one exact path, without wildcards ("{name}"), methods or escapes
// (and "." or ".." segments, which it redirects, are refused apart).
var telemetryPathRE = regexp.MustCompile(`^(/[A-Za-z0-9._~-]+)+$`)

// telemetryPathProblem says what is wrong with a telemetry path, or "".
// The paths the agent serves itself are taken.
func telemetryPathProblem(p string) string {
	switch {
	case p == "/":
		return fmt.Sprintf(`"/" is the landing page; pick a path of its own, such as %q`, DefaultTelemetryPath)
	case !telemetryPathRE.MatchString(p) || slices.ContainsFunc(strings.Split(p, "/"), func(seg string) bool { return seg == "." || seg == ".." }):
		return fmt.Sprintf(`%q is not a URL path of segments of letters, digits, ".", "_", "~" or "-", starting with "/" (expected, for example, %q)`, p, DefaultTelemetryPath)
	case p == "/healthz":
		return fmt.Sprintf(`"/healthz" is the agent's health endpoint; pick another path, such as %q`, DefaultTelemetryPath)
	case p == "/readyz":
		return fmt.Sprintf(`"/readyz" is the agent's readiness endpoint; pick another path, such as %q`, DefaultTelemetryPath)
	case p == "/debug" || strings.HasPrefix(p, "/debug/"):
		return fmt.Sprintf(`%q is under /debug/, where the agent serves traces and profiles; pick another path, such as %q`, p, DefaultTelemetryPath)
	}
	return ""
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
