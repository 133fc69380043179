package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// processesNaming lists the processes whose command line holds arg.
func processesNaming(arg string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(cmdline, []byte(arg)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// serveInProcess runs the real daemon (runServe) in-process on a free loopback
// port (REST only unless o.mount is set), and waits for /healthcheck to
// answer 200. It returns the
// REST root URL; the daemon stops at the end of the test.
func serveInProcess(t *testing.T, o serveOptions) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if o.data == "" {
		o.data = filepath.Join(t.TempDir(), "data")
	}
	// o.mount "" (the zero value): REST only.
	o.listen = addr
	// The watchdog would be this test binary, which without
	// GLIMPSE_RUN_MAIN runs every test again (it did, outliving the run).
	o.noMountWatchdog = true
	if o.logLevel == "" {
		o.logLevel = "error"
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() { runErr = runServe(ctx, o); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if runErr != nil {
			t.Errorf("daemon: %v", runErr)
		}
		if o.mount != "" {
			if pids := processesNaming(o.mount); len(pids) > 0 {
				t.Errorf("processes %v outlive the in-process daemon of %s", pids, o.mount)
			}
		}
	})
	url := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("daemon exited before it was ready: %v", runErr)
		default:
		}
		resp, err := http.Get(url + "/healthcheck")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready on %s after 20s (last: %v)", addr, err)
		}
		// Poll, bounded by the deadline.
		<-time.After(20 * time.Millisecond)
	}
}
