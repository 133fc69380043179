package swift_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/backend/backendtest"
	"github.com/glimpse-project/glimpse/backend/swift"
)

// The tests run against a real Swift that scripts/swift starts on loopback
// ports chosen here, once per test binary, and stops at the end (only what
// it started). Without the Debian packages the tests skip, unless CI is set
// and GLIMPSE_TEST_STORES names swift: then they fail.

const segSize = 1 << 20 // Swift rate-limits reading segments under 1 MiB

// server is the Swift the tests share.
type server struct{ *backendtest.ScriptServer }

var srv = server{backendtest.SwiftServer("../../scripts/swift")}

func TestMain(m *testing.M) {
	if os.Getenv("GLIMPSE_TEST_CRASH_AUTH") != "" {
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

func (s server) authURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/auth/v1.0", s.Port(0))
}

func (s server) config(container, prefix string) swift.Config {
	return swift.Config{
		Container:   container,
		Prefix:      prefix,
		SegmentSize: segSize,
		AuthURL:     s.authURL(),
		User:        "test:tester",
		Key:         "testing",
		Timeout:     30 * time.Second,
	}
}

func randomName(t testing.TB) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "t" + hex.EncodeToString(b[:])
}

func open(t testing.TB, cfg swift.Config) *swift.Swift {
	t.Helper()
	s, err := swift.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	s := need(t)
	t.Logf("swift started in %v", s.Started().Round(100*time.Millisecond))
	for _, prefix := range []string{"", "images/"} {
		t.Run(fmt.Sprintf("prefix=%q", prefix), func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T) backend.Backend {
				return open(t, s.config(randomName(t), prefix))
			})
		})
	}
}

