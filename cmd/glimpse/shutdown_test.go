package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// loadUpload is one upload running while the daemon is told to stop.
type loadUpload struct {
	name  string
	id    string
	src   source
	acked bool
}

// startLoad starts n uploads through the mount and n over REST, of size
// bytes each, plus stalled REST uploads that send 2 MiB and then hang, and
// returns once every upload has written 1 MiB; there they wait until
// release, so that a signal sent meanwhile finds them all in flight. wait,
// called once the daemon has exited, blocks until all of them have ended.
func startLoad(t *testing.T, d *daemon, n, stalled, size int) (uploads []*loadUpload, release, wait func()) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	started := make(chan struct{}, 2*n+stalled)
	gate := make(chan struct{})
	progress := func(ev string) {
		if ev == "rest-progress" {
			started <- struct{}{}
			<-gate
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	for i := 0; i < n; i++ {
		b := content(int64(i), size)
		u := &loadUpload{name: fmt.Sprintf("mount%d", i), src: sourceOf(b)}
		uploads = append(uploads, u)
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := filepath.Join(d.mnt, "active", u.name)
			f, err := os.Create(path)
			if err != nil {
				t.Errorf("create %s: %v", u.name, err)
				started <- struct{}{}
				return
			}
			defer f.Close()
			id := make([]byte, 64)
			if k, err := syscall.Getxattr(path, "user.id", id); err == nil {
				mu.Lock()
				u.id = string(id[:k])
				mu.Unlock()
			}
			for off := 0; off < len(b); off += 256 << 10 {
				if off == 1<<20 {
					started <- struct{}{}
					<-gate
				}
				if _, err := f.Write(b[off:min(off+256<<10, len(b))]); err != nil {
					return
				}
			}
			if f.Close() == nil {
				mu.Lock()
				u.acked = true
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n+stalled; i++ {
		b := content(int64(100+i), size)
		u := &loadUpload{name: fmt.Sprintf("rest%d", i), src: sourceOf(b)}
		id, err := restCreate(ctx, d.addr, u.name)
		if err != nil {
			t.Fatal(err)
		}
		u.id = id
		uploads = append(uploads, u)
		var body io.Reader = &announcingReader{b: b, at: 1 << 20, emit: progress}
		if i >= n {
			body = io.MultiReader(&announcingReader{b: b[:2<<20], at: 1 << 20, emit: progress}, stall{ctx})
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if restUpload(ctx, d.addr, u.id, body) == nil {
				mu.Lock()
				u.acked = true
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < 2*n+stalled; i++ {
		select {
		case <-started:
		case <-time.After(60 * time.Second):
			t.Fatal("uploads did not get going")
		}
	}
	// wait is called once the daemon has exited: what is still blocked is a
	// stalled client, which gives up now.
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	return uploads, release, func() {
		release()
		cancel()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("uploads still blocked 30s after the daemon exited")
		}
	}
}

// stall is a body that sends nothing more until ctx ends: a client gone
// quiet in the middle of an upload.
type stall struct{ ctx context.Context }

func (s stall) Read([]byte) (int, error) {
	<-s.ctx.Done()
	return 0, errors.New("client gave up")
}

// SIGTERM while uploads stream in through the mount and REST: the daemon
// exits cleanly, each upload ended active with what was sent (when it was
// acknowledged) or killed with a reason, and the registry, opened by
// `glimpse scrub --data`, holds nothing in flight and no orphan.
func TestGracefulShutdownUnderLoad(t *testing.T) {
	needMount(t)
	tmp := t.TempDir()
	data, mnt := filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	d := startDaemon(t, data, mnt)
	uploads, release, wait := startLoad(t, d, 3, 0, 32<<20)
	d.cmd.Process.Signal(syscall.SIGTERM)
	waitShutdownBegun(t, d)
	release()
	select {
	case err := <-d.exited:
		if err != nil {
			t.Fatalf("daemon exit after SIGTERM: %v\n%s", err, d.log)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("daemon did not stop after SIGTERM:\n%s", d.log)
	}
	if mounted(mnt) {
		t.Fatalf("%s still mounted after SIGTERM", mnt)
	}
	wait()
	offlineScrub(t, data)

	d = startDaemon(t, data, mnt)
	checkRecovered(t, d.addr, data)
	var active, killed int
	for _, u := range uploads {
		if u.id == "" {
			t.Fatalf("upload %s has no id", u.name)
		}
		img := restGet(t, d.addr, u.id)
		switch {
		case img == nil:
			t.Fatalf("upload %s: image gone", u.name)
		case img.Status == "active" && img.holds(u.src):
			active++
		case img.Status == "active":
			t.Fatalf("upload %s: active without what was sent: %+v", u.name, img)
		case img.Status == "killed" && !u.acked:
			if reason := xattr(t, filepath.Join(mnt, "images", u.id), "glimpse.error"); reason == "" {
				t.Fatalf("upload %s killed without a reason", u.name)
			}
			killed++
		default:
			t.Fatalf("upload %s (acknowledged %v) is %s after a graceful shutdown", u.name, u.acked, img.Status)
		}
	}
	t.Logf("SIGTERM under %d uploads: %d finished active, %d killed with a reason", len(uploads), active, killed)
}

// A second SIGTERM while the first one's shutdown waits (on a REST upload
// whose client went quiet) exits at once; the next start opens the
// registry and recovers: nothing in flight, no orphan, and the images
// stored before are whole.
func TestSecondSignalUnderLoad(t *testing.T) {
	needMount(t)
	tmp := t.TempDir()
	data, mnt := filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	d := startDaemon(t, data, mnt)
	before := content(7, 3<<20)
	id, err := restCreate(context.Background(), d.addr, "before")
	if err != nil {
		t.Fatal(err)
	}
	if err := restUpload(context.Background(), d.addr, id, &announcingReader{b: before, at: len(before) + 1, emit: func(string) {}}); err != nil {
		t.Fatal(err)
	}
	_, _, wait := startLoad(t, d, 2, 1, 32<<20)
	d.cmd.Process.Signal(syscall.SIGTERM)
	waitShutdownBegun(t, d)
	sent := time.Now()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 130 {
			t.Fatalf("exit after a second SIGTERM: %v, want status 130\n%s", err, d.log)
		}
		t.Logf("second SIGTERM: exited after %s", time.Since(sent).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatalf("no exit 5s after a second SIGTERM\n%s", d.log)
	}
	if !strings.Contains(d.log.String(), "second signal") {
		t.Fatalf("no word of the second signal:\n%s", d.log)
	}
	wait()

	d = startDaemon(t, data, mnt)
	checkRecovered(t, d.addr, data)
	if img := restGet(t, d.addr, id); img == nil || img.Status != "active" || !img.holds(sourceOf(before)) {
		t.Fatalf("image stored before the forced exit: %+v", img)
	}
	d.stop()
	offlineScrub(t, data)
}

// waitShutdownBegun returns once the daemon, told to stop, no longer calls
// itself ready (it says so just before it kills the uploads in flight).
func waitShutdownBegun(t *testing.T, d *daemon) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + d.addr + "/healthcheck")
		if err != nil {
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("still ready 30s after SIGTERM")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An operator aborting a hung mount through fusectl (what the tests do when
// a SIGKILL left the daemon stuck in the kernel): the daemon notices the
// mount is gone and exits, and the next start recovers the stale mount
// point with the catalogue whole.
func TestAbortedFUSEConnection(t *testing.T) {
	needMount(t)
	tmp := t.TempDir()
	data, mnt := filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	d := startDaemon(t, data, mnt)
	b := content(3, 1<<20)
	if err := os.WriteFile(filepath.Join(mnt, "active", "kept.img"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := abortFUSE(mnt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("daemon still running 30s after its FUSE connection was aborted\n%s", d.log)
	}
	d = startDaemon(t, data, mnt)
	checkRecovered(t, d.addr, data)
	got, err := os.ReadFile(filepath.Join(mnt, "active", "kept.img"))
	if err != nil || sourceOf(got) != sourceOf(b) {
		t.Fatalf("image after the abort and a restart: %v", err)
	}
}
