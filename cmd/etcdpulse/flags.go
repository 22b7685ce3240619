package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/alecthomas/kingpin/v2"

	"github.com/etcdpulse/etcdpulse/agent"
)

// configFlags gives every row of the configuration table a flag, and keeps
// what the command line set to apply over the file: a flag given overrides
// its field of the file, a flag left out keeps it.
type configFlags struct {
	given []given
	// deprecated are the former flag names used, for a warning each.
	deprecated []string
}

// given is one value from the command line.
type given struct {
	row  row
	flag string
	raw  string
}

// addConfigFlags defines a flag per row, and a hidden one per former name.
func addConfigFlags(cmd *kingpin.CmdClause) *configFlags {
	f := &configFlags{}
	defaults := defaultFileConfig()
	for _, r := range settings() {
		if r.Flag == "" {
			continue
		}
		help := r.Help
		if d := format(r.value(&defaults)); d != "" && d != "false" {
			help += " (default: " + d + ")"
		}
		f.define(cmd.Flag(r.Flag, help), r, r.Flag)
		for _, old := range r.Deprecated {
			f.define(cmd.Flag(old, "Deprecated: use --"+r.Flag+".").Hidden(), r, old)
		}
	}
	return f
}

func (f *configFlags) define(fc *kingpin.FlagClause, r row, name string) {
	fc.SetValue(&flagValue{f: f, r: r, name: name, kind: r.value(&fileConfig{})})
}

// apply sets the values given on the command line in cfg, in order; a
// list flag given several times replaces the file's list with all of them.
func (f *configFlags) apply(cfg *fileConfig) {
	cleared := map[string]bool{}
	for _, g := range f.given {
		p := g.row.value(cfg)
		if l, ok := p.(*[]string); ok && !cleared[g.row.Path] {
			*l, cleared[g.row.Path] = nil, true
		}
		_ = set(p, g.raw) // checked when given
	}
}

// flagValue is a kingpin value for one row: it checks the text when the
// flag is parsed and keeps it for apply.
type flagValue struct {
	f    *configFlags
	r    row
	name string
	// kind is a pointer of the field's type, to check values against.
	kind any
}

// Set implements kingpin.Value.
func (v *flagValue) Set(s string) error {
	if err := set(v.kind, s); err != nil {
		return fmt.Errorf("--%s (%s): %w", v.name, v.r.Path, err)
	}
	if v.name != v.r.Flag {
		v.f.deprecated = append(v.f.deprecated, v.name)
	}
	v.f.given = append(v.f.given, given{row: v.r, flag: v.name, raw: s})
	return nil
}

// String implements kingpin.Value.
func (v *flagValue) String() string { return "" }

// IsCumulative lets a list flag repeat.
func (v *flagValue) IsCumulative() bool {
	_, ok := v.kind.(*[]string)
	return ok
}

// IsBoolFlag lets a boolean flag go without a value (--disk.enabled,
// --no-disk.enabled).
func (v *flagValue) IsBoolFlag() bool {
	_, ok := v.kind.(*bool)
	return ok
}

// set parses s into the field p points to. A list takes comma-separated
// values and appends them.
func set(p any, s string) error {
	switch p := p.(type) {
	case *string:
		*p = s
	case *[]string:
		for _, part := range strings.Split(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				*p = append(*p, part)
			}
		}
	case *bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("expected true or false, got %q", s)
		}
		*p = b
	case *int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("expected an integer, got %q", s)
		}
		*p = n
	case *int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("expected an integer, got %q", s)
		}
		*p = n
	case *agent.Duration:
		return p.Set(s)
	default:
		return fmt.Errorf("unsupported setting type %T", p)
	}
	return nil
}

// format writes the value p points to as a flag would take it.
func format(p any) string {
	switch p := p.(type) {
	case *string:
		return *p
	case *[]string:
		return strings.Join(*p, ",")
	case *bool:
		return strconv.FormatBool(*p)
	case *int:
		return strconv.Itoa(*p)
	case *int64:
		return strconv.FormatInt(*p, 10)
	case *agent.Duration:
		return p.String()
	}
	return fmt.Sprint(p)
}
