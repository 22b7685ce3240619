package agent_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcdpulse/etcdpulse/agent"
)

// A program that embeds etcd attaches an agent to its member and serves
// the agent's metrics and health under a prefix of its own.
func Example() {
	dir, err := os.MkdirTemp("", "etcdpulse-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	e := startMember(filepath.Join(dir, "etcd")) // embed.StartEtcd on loopback
	defer e.Close()
	<-e.Server.ReadyNotify()

	a, err := agent.Attach(e, agent.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	defer a.Stop()

	mux := http.NewServeMux()
	mux.Handle("/etcdpulse/", http.StripPrefix("/etcdpulse", a.Handler()))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go http.Serve(l, mux)

	for start := time.Now(); time.Since(start) < time.Minute; time.Sleep(100 * time.Millisecond) {
		if line := sample("http://"+l.Addr().String()+"/etcdpulse/metrics", "etcdpulse_cluster_fault_tolerance"); line != "" {
			fmt.Println(line)
			break
		}
	}
	// Output: etcdpulse_cluster_fault_tolerance 0
}

// startMember starts a one-member etcd on free loopback ports, again on
// new ones if another process took one first.
func startMember(dir string) *embed.Etcd {
	for attempt := 1; ; attempt++ {
		cfg := embed.NewConfig()
		cfg.Dir = dir
		cfg.LogLevel = "error"
		client, peer := loopbackURL(), loopbackURL()
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
		e, err := embed.StartEtcd(cfg)
		if err == nil {
			return e
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == 5 {
			log.Fatal(err)
		}
		os.RemoveAll(dir)
	}
}

// loopbackURL is a loopback port free a moment ago.
func loopbackURL() url.URL {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}
}

// sample returns the line of a metric without labels, "" while absent.
func sample(u, name string) string {
	resp, err := http.Get(u)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), name+" ") {
			return s.Text()
		}
	}
	return ""
}
