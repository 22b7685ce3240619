// Package golden compares generated output with a committed file, and
// rewrites the file instead when a test runs with -update.
//
// It is internal to etcdpulse: not public API.
package golden

import (
	"bytes"
	"os"
	"testing"
)

// Matches reports whether the file at path holds exactly got. With update
// set it first writes got there. A file that cannot be read does not match;
// the error is logged.
func Matches(t testing.TB, path string, got []byte, update bool) bool {
	t.Helper()
	if update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Log(err)
		return false
	}
	return bytes.Equal(got, want)
}