func randomBytes(t *testing.T, n int) []byte {
	p := make([]byte, n)
	if _, err := rand.Read(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// segments lists the segment container.
func segments(t *testing.T, st *swift.Swift, cfg swift.Config) []string {
	t.Helper()
	names, err := st.Connection().ObjectNamesAll(context.Background(), cfg.Container+"_segments", nil)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func keys(t *testing.T, b backend.Backend) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	if err := b.List(context.Background(), func(i backend.Info) error { m[i.Key] = i.Size; return nil }); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestLargeObject checks what the conformance suite cannot see: an object
// over one segment is an SLO in segments, listed with its full size, read
// across segment boundaries, and its segments go with Replace and Delete.
func TestLargeObject(t *testing.T) {
	s := need(t)
	ctx := context.Background()
	cfg := s.config(randomName(t), "p/")
	st := open(t, cfg)
	data := randomBytes(t, 5*segSize/2)
	if err := backendtest.Put(ctx, st, "big", data); err != nil {
		t.Fatal(err)
	}
	if n := len(segments(t, st, cfg)); n != 3 {
		t.Fatalf("%d segments, want 3", n)
	}
	if got := keys(t, st); got["big"] != int64(len(data)) || len(got) != 1 {
		t.Fatalf("list: %v, want big with %d bytes", got, len(data))
	}
	r, err := st.Open(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 1000)
	if _, err := r.ReadAt(p, segSize-500); err != nil || !bytes.Equal(p, data[segSize-500:segSize+500]) {
		t.Fatalf("read across a segment boundary: %v", err)
	}
	// Sequential reads (the streaming path), then a random one.
	got := make([]byte, 0, len(data))
	q := make([]byte, 100_000)
	for off := int64(0); off < int64(len(data)); {
		n, err := r.ReadAt(q, off)
		got = append(got, q[:n]...)
		off += int64(n)
		if err != nil && off < int64(len(data)) {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatal("sequential read differs")
	}
	if _, err := r.ReadAt(p, 123); err != nil || !bytes.Equal(p, data[123:1123]) {
		t.Fatalf("random read after sequential ones: %v", err)
	}
	r.Close()

	// Replacing an SLO with another removes the old segments.
	data2 := randomBytes(t, 3*segSize/2)
	if err := backendtest.Put(ctx, st, "big", data2); err != nil {
		t.Fatal(err)
	}
	if n := len(segments(t, st, cfg)); n != 2 {
		t.Fatalf("after replace: %d segments, want 2", n)
	}
	if b, err := backendtest.Get(ctx, st, "big"); err != nil || !bytes.Equal(b, data2) {
		t.Fatalf("after replace: %v", err)
	}
	if err := st.Delete(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	if segs := segments(t, st, cfg); len(segs) != 0 {
		t.Fatalf("after delete: segments left: %v", segs)
	}
}

// TestAbortRemovesSegments: Abort after segments went up, and
// AbortIncomplete after a writer that uploaded segments and was abandoned
// (a case the conformance suite's AbortIncomplete, which writes less than a
// segment, does not reach).
func TestAbortRemovesSegments(t *testing.T) {
	s := need(t)
	ctx := context.Background()
	cfg := s.config(randomName(t), "")
	st := open(t, cfg)
	for _, abandon := range []bool{false, true} {
		w, err := st.Create(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(randomBytes(t, 3*segSize+10)); err != nil {
			t.Fatal(err)
		}
		if abandon {
			// Let the segment upload in flight land, as a crash after it would.
			if err := backendtest.Put(ctx, st, "kept", []byte("kept")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return len(segments(t, st, cfg)) >= 3 })
			if err := st.AbortIncomplete(ctx); err != nil {
				t.Fatal(err)
			}
		} else if err := w.Abort(ctx); err != nil {
			t.Fatal(err)
		}
		if segs := segments(t, st, cfg); len(segs) != 0 {
			t.Fatalf("abandon=%v: segments left: %v", abandon, segs)
		}
	}
	if got := keys(t, st); len(got) != 1 || got["kept"] != 4 {
		t.Fatalf("list: %v, want only kept", got)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServerDiesMidUpload stops the whole Swift while an upload streams in:
// the writer fails, and after a restart AbortIncomplete leaves nothing of it.
func TestServerDiesMidUpload(t *testing.T) {
	s := need(t)
	ctx := context.Background()
	cfg := s.config(randomName(t), "")
	st := open(t, cfg)
	if err := backendtest.Put(ctx, st, "kept", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	w, err := st.Create(ctx, "doomed")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(randomBytes(t, 2*segSize+1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(segments(t, st, cfg)) >= 2 })
	if out, err := s.Run("stop", "--keep"); err != nil {
		t.Fatalf("stop: %v\n%s", err, out)
	}
	t0 := time.Now()
	chunk := randomBytes(t, segSize)
	var werr error
	for i := 0; i < 4 && werr == nil; i++ {
		_, werr = w.Write(chunk)
	}
	if werr == nil {
		werr = w.Commit(ctx)
	}
	if werr == nil {
		t.Fatal("writing to a stopped Swift succeeded")
	}
	t.Logf("writer failed after %v: %v", time.Since(t0).Round(time.Millisecond), werr)
	t0 = time.Now()
	if out, err := s.Run("start"); err != nil {
		t.Fatalf("restart: %v\n%s", err, out)
	}
	t.Logf("swift restarted in %v", time.Since(t0).Round(100*time.Millisecond))
	// A new process would open the store afresh.
	st2 := open(t, cfg)
	if err := st2.AbortIncomplete(ctx); err != nil {
		t.Fatal(err)
	}
	if segs := segments(t, st2, cfg); len(segs) != 0 {
		t.Fatalf("segments left after AbortIncomplete: %v", segs)
	}
	if got := keys(t, st2); len(got) != 1 || got["kept"] != 4 {
		t.Fatalf("list: %v, want only kept", got)
	}
	if _, err := st2.Stat(ctx, "doomed"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("stat doomed: %v", err)
	}
	w.Abort(ctx) // the dead writer's abort is harmless now
}

func TestOpenBadCredentials(t *testing.T) {
	s := need(t)
	cfg := s.config(randomName(t), "")
	cfg.Key = "wrong"
	if _, err := swift.Open(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "authenticate") {
		t.Fatalf("open with a wrong key: %v", err)
	}
}

// crashHelper is the process TestKilledMidUpload kills: it starts an upload
// into the container it is given, waits until segments of it are stored,
// says so on stdout, and waits to be killed.
func crashHelper() {
	cfg := swift.Config{
		Container: os.Getenv("GLIMPSE_TEST_CRASH_CONTAINER"), SegmentSize: segSize,
		AuthURL: os.Getenv("GLIMPSE_TEST_CRASH_AUTH"), User: "test:tester", Key: "testing",
	}
	ctx := context.Background()
	fail := func(err error) {
		fmt.Println(err)
		os.Exit(1)
	}
	st, err := swift.Open(ctx, cfg)
	if err != nil {
		fail(err)
	}
	w, err := st.Create(ctx, "crashed")
	if err != nil {
		fail(err)
	}
	if _, err := w.Write(make([]byte, 3*segSize+1)); err != nil {
		fail(err)
	}
	for {
		names, err := st.Connection().ObjectNamesAll(ctx, cfg.Container+"_segments", nil)
		if err != nil {
			fail(err)
		}
		if len(names) >= 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Println("written")
	select {}
}

// TestKilledMidUpload: a process killed (SIGKILL) mid-upload leaves
// segments; a new process's AbortIncomplete removes them and lists nothing
// of the upload.
func TestKilledMidUpload(t *testing.T) {
	s := need(t)
	ctx := context.Background()
	cfg := s.config(randomName(t), "")
	st := open(t, cfg)
	if err := backendtest.Put(ctx, st, "kept", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GLIMPSE_TEST_CRASH_AUTH="+s.authURL(), "GLIMPSE_TEST_CRASH_CONTAINER="+cfg.Container)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 200)
	n, _ := out.Read(line)
	cmd.Process.Kill()
	cmd.Wait()
	if string(line[:n]) != "written\n" {
		t.Fatalf("helper: %q", line[:n])
	}
	if len(segments(t, st, cfg)) < 2 {
		t.Fatal("the killed upload left no segments to clean up")
	}
	st2 := open(t, cfg)
	if err := st2.AbortIncomplete(ctx); err != nil {
		t.Fatal(err)
	}
	if segs := segments(t, st2, cfg); len(segs) != 0 {
		t.Fatalf("segments left after AbortIncomplete: %v", segs)
	}
	if got := keys(t, st2); len(got) != 1 || got["kept"] != 4 {
		t.Fatalf("list: %v, want only kept", got)
	}
}
