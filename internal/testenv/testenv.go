// Package testenv decides what a test does when this machine lacks
// something it needs (a directory on a real disk, a writable tmpfs), and
// holds the few helpers every package's tests share: a buffer several
// goroutines write to, waiting for a condition (Eventually), and an address
// that refuses connections (RefusedAddr).
//
// Under `make test`, which sets ETCDPULSE_STRICT=1, a missing requirement
// fails the test: CI must never pass by skipping what it was meant to
// check. A plain `go test` on a developer's machine skips with the same
// message instead.
//
// It is internal to etcdpulse: not public API.
package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// StrictEnv is the variable `make test` sets to turn Unavailable's skips
// into failures.
const StrictEnv = "ETCDPULSE_STRICT"

// Unavailable stops the test because the machine lacks what it needs:
// a failure under ETCDPULSE_STRICT=1, a skip otherwise.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(StrictEnv) == "1" {
		t.Fatalf(format+" ("+StrictEnv+"=1: required)", args...)
	}
	t.Skipf(format, args...)
}

// DiskDir returns a temporary directory on a real disk, removed when the
// test ends: t.TempDir() when it is on one, else a directory beside the
// test's package (a checkout sits on a disk even where /tmp is a tmpfs).
// Where neither is on a disk, the test is Unavailable.
func DiskDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	fs := memoryFS(dir)
	if fs == "" {
		return dir
	}
	local, err := os.MkdirTemp(".", ".disktest-")
	if err != nil {
		Unavailable(t, "%s is on %s and no directory could be made beside the package: %v", dir, fs, err)
	}
	t.Cleanup(func() { os.RemoveAll(local) })
	if lfs := memoryFS(local); lfs != "" {
		Unavailable(t, "%s is on %s and %s on %s; set TMPDIR to a directory on a disk", dir, fs, local, lfs)
	}
	abs, err := filepath.Abs(local)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// EnvFile returns the file the environment variable env names, such as a
// binary `make test` builds, or marks the test Unavailable, saying how it
// is provided. A set variable naming no file fails the test.
func EnvFile(t testing.TB, env, how string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		Unavailable(t, "%s is not set: %s", env, how)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s: %v", env, err)
	}
	return p
}
