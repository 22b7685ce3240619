package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/etcdpulse/etcdpulse/agent"
)

// fileConfig is the command's whole configuration, the YAML file's
// layout: the agent's, and the web and log sections, which are the
// process's and not the library's.
type fileConfig struct {
	agent.Config `yaml:",inline"`
	Web          webConfig `yaml:"web"`
	Log          logConfig `yaml:"log"`
}

// webConfig is the agent's own HTTP server.
type webConfig struct {
	ListenAddresses []string `yaml:"listen_addresses"`
	// SystemdSocket serves on the sockets systemd passes (socket
	// activation) instead of binding ListenAddresses; Linux only.
	SystemdSocket bool `yaml:"systemd_socket"`
	// ConfigFile is an exporter-toolkit web config (TLS, basic auth).
	ConfigFile string `yaml:"config_file"`
	// TelemetryPath is where the metrics are served.
	TelemetryPath string `yaml:"telemetry_path"`
	// DisableExporterMetrics leaves the process's own go_*, process_* and
	// promhttp_metric_handler_* metrics out.
	DisableExporterMetrics bool `yaml:"disable_exporter_metrics"`
	// EnablePprof serves Go's runtime profiles under /debug/pprof/. Off by
	// default: a CPU profile costs the agent's node CPU while it runs, and
	// the endpoints are for whoever debugs the agent, not for Prometheus.
	EnablePprof bool `yaml:"enable_pprof"`
}

// logConfig is the agent's logging.
type logConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Defaults of the command's own settings.
const (
	defaultListenAddress = ":12379"
	defaultTelemetryPath = "/metrics"
)

func defaultFileConfig() fileConfig {
	return fileConfig{
		Config: agent.DefaultConfig(),
		Web:    webConfig{ListenAddresses: []string{defaultListenAddress}, TelemetryPath: defaultTelemetryPath},
		Log:    logConfig{Level: "info", Format: "logfmt"},
	}
}

// row is one row of the command's configuration table: the agent's rows
// and the command's own.
type row struct {
	agent.Setting
	// value points into the command's configuration.
	value func(*fileConfig) any
	// group is the section of docs/configuration.md.
	group string
}

// settings returns the whole configuration table, in the order of the
// documentation: the command's web and log rows, then the agent's, by
// capability.
func settings() []row {
	rows := processSettings()
	for _, c := range agent.Capabilities() {
		for _, s := range c.Settings {
			s := s
			rows = append(rows, row{Setting: s, value: func(fc *fileConfig) any { return s.Value(&fc.Config) }, group: c.Title})
		}
	}
	return rows
}

// processSettings are the rows of the process's own concerns. The web
// flags keep the names every Prometheus exporter has (exporter-toolkit's).
func processSettings() []row {
	const web, log = "The agent's web server", "Logging"
	r := func(group, path, flag, help string, value func(*fileConfig) any) row {
		if flag == "" {
			flag = strings.ReplaceAll(path, "_", "-")
		}
		return row{Setting: agent.Setting{Path: path, Flag: flag, Help: help}, value: value, group: group}
	}
	rows := []row{
		r(web, "web.listen_addresses", "web.listen-address", "Addresses on which to expose metrics and web interface. Repeatable for multiple addresses.",
			func(c *fileConfig) any { return &c.Web.ListenAddresses }),
		r(web, "web.config_file", "web.config.file", "Path to configuration file that can enable TLS or authentication (exporter-toolkit's web configuration).",
			func(c *fileConfig) any { return &c.Web.ConfigFile }),
		r(web, "web.telemetry_path", "", "Path under which to expose metrics.",
			func(c *fileConfig) any { return &c.Web.TelemetryPath }),
		r(web, "web.disable_exporter_metrics", "", "Exclude the agent's own metrics about itself (go_*, process_*, promhttp_*).",
			func(c *fileConfig) any { return &c.Web.DisableExporterMetrics }),
		r(web, "web.enable_pprof", "", "Serve Go's runtime profiles of the agent under /debug/pprof/.",
			func(c *fileConfig) any { return &c.Web.EnablePprof }),
		r(log, "log.level", "", "Only log messages with the given severity or above: debug, info, warn, error.",
			func(c *fileConfig) any { return &c.Log.Level }),
		r(log, "log.format", "", "Output format of log messages: logfmt, json.",
			func(c *fileConfig) any { return &c.Log.Format }),
	}
	return slices.Insert(rows, 1, r(web, "web.systemd_socket", "", "Use systemd socket activation listeners instead of port listeners (Linux only).",
		func(c *fileConfig) any { return &c.Web.SystemdSocket }))
}

