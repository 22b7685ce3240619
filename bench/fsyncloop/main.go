//go:build linux

// Command fsyncloop is the bare write+fdatasync loop, in Go, behind the
// fsync probe's yield (probes.fsyncYieldEvery): with -mode plain it reads
// a higher tail than the same loop in C (c/loop.c) or fio; with -mode raw
// (no scheduler involvement: unsafe for a probe, since a hung disk would
// then hold a P) or -mode yield it reads like them. bench/fsync-loops.sh
// runs them interleaved.
//
//	fsyncloop -dir DIR -mode plain|raw|yield [-syncs 10029]
//
// Output: one line, "go-MODE p50_us=X p99_us=Y".
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	dir := flag.String("dir", "", "directory on the disk under test")
	mode := flag.String("mode", "plain", "plain: unix.Fdatasync; raw: syscall.RawSyscall; yield: plain, with runtime.Gosched every 1 ms")
	n := flag.Int("syncs", 10029, "write+fdatasync pairs (22 MiB / 2300 B, as etcd's fio command)")
	flag.Parse()
	if *dir == "" || (*mode != "plain" && *mode != "raw" && *mode != "yield") {
		fmt.Fprintln(os.Stderr, "fsyncloop: -dir is required and -mode must be plain, raw or yield")
		os.Exit(2)
	}
	if err := run(*dir, *mode, *n); err != nil {
		fmt.Fprintln(os.Stderr, "fsyncloop:", err)
		os.Exit(1)
	}
}

func run(dir, mode string, n int) error {
	const writeSize = 2300
	path := filepath.Join(dir, "fsyncloop.tmp")
	fd, err := unix.Open(path, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer os.Remove(path)
	defer unix.Close(fd)
	if err := unix.Fallocate(fd, 0, 0, int64(n*writeSize)); err != nil {
		return fmt.Errorf("fallocate: %w", err)
	}
	if err := unix.Fdatasync(fd); err != nil {
		return err
	}
	buf := make([]byte, writeSize)
	ds := make([]time.Duration, n)
	last := time.Now()
	for i := range n {
		if _, err := unix.Write(fd, buf); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		start := time.Now()
		if mode == "raw" {
			if _, _, errno := syscall.RawSyscall(unix.SYS_FDATASYNC, uintptr(fd), 0, 0); errno != 0 {
				return errno
			}
		} else if err := unix.Fdatasync(fd); err != nil {
			return err
		}
		ds[i] = time.Since(start)
		if mode == "yield" && time.Since(last) >= time.Millisecond {
			runtime.Gosched()
			last = time.Now()
		}
	}
	slices.Sort(ds)
	us := func(q float64) float64 { return float64(ds[int(q*float64(n)+0.999999)-1]) / 1e3 }
	fmt.Printf("go-%s p50_us=%.1f p99_us=%.1f\n", mode, us(0.50), us(0.99))
	return nil
}
