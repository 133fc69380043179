package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/fs"
)

// TestServeRefusesALiveMount: a second daemon on a mount point a live
// daemon serves refuses with one clear line, and the first goes on
// serving its catalogue.
func TestServeRefusesALiveMount(t *testing.T) {
	needMount(t)
	tmp := t.TempDir()
	mnt := filepath.Join(tmp, "mnt")
	d := startDaemon(t, filepath.Join(tmp, "a"), mnt)
	img := randomFile(t, tmp, "one.img", 4096)
	mustRun(t, "cp", img, filepath.Join(mnt, "active")+"/")

	exe, _ := os.Executable()
	cmd := exec.Command(exe, "serve", "--data", filepath.Join(tmp, "b"), "--mount", mnt, "--listen", "")
	cmd.Env = append(os.Environ(), "GLIMPSE_RUN_MAIN=1")
	out, err := cmd.CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err == nil || len(lines) != 1 || !strings.HasPrefix(lines[0], "glimpse: ") || !strings.Contains(lines[0], "already mounted") {
		t.Fatalf("second serve on a live mount: %v, output %q: want one 'glimpse: ... already mounted' line", err, out)
	}
	mustRun(t, "cmp", img, filepath.Join(mnt, "active", "one.img"))
	if _, ok := run(t, "curl", "-sf", "http://"+d.addr+"/healthcheck"); !ok {
		t.Fatal("the first daemon stopped serving")
	}
}

// TestDeadDaemonsHiddenConnectionIsAborted: a daemon that no longer
// serves (stopped here, as a killed one held by the kernel is a zombie)
// with a client hanging in its mount, whose mount a lazy unmount then
// hid from mountinfo. glimpse abort-mount (what glimpse.service runs on
// stop) aborts its connection, and so does the next glimpse serve on the
// mount point: the hung client returns, the new daemon serves.
func TestDeadDaemonsHiddenConnectionIsAborted(t *testing.T) {
	needMount(t)
	exe, _ := os.Executable()
	tmp := t.TempDir()
	mnt := filepath.Join(tmp, "mnt")
	for _, by := range []string{"abort-mount", "serve"} {
		t.Run(by, func(t *testing.T) {
			d := startDaemon(t, filepath.Join(tmp, "data-"+by), mnt)
			record, err := fs.ConnRecord(mnt)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(record)
			if err != nil {
				t.Fatalf("the mount's connection is not recorded: %v", err)
			}
			var minor string
			var pid int
			if n, _ := fmt.Sscan(string(raw), &minor, &pid); n != 2 || pid != d.cmd.Process.Pid {
				t.Fatalf("record %q, daemon pid %d", raw, d.cmd.Process.Pid)
			}
			d.cmd.Process.Signal(syscall.SIGSTOP)
			client := exec.Command("stat", filepath.Join(mnt, "active"))
			if err := client.Start(); err != nil {
				t.Fatal(err)
			}
			clientDone := make(chan error, 1)
			go func() { clientDone <- client.Wait() }()
			waitingFile := filepath.Join("/sys/fs/fuse/connections", minor, "waiting")
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if b, _ := os.ReadFile(waitingFile); strings.TrimSpace(string(b)) != "0" && len(b) > 0 {
					break // the client's request waits for the stopped daemon
				}
				if time.Now().After(deadline) {
					t.Fatalf("no request waiting on connection %s", minor)
				}
			}
			if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
				t.Fatal(err)
			}
			if mounted(mnt) {
				t.Fatal("still in mountinfo after the lazy unmount")
			}
			select {
			case err := <-clientDone:
				t.Fatalf("the client returned before the abort: %v", err)
			default:
			}
			var next *daemon
			if by == "abort-mount" {
				cmd := exec.Command(exe, "abort-mount", mnt)
				cmd.Env = append(os.Environ(), "GLIMPSE_RUN_MAIN=1")
				if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "aborted") {
					t.Fatalf("glimpse abort-mount: %v %s", err, out)
				}
			} else {
				next = startDaemon(t, filepath.Join(tmp, "data-next"), mnt)
			}
			select {
			case <-clientDone:
			case <-time.After(10 * time.Second):
				t.Fatal("the hung client still hangs 10 s after the abort")
			}
			if _, err := os.Stat(record); by == "abort-mount" && !os.IsNotExist(err) {
				t.Errorf("the dead daemon's record is left: %v", err)
			}
			if next != nil {
				if _, ok := run(t, "ls", filepath.Join(mnt, "active")); !ok {
					t.Error("the next daemon does not serve its mount")
				}
				next.stop()
			}
			d.cmd.Process.Kill()
			<-d.exited
		})
	}
}
