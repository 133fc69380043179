package s3_test

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/backend/backendtest"
	"github.com/glimpse-project/glimpse/backend/s3"
)

// Faults produced for real: the MinIO process is killed (SIGKILL) or
// stopped (SIGSTOP) under a running upload, or there is no server at all.
// Each gives the writer an error and leaves nothing visible; once the server
// is back, what was committed before is readable and AbortIncomplete clears
// what the fault left.

func faultConfig(m *minioServer) s3.Config {
	cfg := config(m)
	cfg.MaxRetries = 1 // fail at once instead of retrying for seconds
	return cfg
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestServerKilledMidUpload(t *testing.T) {
	m := ownMinio(t)
	s := open(t, faultConfig(m))
	ctx := timeout(t, 2*time.Minute)
	kept := []byte("committed before the crash")
	if err := backendtest.Put(ctx, s, "kept", kept); err != nil {
		t.Fatal(err)
	}
	w, err := s.Create(ctx, "victim")
	if err != nil {
		t.Fatal(err)
	}
	if err := writeN(w, 3*testPart); err != nil {
		t.Fatal(err)
	}
	m.kill()

	// The writer must see the failure: at some Write, or at Commit.
	start := time.Now()
	err = writeN(w, 20*testPart)
	if err == nil {
		err = w.Commit(ctx)
	}
	if err == nil {
		t.Fatal("upload to a killed server succeeded")
	}
	t.Logf("writer's error after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("a dead server reported as a missing object: %v", err)
	}
	if err := w.Abort(ctx); err != nil {
		t.Fatal(err)
	}

	if err := m.start(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "victim"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("half-written object after restart: stat %v, want ErrNotFound", err)
	}
	got, err := backendtest.Get(ctx, s, "kept")
	if err != nil || string(got) != string(kept) {
		t.Fatalf("object committed before the crash: %q, %v", got, err)
	}
	t.Logf("incomplete uploads after restart: %v", incomplete(t, s))
	if err := s.AbortIncomplete(ctx); err != nil {
		t.Fatal(err)
	}
	if up := incomplete(t, s); len(up) != 0 {
		t.Fatalf("after AbortIncomplete: %v", up)
	}
}

func TestConnectionRefused(t *testing.T) {
	needMinio(t) // only for the binary-less skip; the server here is absent
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	cfg := s3.Config{Endpoint: addr, Bucket: "nobody-home", AccessKey: "a", SecretKey: "b", Region: "us-east-1", PathStyle: true, MaxRetries: 1}
	start := time.Now()
	_, err = s3.Open(timeout(t, 30*time.Second), cfg)
	if err == nil {
		t.Fatal("open with no server succeeded")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("open: %v, want it to wrap ECONNREFUSED", err)
	}
	t.Logf("open failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
}

// Every operation on a store whose server went away fails with an error
// that is not ErrNotFound (a missing server must not look like a missing
// image), and works again once the server is back.
func TestServerGone(t *testing.T) {
	m := ownMinio(t)
	s := open(t, faultConfig(m))
	ctx := timeout(t, 2*time.Minute)
	if err := backendtest.Put(ctx, s, "kept", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	r, err := s.Open(ctx, "kept")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m.kill()

	notNotFound := func(op string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s with the server gone succeeded", op)
		} else if errors.Is(err, backend.ErrNotFound) {
			t.Errorf("%s: a dead server reported as a missing object: %v", op, err)
		}
	}
	_, err = s.Stat(ctx, "kept")
	notNotFound("stat", err)
	_, err = s.Open(ctx, "kept")
	notNotFound("open", err)
	_, err = r.ReadAt(make([]byte, 4), 0)
	notNotFound("read", err)
	notNotFound("put", backendtest.Put(ctx, s, "new", []byte("new")))
	notNotFound("delete", s.Delete(ctx, "kept"))
	notNotFound("list", s.List(ctx, func(backend.Info) error { return nil }))
	notNotFound("abort incomplete", s.AbortIncomplete(ctx))

	if err := m.start(); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 4)
	if _, err := r.ReadAt(p, 0); err != nil || string(p) != "kept" {
		t.Fatalf("read after restart: %q %v", p, err)
	}
	if _, err := s.Stat(ctx, "new"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("failed put visible after restart: %v", err)
	}
}

// A server that stops answering (SIGSTOP) under a running upload: Commit
// returns when its context ends, and once the server answers again Abort
// clears the multipart upload.
func TestServerStalled(t *testing.T) {
	m := ownMinio(t)
	s := open(t, faultConfig(m))
	ctx := timeout(t, 3*time.Minute)
	w, err := s.Create(ctx, "stalled")
	if err != nil {
		t.Fatal(err)
	}
	if err := writeN(w, 2*testPart); err != nil {
		t.Fatal(err)
	}
	if err := m.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			m.cmd.Process.Signal(syscall.SIGCONT)
			resumed = true
		}
	}
	defer resume()

	// Writes may still be taken into minio-go's part buffers; the commit
	// cannot finish while the server is stopped.
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	err = writeN(w, 2*testPart)
	if err == nil {
		err = w.Commit(cctx)
	}
	if err == nil {
		t.Fatal("commit to a stopped server succeeded")
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("commit took %v to give up, want about its 2 s deadline", d)
	}
	t.Logf("writer's error after %v: %v", time.Since(start).Round(time.Millisecond), err)

	resume()
	if err := w.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if up := incomplete(t, s); len(up) != 0 {
		t.Fatalf("after abort: incomplete uploads %v", up)
	}
	if _, err := s.Stat(ctx, "stalled"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("stat %v, want ErrNotFound", err)
	}
}

