package collectors

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// compareMetrics compares what c exports with want, sample lines in the
// text format, through testutil.CollectAndCompare. Each family's HELP and
// TYPE lines are taken from its catalogue row in rows, so that what the
// collector says about its families is checked as well. Names, when given,
// restrict the comparison to those families; without them, a family c
// exports and want lacks is a difference.
func compareMetrics(t *testing.T, c prometheus.Collector, rows []Metric, want string, names ...string) {
	t.Helper()
	var b strings.Builder
	family := ""
	for l := range strings.Lines(strings.TrimSpace(want)) {
		name := l[:strings.IndexAny(l, "{ ")]
		i := -1
		for j, m := range rows {
			if m.Name == name {
				i = j
			}
		}
		if i < 0 {
			t.Fatalf("%q: no catalogue row for %s given", l, name)
		}
		if m := rows[i]; m.Name != family {
			fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", m.Name, m.Help, m.Name, m.Type)
			family = m.Name
		}
		b.WriteString(strings.TrimSuffix(l, "\n") + "\n")
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(b.String()), names...); err != nil {
		t.Error(err)
	}
}
