package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/etcdpulse/etcdpulse/dashboards"
)

// Without flags the command prints a JSON array of the dashboards; with
// --output-dir it writes the committed files' contents.
func TestDashboardsCommand(t *testing.T) {
	code, out, errOut := runCmd("dashboards")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var all []struct{ UID string }
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		t.Fatalf("stdout is not a JSON array: %v", err)
	}
	files, err := dashboards.Files()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(files) {
		t.Fatalf("printed %d dashboards, want %d", len(all), len(files))
	}

	dir := t.TempDir()
	if code, _, errOut := runCmd("dashboards", "--output-dir", dir); code != 0 {
		t.Fatalf("--output-dir: exit %d: %s", code, errOut)
	}
	for i, f := range files {
		if all[i].UID+".json" != f.Name {
			t.Errorf("dashboard %d printed is %s, want %s", i, all[i].UID, f.Name)
		}
		got, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, f.JSON) {
			t.Errorf("%s differs from dashboards.Files()", f.Name)
		}
	}

	if code, _, errOut := runCmd("dashboards", "--output-dir", filepath.Join(dir, "missing")); code != 2 || errOut == "" {
		t.Errorf("a missing --output-dir: exit %d, stderr %q; want exit 2 and an error", code, errOut)
	}
}