// validate checks the agent's configuration and the command's own.
func (c *fileConfig) validate() error {
	var errs []error
	if err := c.Config.Validate(); err != nil {
		errs = append(errs, err)
	}
	bad := func(path, flag, format string, args ...any) {
		errs = append(errs, &agent.FieldError{Field: path, Flag: flag, Msg: fmt.Sprintf(format, args...)})
	}
	if len(c.Web.ListenAddresses) == 0 && !c.Web.SystemdSocket {
		bad("web.listen_addresses", "web.listen-address", "at least one address is required, such as %q", defaultListenAddress)
	}
	for i, a := range c.Web.ListenAddresses {
		_, port, err := net.SplitHostPort(a)
		field := fmt.Sprintf("web.listen_addresses[%d]", i)
		switch {
		case strings.HasPrefix(a, "vsock://"):
			bad(field, "web.listen-address", "%q: vsock addresses are not supported; give host:port, such as %q", a, defaultListenAddress)
		case err != nil:
			bad(field, "web.listen-address", "%q is not host:port (expected, for example, %q)", a, defaultListenAddress)
		case port == "" || !validPort(port):
			bad(field, "web.listen-address", "%q has port %q: expected a number from 0 to 65535, such as %q", a, port, defaultListenAddress)
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
	return errors.Join(errs...)
}

// validPort: a number from 0 to 65535.
func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 0 && n <= 65535
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
		return fmt.Sprintf(`"/" is the landing page; pick a path of its own, such as %q`, defaultTelemetryPath)
	case !telemetryPathRE.MatchString(p) || slices.ContainsFunc(strings.Split(p, "/"), func(seg string) bool { return seg == "." || seg == ".." }):
		return fmt.Sprintf(`%q is not a URL path of segments of letters, digits, ".", "_", "~" or "-", starting with "/" (expected, for example, %q)`, p, defaultTelemetryPath)
	case p == "/healthz":
		return fmt.Sprintf(`"/healthz" is the agent's health endpoint; pick another path, such as %q`, defaultTelemetryPath)
	case p == "/readyz":
		return fmt.Sprintf(`"/readyz" is the agent's readiness endpoint; pick another path, such as %q`, defaultTelemetryPath)
	case p == "/debug" || strings.HasPrefix(p, "/debug/"):
		return fmt.Sprintf(`%q is under /debug/, where the agent serves traces and profiles; pick another path, such as %q`, p, defaultTelemetryPath)
	}
	return ""
}

// loadFile reads a YAML configuration over the defaults. Unknown fields
// and values of the wrong type are errors that name the field and its
// line.
func loadFile(path string) (fileConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return fileConfig{}, fmt.Errorf("--config.file: %w", err)
	}
	cfg, err := parseConfig(data)
	if err != nil {
		return fileConfig{}, fmt.Errorf("--config.file %s: %w", path, err)
	}
	return cfg, nil
}

// parseConfig reads a YAML configuration over the defaults.
func parseConfig(data []byte) (fileConfig, error) {
	cfg := defaultFileConfig()
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
	case t.Kind() == reflect.Struct && t != reflect.TypeOf(agent.Duration(0)):
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
	case t == reflect.TypeOf(agent.Duration(0)):
		var s string
		var d agent.Duration
		err := n.Decode(&s)
		if err == nil {
			err = d.Set(s)
		} else {
			err = errors.New(`expected a duration such as "1s"`)
		}
		if err != nil {
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

// fieldByTag finds the field of a YAML key, in embedded inline structs too.
func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if strings.Contains(tag, ",inline") {
			if g, ok := fieldByTag(f.Type, name); ok {
				return g, true
			}
			continue
		}
		if strings.Split(tag, ",")[0] == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func tags(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("yaml")
		if strings.Contains(tag, ",inline") {
			out = append(out, tags(t.Field(i).Type)...)
			continue
		}
		if tag := strings.Split(tag, ",")[0]; tag != "" && tag != "-" {
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
