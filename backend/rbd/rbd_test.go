//go:build ceph

package rbd_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cephrbd "github.com/ceph/go-ceph/rbd"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/backend/backendtest"
	"github.com/glimpse-project/glimpse/backend/rbd"
)

// The tests run against a real single-node Ceph (one mon, one bluestore OSD
// in a temp dir) that scripts/ceph starts on loopback, once per test binary,
// and stops at the end (only what it started). Without the Debian packages
// the tests skip, unless CI is set and GLIMPSE_TEST_STORES names rbd: then
// they fail.

// server is the Ceph the tests share.
type server struct{ *backendtest.ScriptServer }

var srv = server{backendtest.CephServer("../../scripts/ceph")}

func TestMain(m *testing.M) {
	if os.Getenv("GLIMPSE_TEST_CRASH_CONF") != "" {
		crashHelper()
		return
	}
	code := m.Run()
	if err := srv.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// need returns the running server, or skips or fails the test.
func need(t testing.TB) server {
	t.Helper()
	srv.Need(t)
	return srv
}

// conf is the ceph.conf clients use.
func (s server) conf() string { return filepath.Join(s.Dir(), "ceph", "ceph.conf") }

func randomName(t testing.TB) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "t" + hex.EncodeToString(b[:])
}

// config is a fresh, empty store: a namespace of its own in the pool
// "glimpse" (a new pool per test costs seconds of PG peering).
func (s server) config(ns string) rbd.Config {
	return rbd.Config{Pool: "glimpse", Namespace: ns, ConfFile: s.conf(), OpTimeout: 10 * time.Second, ChunkSize: 1 << 20}
}

func open(t testing.TB, cfg rbd.Config) *rbd.RBD {
	t.Helper()
	s, err := rbd.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	s := need(t)
	t.Logf("ceph started in %v", s.Started().Round(100*time.Millisecond))
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return open(t, s.config(randomName(t)))
	})
}

