package main

import (
	"bytes"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"glimpse", "version"}, {"glimpse", "--version"}} {
		var out bytes.Buffer
		app := newApp()
		app.Writer = &out
		if err := app.Run(args); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		for _, want := range []string{"glimpse", runtime.Version(), "ceph rbd: "} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%v printed %q, want it to mention %q", args, out.String(), want)
			}
		}
	}
}

// Under systemd (Type=notify) the daemon says READY=1 once both faces serve.
func TestServeNotifiesSystemd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	serveInProcess(t, serveOptions{})
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 256)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no notification on $NOTIFY_SOCKET: %v", err)
	}
	if got := string(buf[:n]); got != "READY=1" {
		t.Fatalf("notification %q, want READY=1", got)
	}
}
