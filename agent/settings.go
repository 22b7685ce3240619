package agent

import (
	"strings"
)

// Setting is one row of the configuration table (Capabilities): where a
// value lives in the YAML file, its flag, and what it means. Its default is
// the value in DefaultConfig. The command's flags and
// docs/configuration.md are made from these rows.
type Setting struct {
	// Path is the YAML path, such as "disk.probe_dir".
	Path string
	// Flag is the flag's name without "--": the path with "_" written
	// "-" unless the row says otherwise; "" for a value that must not be
	// given on a command line (a password).
	Flag string
	// Deprecated are former flag names, still accepted with a warning.
	Deprecated []string
	Help       string
	// Value returns a pointer to the setting's field in c: *string,
	// *[]string, *bool, *int, *int64 or *Duration.
	Value func(c *Config) any
}

// setting builds a row whose flag follows its YAML path.
func setting(path, help string, value func(*Config) any) Setting {
	return Setting{Path: path, Flag: strings.ReplaceAll(path, "_", "-"), Help: help, Value: value}
}

// noFlag is a row for the file only.
func noFlag(s Setting) Setting {
	s.Flag = ""
	return s
}

// deprecated adds former flag names to a row.
func deprecated(s Setting, names ...string) Setting {
	s.Deprecated = append(s.Deprecated, names...)
	return s
}

// flagOf returns the flag of the setting at a YAML path, "" when it has
// none.
func flagOf(path string) string {
	for _, c := range Capabilities() {
		for _, s := range c.Settings {
			if s.Path == path {
				return s.Flag
			}
		}
	}
	return ""
}

// coreSettings: how to reach the local member, where its data is, and the
// probes' default schedule.
var coreSettings = []Setting{
	setting("etcd.endpoints", "Client URLs: the local member's first; the others are used only to find the cluster while the local one does not answer. Repeat the flag or separate with commas.",
		func(c *Config) any { return &c.Etcd.Endpoints }),
	deprecated(setting("etcd.tls.ca_file", "CA bundle to verify etcd's server certificate.",
		func(c *Config) any { return &c.Etcd.TLS.CAFile }), "etcd.cacert"),
	deprecated(setting("etcd.tls.cert_file", "Client certificate for etcd, read again at each connection (a renewed file is picked up without a restart).",
		func(c *Config) any { return &c.Etcd.TLS.CertFile }), "etcd.cert"),
	deprecated(setting("etcd.tls.key_file", "Key of the client certificate.",
		func(c *Config) any { return &c.Etcd.TLS.KeyFile }), "etcd.key"),
	setting("etcd.tls.server_name", "Name to verify etcd's certificate against, instead of the endpoint's host.",
		func(c *Config) any { return &c.Etcd.TLS.ServerName }),
	setting("etcd.tls.insecure_skip_verify", "Do not verify etcd's certificate (tests only).",
		func(c *Config) any { return &c.Etcd.TLS.InsecureSkipVerify }),
	setting("etcd.dial_timeout", "Time to open a connection to a member.",
		func(c *Config) any { return &c.Etcd.DialTimeout }),
	setting("etcd.username", "User for etcd's authentication, when it is on; the agent authenticates when its first request needs a token.",
		func(c *Config) any { return &c.Etcd.Username }),
	noFlag(setting("etcd.password", "Password of etcd.username; only in the file: a flag would show it in the process list.",
		func(c *Config) any { return &c.Etcd.Password })),
	setting("etcd.key_prefix", "The only key space the agent reads and writes its probe keys in; the write probe's key is <prefix><member>/write.",
		func(c *Config) any { return &c.Etcd.KeyPrefix }),
	setting("etcd.read_only", "Never write to etcd: the capabilities that need writes (the write probe, and the watch probe that follows its writes) are off and say so in etcdpulse_write_enabled and etcdpulse_watch_enabled.",
		func(c *Config) any { return &c.Etcd.ReadOnly }),
	setting("etcd.data_dir", "The member's data directory (etcd's --data-dir): the disk and host capabilities measure its filesystem.",
		func(c *Config) any { return &c.Etcd.DataDir }),
	setting("etcd.wal_dir", "The member's WAL directory (etcd's --wal-dir); empty: the data directory's member/wal.",
		func(c *Config) any { return &c.Etcd.WALDir }),
	setting("probes.interval", "Default time between two runs of a probe.",
		func(c *Config) any { return &c.Probes.Interval }),
	setting("probes.timeout", "Default deadline of a probe run: a member slower than this to answer a linearizable read is not healthy.",
		func(c *Config) any { return &c.Probes.Timeout }),
}

// scheduleSettings are the rows of a probe's schedule override under
// probes.<name>.
func scheduleSettings(name, what string, field func(*Config) *ProbeSchedule) []Setting {
	return []Setting{
		setting("probes."+name+".interval", "Time between two "+what+"; 0: probes.interval.",
			func(c *Config) any { return &field(c).Interval }),
		setting("probes."+name+".timeout", "Deadline of one of the "+what+"; 0: probes.timeout.",
			func(c *Config) any { return &field(c).Timeout }),
	}
}
