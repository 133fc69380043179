package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// stopMinIO stops the test's MinIO with SIGSTOP: it keeps its sockets, so
// connections are accepted and requests taken, but nothing is answered.
// The returned function continues it (SIGCONT); it also runs at cleanup.
func stopMinIO(t *testing.T) (resume func()) {
	t.Helper()
	pid, _ := strconv.Atoi(os.Getenv("MINIO_TEST_PID"))
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	resume = func() {
		if stopped {
			syscall.Kill(pid, syscall.SIGCONT)
			stopped = false
		}
	}
	t.Cleanup(resume)
	return resume
}

// incompleteUploads lists the multipart uploads in bucket.
func incompleteUploads(t *testing.T, c *minio.Client, bucket string) []string {
	t.Helper()
	var ids []string
	for u := range c.ListIncompleteUploads(context.Background(), bucket, "", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		ids = append(ids, u.Key+"/"+u.UploadID)
	}
	return ids
}

// writeMiB writes n MiB of zeros to f.
func writeMiB(t *testing.T, f *os.File, n int) {
	t.Helper()
	chunk := make([]byte, 1<<20)
	for i := 0; i < n; i++ {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
}

// The S3 server stops answering (SIGSTOP) in the middle of a copy into the
// mount: close fails with EIO within a few --store-timeout periods instead
// of hanging, the image ends killed with the reason, the daemon serves ls
// and REST meanwhile, reading an image while the server is stopped fails
// (EIO through the mount, 503 through REST) instead of hanging, and once the
// server continues everything else reads as before and nothing of the
// killed upload stays in the bucket.
func TestServeS3Stalls(t *testing.T) {
	needMount(t)
	client := startMinIO(t)
	tmp := t.TempDir()
	data, mnt := filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	const storeTimeout = 2 * time.Second
	// Each stalled step costs one timeout; a close crosses a few (the
	// streamed part, the spool's retry, the removal of what was written).
	const bound = 8 * storeTimeout
	d := startDaemon(t, data, mnt, "--store", "s3://images", "--store-timeout", storeTimeout.String())
	r := rest{t: t, base: "http://" + d.addr}
	kept := randomFile(t, tmp, "kept.img", 1<<20)
	mustRun(t, "cp", kept, filepath.Join(mnt, "active")+"/")
	keptID := xattr(t, filepath.Join(mnt, "active", "kept.img"), "id")

	f, err := os.Create(filepath.Join(mnt, "active", "doomed.img"))
	if err != nil {
		t.Fatal(err)
	}
	writeMiB(t, f, 20) // past the first 16 MiB part: a multipart upload is under way
	resume := stopMinIO(t)
	start := time.Now()
	closed := make(chan error, 1)
	go func() {
		chunk := make([]byte, 1<<20)
		for i := 0; i < 20; i++ {
			if _, err := f.Write(chunk); err != nil {
				break // close must fail in any case
			}
		}
		closed <- f.Close()
	}()

	// The daemon serves everyone else while the writer waits on the store.
	if got := ls(t, filepath.Join(mnt, "active")); fmt.Sprint(got) != "[kept.img]" {
		t.Errorf("active/ while the store is stopped: %v", got)
	}
	if st, body := r.do("GET", "/v2/images", "", nil); st != http.StatusOK || !strings.Contains(string(body), keptID) {
		t.Errorf("REST list while the store is stopped: %d %s", st, body)
	}

	select {
	case err = <-closed:
	case <-time.After(5 * bound): // a hang; fail instead of waiting forever
		t.Fatalf("close still blocked %v after the store stopped", 5*bound)
	}
	if d := time.Since(start); d > bound {
		t.Errorf("write and close took %v with the store stopped, want under %v", d, bound)
	} else {
		t.Logf("write and close failed after %v (store timeout %v)", d.Round(time.Millisecond), storeTimeout)
	}
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("close with the store stopped: %v, want EIO", err)
	}
	killed := filepath.Join(mnt, "killed", "doomed.img")
	if reason := xattr(t, killed, "glimpse.error"); !strings.Contains(reason, "no progress") {
		t.Errorf("kill reason %q, want it to say the store made no progress", reason)
	}

	// Reads of an active image fail within the bound too.
	start = time.Now()
	if _, err := os.ReadFile(filepath.Join(mnt, "active", "kept.img")); !errors.Is(err, syscall.EIO) {
		t.Errorf("read with the store stopped: %v, want EIO", err)
	}
	st, body := r.do("GET", "/v2/images/"+keptID+"/file", "", nil)
	r.wantGlanceError("download with the store stopped", st, body, http.StatusServiceUnavailable, "image store unavailable")
	if d := time.Since(start); d > bound {
		t.Errorf("two reads took %v with the store stopped, want under %v", d, bound)
	} else {
		t.Logf("a read through the mount and one through REST failed after %v together", d.Round(time.Millisecond))
	}
	resp, err := http.Get("http://" + d.addr + "/healthcheck")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthcheck while the store is stopped: %v %v", resp, err)
	}
	resp.Body.Close()

	resume()
	mustRun(t, "cmp", kept, filepath.Join(mnt, "active", "kept.img"))
	if keys := objects(t, client, "images"); fmt.Sprint(keys) != "["+keptID+"]" {
		t.Fatalf("bucket after the stall: %v", keys)
	}
	// minio-go's abort of the stalled multipart upload was waiting on the
	// stopped server; it lands once the server continues (or at the next
	// start, AbortIncomplete).
	deadline := time.Now().Add(90 * time.Second)
	for up := incompleteUploads(t, client, "images"); len(up) != 0; up = incompleteUploads(t, client, "images") {
		if time.Now().After(deadline) {
			t.Fatalf("multipart uploads left after the stall: %v", up)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// And the store takes new images again.
	again := randomFile(t, tmp, "again.img", 1<<20)
	mustRun(t, "cp", again, filepath.Join(mnt, "active")+"/")
	mustRun(t, "cmp", again, filepath.Join(mnt, "active", "again.img"))
}

// killingReader gives n bytes, then calls fault once and gives m more:
// a REST upload body during which the store goes away.
type killingReader struct {
	n, m  int
	fault func()
}

func (k *killingReader) Read(p []byte) (int, error) {
	if k.n == 0 && k.fault != nil {
		k.fault()
		k.fault = nil
	}
	left := &k.n
	if k.n == 0 {
		left = &k.m
	}
	if *left == 0 {
		return 0, io.EOF
	}
	c := min(len(p), *left)
	clear(p[:c])
	*left -= c
	return c, nil
}

// REST on store faults: an upload during which the S3 server is killed
// answers 503 with Glance's error body and kills the image with the reason;
// a download while the server is down answers 503; the daemon keeps
// serving; once the server is back the other images download as before and
// nothing of the killed upload is in the bucket.
func TestServeRESTStoreGoesAway(t *testing.T) {
	client := startMinIO(t)
	data := filepath.Join(t.TempDir(), "data")
	d := startDaemonREST(t, data, "--store", "s3://images", "--store-timeout", "5s")
	r := rest{t: t, base: "http://" + d.addr}
	kept := bytes.Repeat([]byte("kept"), 256<<10)
	keptID := r.create("kept.img")
	if st, body := r.upload(keptID, bytes.NewReader(kept)); st != http.StatusNoContent {
		t.Fatalf("upload: %d %s", st, body)
	}

	doomed := r.create("doomed.img")
	var restart func()
	body := &killingReader{n: 20 << 20, m: 20 << 20, fault: func() {
		r.waitSaving(doomed)
		restart = killMinIO(t)
	}}
	st, answer := r.upload(doomed, body)
	r.wantGlanceError("upload while the store dies", st, answer, http.StatusServiceUnavailable, "image store unavailable")
	img := r.image(doomed)
	if img["status"] != "killed" || img["glimpse.error"] == nil || img["glimpse.error"] == "" {
		t.Fatalf("image after the store died: status %v, reason %v", img["status"], img["glimpse.error"])
	}
	st, answer = r.do("GET", "/v2/images/"+keptID+"/file", "", nil)
	r.wantGlanceError("download with the store down", st, answer, http.StatusServiceUnavailable, "image store unavailable")
	if st, answer := r.do("GET", "/v2/images", "", nil); st != http.StatusOK || !strings.Contains(string(answer), keptID) {
		t.Fatalf("list with the store down: %d %s", st, answer)
	}

	restart()
	if st, got := r.do("GET", "/v2/images/"+keptID+"/file", "", nil); st != http.StatusOK || !bytes.Equal(got, kept) {
		t.Fatalf("download once the store is back: %d, equal %v", st, bytes.Equal(got, kept))
	}
	if keys := objects(t, client, "images"); fmt.Sprint(keys) != "["+keptID+"]" {
		t.Fatalf("bucket after the kill: %v", keys)
	}
}

// startDaemonREST starts the daemon with the REST listener only.
func startDaemonREST(t *testing.T, data string, extra ...string) *daemon {
	t.Helper()
	return startDaemon(t, data, "", extra...)
}

// smallFilesystem mounts a tmpfs of size bytes for the test: a real
// filesystem that runs out of space.
func smallFilesystem(t *testing.T, size int) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// filesUnder lists the regular files under dir.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			files = append(files, strings.TrimPrefix(p, dir+"/"))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// The file store runs out of space: cp gets ENOSPC (from write or close),
// the image ends killed with the reason and leaves no partial file, the
// other images read as before, a smaller image still fits, and the same
// through REST answers Glance's 413 for a full store.
func TestServeFileStoreFull(t *testing.T) {
	needMount(t)
	const fsSize = 8 << 20
	storeDir := filepath.Join(smallFilesystem(t, fsSize), "images")
	tmp := t.TempDir()
	data, mnt := filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	d := startDaemon(t, data, mnt, "--store", "file://"+storeDir)
	r := rest{t: t, base: "http://" + d.addr}
	kept := randomFile(t, tmp, "kept.img", 1<<20)
	mustRun(t, "cp", kept, filepath.Join(mnt, "active")+"/")
	keptID := xattr(t, filepath.Join(mnt, "active", "kept.img"), "id")

	big := randomFile(t, tmp, "big.img", 2*fsSize)
	out, ok := run(t, "cp", big, filepath.Join(mnt, "active")+"/")
	if ok || !strings.Contains(out, "No space left on device") {
		t.Fatalf("cp onto a full store: ok=%v %s, want ENOSPC", ok, out)
	}
	killed := filepath.Join(mnt, "killed", "big.img")
	if reason := xattr(t, killed, "glimpse.error"); !strings.Contains(reason, "storage media is full") {
		t.Errorf("kill reason %q, want it to say the store is full", reason)
	}
	if files := filesUnder(t, storeDir); fmt.Sprint(files) != "["+keptID+"]" {
		t.Errorf("store after the full copy: %v, want only the kept image", files)
	}
	mustRun(t, "cmp", kept, filepath.Join(mnt, "active", "kept.img"))

	// The same through REST: Glance's StorageFull is 413.
	id := r.create("big-rest.img")
	content, err := os.ReadFile(big)
	if err != nil {
		t.Fatal(err)
	}
	st, body := r.upload(id, bytes.NewReader(content))
	r.wantGlanceError("REST upload onto a full store", st, body, http.StatusRequestEntityTooLarge, "storage media is full")
	if img := r.image(id); img["status"] != "killed" {
		t.Errorf("REST image after a full store: %v", img["status"])
	}
	if files := filesUnder(t, storeDir); fmt.Sprint(files) != "["+keptID+"]" {
		t.Errorf("store after the full REST upload: %v, want only the kept image", files)
	}

	// Room is left for smaller images, through both faces.
	small := randomFile(t, tmp, "small.img", 2<<20)
	mustRun(t, "cp", small, filepath.Join(mnt, "active")+"/")
	mustRun(t, "cmp", small, filepath.Join(mnt, "active", "small.img"))
	restRoundTrip(t, d.addr, content[:2<<20], nil)
	mustRun(t, "cmp", kept, filepath.Join(mnt, "active", "kept.img"))
}

// storeGoesAwayMidCopy is the store dying in the middle of a copy into the
// mount, for any store: down() takes the store away and returns the
// function that brings it back; stored(keptID) lists what the store holds
// behind the daemon's back. close fails with EIO, the image ends killed
// with the reason, the daemon serves ls and REST meanwhile, and once the
// store is back the kept image reads as before and, after the next start
// of the daemon at the latest (recovery), the store holds only the kept
// image.
func storeGoesAwayMidCopy(t *testing.T, down func() (up func()), stored func(keptID string) []string, store ...string) {
	t.Helper()
	tmp := t.TempDir()
	data, mnt := filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	d := startDaemon(t, data, mnt, store...)
	r := rest{t: t, base: "http://" + d.addr}
	kept := randomFile(t, tmp, "kept.img", 1<<20)
	mustRun(t, "cp", kept, filepath.Join(mnt, "active")+"/")
	keptID := xattr(t, filepath.Join(mnt, "active", "kept.img"), "id")
	before := fmt.Sprint(stored(keptID))

	f, err := os.Create(filepath.Join(mnt, "active", "doomed.img"))
	if err != nil {
		t.Fatal(err)
	}
	writeMiB(t, f, 20) // past the first segment or object: the upload is under way
	up := down()
	chunk := make([]byte, 1<<20)
	for i := 0; i < 4; i++ {
		if _, err := f.Write(chunk); err != nil {
			break // may fail already; close must
		}
	}
	if err := f.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("close with the store gone: %v, want EIO", err)
	}
	if reason := xattr(t, filepath.Join(mnt, "killed", "doomed.img"), "glimpse.error"); reason == "" {
		t.Fatal("killed without a reason")
	}
	if got := ls(t, filepath.Join(mnt, "active")); fmt.Sprint(got) != "[kept.img]" {
		t.Fatalf("active/ while the store is away: %v", got)
	}
	if st, body := r.do("GET", "/v2/images", "", nil); st != http.StatusOK || !strings.Contains(string(body), keptID) {
		t.Fatalf("REST list while the store is away: %d %s", st, body)
	}

	up()
	mustRun(t, "cmp", kept, filepath.Join(mnt, "active", "kept.img"))
	if after := fmt.Sprint(stored(keptID)); after != before {
		// What the killed upload left while the store was away goes at
		// the next start.
		t.Logf("store once back: %s (before the fault: %s); restarting the daemon", after, before)
		d.stop()
		startDaemon(t, data, mnt, store...)
		if after := fmt.Sprint(stored(keptID)); after != before {
			t.Fatalf("store after the next start: %s, want %s", after, before)
		}
		mustRun(t, "cmp", kept, filepath.Join(mnt, "active", "kept.img"))
	}
}
