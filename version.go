// Package etcdpulse is the root of the module. It holds only etcdpulse's
// version, read from the VERSION file beside it: the Makefile stamps the
// same file's content into the binary with -ldflags, and a plain `go build`
// or `go install`, which stamps nothing, gets it from here.
package etcdpulse

import (
	_ "embed"
	"strings"
)

//go:embed VERSION
var versionFile string

// Version returns the version in the VERSION file, such as "0.1.0".
func Version() string { return strings.TrimSpace(versionFile) }
