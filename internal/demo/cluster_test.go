package demo

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A port taken between the moment it was found free and the moment etcd
// binds it: the cluster starts again, afresh, on new ports. Three members,
// as the demo runs: the two whose ports were free must not come back as
// members of the first try's cluster.
func TestStartClusterPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	handed := 0
	port := func() (string, error) {
		handed++
		if handed == 1 { // the first member's client port
			return taken.Addr().String(), nil
		}
		return freePort()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := startCluster(ctx, t.TempDir(), 3, port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if handed != 2*3*3 {
		t.Errorf("%d ports handed out, want 18: two tries of 3 members with 3 ports each", handed)
	}
	for _, m := range c.Members {
		if strings.Contains(m.ClientURL+m.PeerURL+m.MetricsURL, taken.Addr().String()) {
			t.Errorf("%s uses the taken port %s", m.Name, taken.Addr())
		}
		resp, err := http.Get(m.ClientURL + "/health")
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !m.Running() || m.ID() == 0 {
			t.Errorf("%s: /health %s, running %v, ID %x; want 200, running, an ID", m.Name, resp.Status, m.Running(), m.ID())
		}
	}
}
