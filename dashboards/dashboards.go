// Package dashboards holds etcdpulse's Grafana dashboards, built in Go with
// grafana-foundation-sdk and rendered to JSON. helpers.go has the shared
// pieces (queries, default panels, variables, runbook links); each dashboard
// has its own file. The rendered files are committed in the json/
// directory, which holds nothing else (a Kubernetes ConfigMap is made from
// it as a whole), and the tests fail when they are stale, when a query does not parse or names
// a metric that does not exist, or when a lint rule does not hold.
package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// All returns every dashboard, in the order of the links menu.
func All() ([]dashboard.Dashboard, error) {
	builders := []func() (dashboard.Dashboard, error){overview, member, capacity, safety, agent}
	out := make([]dashboard.Dashboard, 0, len(builders))
	for _, build := range builders {
		d, err := build()
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// Dir is where the rendered dashboards are committed, relative to this
// package's directory: a directory of their own, without the Go files.
const Dir = "json"

// File is one dashboard rendered to JSON, with the name of the file it is
// committed as: its UID and ".json".
type File struct {
	Name string
	JSON []byte
}

// Files renders every dashboard to its file.
func Files() ([]File, error) {
	all, err := All()
	if err != nil {
		return nil, err
	}
	out := make([]File, 0, len(all))
	for _, d := range all {
		raw, err := Marshal(d)
		if err != nil {
			return nil, err
		}
		out = append(out, File{Name: *d.Uid + ".json", JSON: raw})
	}
	return out, nil
}

// Render returns every dashboard as one JSON array, what `etcdpulse
// dashboards` prints.
func Render() ([]byte, error) {
	all, err := All()
	if err != nil {
		return nil, err
	}
	return marshal(all)
}

// Marshal renders one dashboard as Grafana's JSON model: indented, keys in
// order, with a trailing newline.
func Marshal(d dashboard.Dashboard) ([]byte, error) {
	out, err := marshal(d)
	if err != nil {
		return nil, fmt.Errorf("dashboard %s: %w", *d.Uid, err)
	}
	return out, nil
}

// WriteFiles writes every dashboard's file into dir.
func WriteFiles(dir string) error {
	files, err := Files()
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.JSON, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// marshal goes through a generic value so that PromQL's <, > and & stay
// readable: the SDK's own MarshalJSON methods escape them.
func marshal(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(generic); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