func randomBytes(t *testing.T, n int) []byte {
	p := make([]byte, n)
	if _, err := rand.Read(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func imageNames(t *testing.T, st *rbd.RBD) []string {
	t.Helper()
	names, err := cephrbd.GetImageNames(st.IOContext())
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// TestSnapshot: a committed image carries the protected snapshot "snap"
// that Ceph consumers clone from; while a clone uses it the image cannot be
// deleted, and after the clone goes it can.
func TestSnapshot(t *testing.T) {
	s := need(t)
	ctx := context.Background()
	st := open(t, s.config(randomName(t)))
	data := randomBytes(t, 3<<20+5)
	if err := backendtest.Put(ctx, st, "img", data); err != nil {
		t.Fatal(err)
	}
	if got := imageNames(t, st); fmt.Sprint(got) != "[img]" {
		t.Fatalf("images: %v", got)
	}
	img, err := cephrbd.OpenImage(st.IOContext(), "img", cephrbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := img.GetSnapshotNames()
	if err != nil || len(snaps) != 1 || snaps[0].Name != rbd.SnapName {
		t.Fatalf("snapshots: %v %v", snaps, err)
	}
	if prot, err := img.GetSnapshot(rbd.SnapName).IsProtected(); err != nil || !prot {
		t.Fatalf("snapshot protected: %v %v", prot, err)
	}
	if size, _ := img.GetSize(); size != uint64(len(data)) {
		t.Fatalf("image size %d, want %d", size, len(data))
	}
	img.Close()

	opts := cephrbd.NewRbdImageOptions()
	defer opts.Destroy()
	if err := cephrbd.CloneImage(st.IOContext(), "img", rbd.SnapName, st.IOContext(), "vm-disk", opts); err != nil {
		t.Fatal(err)
	}
	clone, err := cephrbd.OpenImageReadOnly(st.IOContext(), "vm-disk", cephrbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 1000)
	if _, err := clone.ReadAt(p, 2<<20); err != nil || !bytes.Equal(p, data[2<<20:2<<20+1000]) {
		t.Fatalf("read through the clone: %v", err)
	}
	clone.Close()
	if err := st.Delete(ctx, "img"); err == nil || !strings.Contains(err.Error(), "clones") {
		t.Fatalf("delete of a cloned image: %v, want an in-use error", err)
	}
	if b, err := backendtest.Get(ctx, st, "img"); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("image after refused delete: %v", err)
	}
	if err := cephrbd.RemoveImage(st.IOContext(), "vm-disk"); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "img"); err != nil {
		t.Fatal(err)
	}
	if got := imageNames(t, st); len(got) != 0 {
		t.Fatalf("images after delete: %v", got)
	}
}

// TestReplaceAndAbort: replacing leaves one image; Abort and
// AbortIncomplete leave no partial image, also after a writer wrote
// several chunks (more than the conformance suite's 4 KiB).
func TestReplaceAndAbort(t *testing.T) {
	s := need(t)
	ctx := context.Background()
	st := open(t, s.config(randomName(t)))
	for i := 0; i < 2; i++ {
		if err := backendtest.Put(ctx, st, "k", randomBytes(t, 2<<20)); err != nil {
			t.Fatal(err)
		}
	}
	w, err := st.Create(ctx, "aborted")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(randomBytes(t, 5<<20)); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	w, err = st.Create(ctx, "crashed")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(randomBytes(t, 5<<20)); err != nil {
		t.Fatal(err)
	}
	if err := st.AbortIncomplete(ctx); err != nil {
		t.Fatal(err)
	}
	if got := imageNames(t, st); fmt.Sprint(got) != "[k]" {
		t.Fatalf("images: %v, want [k]", got)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("a writer abandoned by AbortIncomplete still writes")
	}
}

// TestClusterDiesMidUpload stops the whole cluster while an upload streams
// in: the writer fails (after OpTimeout), and after a restart
// AbortIncomplete, run by a new client as after a daemon restart, leaves
// nothing of it.
func TestClusterDiesMidUpload(t *testing.T) {
	s := need(t)
	ctx := context.Background()
	cfg := s.config(randomName(t))
	st := open(t, cfg)
	if err := backendtest.Put(ctx, st, "kept", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	w, err := st.Create(ctx, "doomed")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(randomBytes(t, 3<<20)); err != nil {
		t.Fatal(err)
	}
	if out, err := s.Run("stop", "--keep"); err != nil {
		t.Fatalf("stop: %v\n%s", err, out)
	}
	t0 := time.Now()
	chunk := randomBytes(t, 1<<20)
	var werr error
	for i := 0; i < 4 && werr == nil; i++ {
		_, werr = w.Write(chunk)
	}
	if werr == nil {
		werr = w.Commit(ctx)
	}
	if werr == nil {
		t.Fatal("writing to a stopped cluster succeeded")
	}
	t.Logf("writer failed after %v: %v", time.Since(t0).Round(time.Millisecond), werr)
	t0 = time.Now()
	if out, err := s.Run("start"); err != nil {
		t.Fatalf("restart: %v\n%s", err, out)
	}
	t.Logf("ceph restarted in %v", time.Since(t0).Round(100*time.Millisecond))
	// The old client (this process's first store) is gone, as after a crash.
	w.Abort(ctx) // may fail or not; the partial image is the point
	st.Close()
	st2 := open(t, cfg)
	if err := st2.AbortIncomplete(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		got := imageNames(t, st2)
		if fmt.Sprint(got) == "[kept]" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("images after AbortIncomplete: %v, want [kept]", got)
		}
		time.Sleep(time.Second)
	}
	var keys []string
	if err := st2.List(ctx, func(i backend.Info) error { keys = append(keys, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(keys) != "[kept]" {
		t.Fatalf("list: %v", keys)
	}
	if _, err := st2.Stat(ctx, "doomed"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("stat doomed: %v", err)
	}
}

// crashHelper is the process TestKilledMidUpload kills: it starts an upload
// in the namespace it is given, says so on stdout, and waits to be killed.
func crashHelper() {
	cfg := rbd.Config{Pool: "glimpse", Namespace: os.Getenv("GLIMPSE_TEST_CRASH_NS"), ConfFile: os.Getenv("GLIMPSE_TEST_CRASH_CONF"), OpTimeout: 10 * time.Second}
	ctx := context.Background()
	st, err := rbd.Open(ctx, cfg)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	w, err := st.Create(ctx, "crashed")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	if _, err := w.Write(make([]byte, 9<<20)); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("written")
	select {}
}

// TestKilledMidUpload: a process killed (SIGKILL) while it writes an image
// leaves a partial image that its dead client still watches; after a
// restart AbortIncomplete returns at once and the image goes as soon as
// Ceph lets it (the watch timeout), and nothing of it is ever listed.
func TestKilledMidUpload(t *testing.T) {
	s := need(t)
	ctx := context.Background()
	cfg := s.config(randomName(t))
	st := open(t, cfg)
	if err := backendtest.Put(ctx, st, "kept", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GLIMPSE_TEST_CRASH_CONF="+cfg.ConfFile, "GLIMPSE_TEST_CRASH_NS="+cfg.Namespace)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 100)
	n, _ := out.Read(line)
	if string(line[:n]) != "written\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper: %q", line[:n])
	}
	names := imageNames(t, st)
	if len(names) != 2 || !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, rbd.PartialPrefix) }) {
		t.Fatalf("images while uploading: %v", names)
	}
	cmd.Process.Kill()
	cmd.Wait()
	t0 := time.Now()
	st2 := open(t, cfg)
	if err := st2.AbortIncomplete(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("AbortIncomplete returned after %v", time.Since(t0).Round(time.Millisecond))
	var keys []string
	if err := st2.List(ctx, func(i backend.Info) error { keys = append(keys, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(keys) != "[kept]" {
		t.Fatalf("list: %v", keys)
	}
	for fmt.Sprint(imageNames(t, st2)) != "[kept]" {
		if time.Since(t0) > 90*time.Second {
			t.Fatalf("partial image still there: %v", imageNames(t, st2))
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("partial image removed %v after the restart", time.Since(t0).Round(100*time.Millisecond))
}