// With StallTimeout set, a stopped server fails every operation after
// about one stall period, without the caller's context having a deadline
// and without minio-go retrying the stall MaxRetries times (the daemon
// runs with minio-go's default of 10 retries, as here).
func TestStallTimeout(t *testing.T) {
	m := ownMinio(t)
	cfg := config(m)
	cfg.StallTimeout = time.Second
	s := open(t, cfg)
	ctx := context.Background()
	if err := backendtest.Put(ctx, s, "kept", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	if got, err := backendtest.Get(ctx, s, "kept"); err != nil || string(got) != "kept" {
		t.Fatalf("get before the stall: %q %v", got, err)
	}
	w, err := s.Create(ctx, "stalled")
	if err != nil {
		t.Fatal(err)
	}
	if err := writeN(w, 2*testPart); err != nil { // a multipart upload is under way
		t.Fatal(err)
	}
	if err := m.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			m.cmd.Process.Signal(syscall.SIGCONT)
			resumed = true
		}
	}
	defer resume()

	// The bound: a few stall periods (the part in flight, the next one),
	// far below minio-go's 10 retries of one.
	const bound = 8 * time.Second
	bounded := func(op string, f func() error) {
		t.Helper()
		start := time.Now()
		err := f()
		d := time.Since(start)
		if err == nil {
			t.Fatalf("%s on a stopped server succeeded", op)
		}
		if !strings.Contains(err.Error(), "no progress") {
			t.Errorf("%s: %v, want it to say the server made no progress", op, err)
		}
		if errors.Is(err, backend.ErrNotFound) || errors.Is(err, context.Canceled) {
			t.Errorf("%s: a stalled server reported as a missing object or a cancelled call: %v", op, err)
		}
		if d > bound {
			t.Errorf("%s took %v on a stopped server, want under %v", op, d, bound)
		}
		t.Logf("%s failed after %v: %v", op, d.Round(time.Millisecond), err)
	}
	bounded("upload", func() error {
		if err := writeN(w, 2*testPart); err != nil {
			return err
		}
		return w.Commit(ctx)
	})
	if err := w.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	bounded("stat", func() error { _, err := s.Stat(ctx, "kept"); return err })
	bounded("open", func() error { _, err := s.Open(ctx, "kept"); return err })

	resume()
	got, err := backendtest.Get(ctx, s, "kept")
	if err != nil || string(got) != "kept" {
		t.Fatalf("after the server resumed: %q %v", got, err)
	}
	if _, err := s.Stat(ctx, "stalled"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("the stalled upload is visible: %v", err)
	}
	if err := s.AbortIncomplete(ctx); err != nil {
		t.Fatal(err)
	}
	if up := incomplete(t, s); len(up) != 0 {
		t.Fatalf("after AbortIncomplete: %v", up)
	}
}
