package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeQuotaAndStall: the serve flags for quotas and the body stall
// reach the daemon: cp past the byte quota fails with "No space left on
// device", the real glance CLI gets 413, and an upload that stalls is
// answered 408 and killed.
func TestServeQuotaAndStall(t *testing.T) {
	needMount(t)
	needTool(t, "cp")
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	d := startDaemon(t, filepath.Join(dir, "data"), mnt, "--quota-bytes", "1048576", "--quota-images", "4", "--body-stall-timeout", "2s")
	src := t.TempDir()
	mustRun(t, "cp", randomFile(t, src, "a.raw", 600<<10), filepath.Join(mnt, "active"))
	mustFail(t, "No space left on device", "cp", randomFile(t, src, "b.raw", 600<<10), filepath.Join(mnt, "active"))
	if reason := xattr(t, filepath.Join(mnt, "killed", "b.raw"), "glimpse.error"); !strings.Contains(reason, "will exceed the limit") {
		t.Fatalf("kill reason: %q", reason)
	}

	g := newGlanceCLI(t, "http://"+d.addr, "T")
	out, errs, ok := g.run("image-create", "--name", "c", "--disk-format", "raw", "--container-format", "bare", "--file", filepath.Join(src, "a.raw"))
	if ok || !strings.Contains(errs, "413") {
		t.Fatalf("glance upload past the quota: ok=%v\n%s%s", ok, out, errs)
	}
	// The fourth image: a, b (killed) and c exist.
	base := "http://" + d.addr + "/v2/images"
	create := func(name string) *http.Response {
		resp, err := http.Post(base, "application/json", strings.NewReader(`{"name": "`+name+`", "disk_format": "raw", "container_format": "bare"}`))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := create("d")
	var img struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&img); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("fourth image: %d %v", resp.StatusCode, err)
	}
	if resp := create("e"); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("fifth image: %d", resp.StatusCode)
	}

	// A client that sends part of a body and stalls.
	conn, err := net.Dial("tcp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "PUT /v2/images/%s/file HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\nabc", img.ID, d.addr)
	resp, err = http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("stalled upload: %v", err)
	}
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("stalled upload: %d", resp.StatusCode)
	}
	if st := xattr(t, filepath.Join(mnt, "images", img.ID), "status"); st != "killed" {
		t.Fatalf("stalled upload left the image %s", st)
	}
	d.stop()
}

func TestServeBadLimitFlags(t *testing.T) {
	exe, _ := os.Executable()
	for _, args := range [][]string{
		{"serve", "--quota-bytes", "-1", "--mount", ""},
		{"serve", "--quota-images", "lots", "--mount", ""},
		{"serve", "--body-stall-timeout", "soon", "--mount", ""},
	} {
		cmd := exec.Command(exe, args...)
		cmd.Env = append(os.Environ(), "GLIMPSE_RUN_MAIN=1", "GLIMPSE_DATA="+t.TempDir())
		out, err := cmd.CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if last := lines[len(lines)-1]; err == nil || !strings.HasPrefix(last, "glimpse: ") {
			t.Errorf("glimpse %v: err %v, output %q: want failure and a 'glimpse: ...' line", args, err, out)
		}
	}
}
