// Package backendtest is the conformance suite every backend.Backend passes
// (restic's backend/test, as a plain list of subtests). An implementation's
// test calls Run with a function that returns a fresh, empty backend.
package backendtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"testing"

	"github.com/glimpse-project/glimpse/backend"
)

// Run runs every conformance case as a subtest, each on a fresh backend.
func Run(t *testing.T, newBackend func(t *testing.T) backend.Backend) {
	cases := []struct {
		name string
		fn   func(*testing.T, backend.Backend)
	}{
		{"PutGet", testPutGet},
		{"Empty", testEmpty},
		{"Range", testRange},
		{"Missing", testMissing},
		{"InvisibleUntilCommit", testInvisibleUntilCommit},
		{"Abort", testAbort},
		{"Replace", testReplace},
		{"DeleteTwice", testDeleteTwice},
		{"List", testList},
		{"ListStopsOnError", testListStopsOnError},
		{"Large", testLarge},
		{"ConcurrentWriters", testConcurrentWriters},
		{"AbortIncomplete", testAbortIncomplete},
		{"AbortStaleSparesLive", testAbortStaleSparesLive},
		{"RandomWriter", testRandomWriter},
		{"WriterAfterCommit", testWriterAfterCommit},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBackend(t)
			t.Cleanup(func() { b.Close() })
			c.fn(t, b)
		})
	}
	t.Run("Read", func(t *testing.T) { RunRead(t, SeedByPut(newBackend)) })
}

// testWriterAfterCommit: a committed writer refuses more bytes and a second
// Commit, and an Abort after the Commit keeps the object.
func testWriterAfterCommit(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	w, err := b.Create(ctx, "done")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("final")); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("more")); err == nil {
		t.Fatal("write after commit succeeded")
	}
	if err := w.Commit(ctx); err == nil {
		t.Fatal("second commit succeeded")
	}
	if err := w.Abort(ctx); err != nil {
		t.Fatalf("abort after commit: %v", err)
	}
	mustEqual(t, b, "done", []byte("final"))
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	p := make([]byte, n)
	if _, err := rand.Read(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// Put stores data under key in one go.
func Put(ctx context.Context, b backend.Backend, key string, data []byte) error {
	w, err := b.Create(ctx, key)
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		w.Abort(ctx)
		return err
	}
	if err := w.Commit(ctx); err != nil {
		w.Abort(ctx)
		return err
	}
	return nil
}

// Get reads a whole object.
func Get(ctx context.Context, b backend.Backend, key string) ([]byte, error) {
	r, err := b.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
}

func mustPut(t *testing.T, b backend.Backend, key string, data []byte) {
	t.Helper()
	if err := Put(context.Background(), b, key, data); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func mustEqual(t *testing.T, b backend.Backend, key string, want []byte) {
	t.Helper()
	got, err := Get(context.Background(), b, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("get %s: %d bytes differ from the %d put", key, len(got), len(want))
	}
}

func testPutGet(t *testing.T, b backend.Backend) {
	data := randomBytes(t, 300_000)
	mustPut(t, b, "a", data)
	mustEqual(t, b, "a", data)
	info, err := b.Stat(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if info.Key != "a" || info.Size != int64(len(data)) {
		t.Fatalf("stat: got %+v, want key a size %d", info, len(data))
	}
}

func testEmpty(t *testing.T, b backend.Backend) {
	mustPut(t, b, "empty", nil)
	mustEqual(t, b, "empty", nil)
}

func testRange(t *testing.T, b backend.Backend) {
	data := randomBytes(t, 1<<20)
	mustPut(t, b, "r", data)
	r, err := b.Open(context.Background(), "r")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Size() != int64(len(data)) {
		t.Fatalf("size %d, want %d", r.Size(), len(data))
	}
	for _, rg := range [][2]int{{0, 10}, {12345, 4096}, {len(data) - 7, 7}, {500_000, 300_000}} {
		p := make([]byte, rg[1])
		n, err := r.ReadAt(p, int64(rg[0]))
		if err != nil || n != rg[1] || !bytes.Equal(p, data[rg[0]:rg[0]+rg[1]]) {
			t.Fatalf("ReadAt(%d,%d) = %d, %v; content equal: %v", rg[0], rg[1], n, err, bytes.Equal(p[:n], data[rg[0]:rg[0]+n]))
		}
	}
	// A read running past the end is short and says so.
	p := make([]byte, 100)
	n, err := r.ReadAt(p, int64(len(data)-10))
	if n != 10 || err == nil {
		t.Fatalf("read past end: n=%d err=%v, want 10 and an error (io.EOF)", n, err)
	}
}

func testMissing(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	if _, err := b.Open(ctx, "nope"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("open missing: %v, want ErrNotFound", err)
	}
	if _, err := b.Stat(ctx, "nope"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("stat missing: %v, want ErrNotFound", err)
	}
}

func testInvisibleUntilCommit(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	w, err := b.Create(ctx, "pending")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("half")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx, "pending"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("uncommitted object visible: %v", err)
	}
	if keys := listKeys(t, b); len(keys) != 0 {
		t.Fatalf("uncommitted object listed: %v", keys)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, b, "pending", []byte("half"))
}

func testAbort(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	w, err := b.Create(ctx, "gone")
	if err != nil {
		t.Fatal(err)
	}
	w.Write(randomBytes(t, 1000))
	if err := w.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(ctx); err != nil {
		t.Fatalf("second abort: %v", err)
	}
	if _, err := b.Stat(ctx, "gone"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("aborted object visible: %v", err)
	}
}

func testReplace(t *testing.T, b backend.Backend) {
	mustPut(t, b, "k", []byte("one"))
	mustPut(t, b, "k", []byte("two!"))
	mustEqual(t, b, "k", []byte("two!"))
}

func testDeleteTwice(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	mustPut(t, b, "d", []byte("x"))
	if err := b.Delete(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "d"); err != nil {
		t.Fatalf("deleting a missing key: %v", err)
	}
	if _, err := b.Stat(ctx, "d"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("deleted object still there: %v", err)
	}
}

func listKeys(t *testing.T, b backend.Backend) []string {
	t.Helper()
	var keys []string
	if err := b.List(context.Background(), func(i backend.Info) error {
		keys = append(keys, i.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	return keys
}

func testList(t *testing.T, b backend.Backend) {
	want := []string{"k1", "k2", "k3"}
	for _, k := range want {
		mustPut(t, b, k, []byte(k))
	}
	got := listKeys(t, b)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("list: %v, want %v", got, want)
	}
}

func testListStopsOnError(t *testing.T, b backend.Backend) {
	for _, k := range []string{"a", "b", "c"} {
		mustPut(t, b, k, []byte(k))
	}
	stop := errors.New("stop")
	calls := 0
	err := b.List(context.Background(), func(backend.Info) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("list: err %v after %d calls, want the callback's error after 1", err, calls)
	}
}

func testLarge(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	w, err := b.Create(ctx, "large")
	if err != nil {
		t.Fatal(err)
	}
	chunk := randomBytes(t, 1<<20)
	const chunks = 40
	for i := 0; i < chunks; i++ {
		chunk[0] = byte(i)
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := b.Open(ctx, "large")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Size() != chunks<<20 {
		t.Fatalf("size %d, want %d", r.Size(), chunks<<20)
	}
	p := make([]byte, 1<<20)
	for _, i := range []int{0, 17, chunks - 1} {
		if _, err := r.ReadAt(p, int64(i)<<20); err != nil {
			t.Fatal(err)
		}
		chunk[0] = byte(i)
		if !bytes.Equal(p, chunk) {
			t.Fatalf("chunk %d differs", i)
		}
	}
}

func testConcurrentWriters(t *testing.T, b backend.Backend) {
	const n = 8
	datas := make([][]byte, n)
	for i := range datas {
		datas[i] = randomBytes(t, 100_000+i)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- Put(context.Background(), b, fmt.Sprintf("c%d", i), datas[i])
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		mustEqual(t, b, fmt.Sprintf("c%d", i), datas[i])
	}
}

func testAbortIncomplete(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	mustPut(t, b, "kept", []byte("kept"))
	w, err := b.Create(ctx, "crashed")
	if err != nil {
		t.Fatal(err)
	}
	w.Write(randomBytes(t, 4096))
	// The writer is neither committed nor aborted: as after a crash.
	if err := b.AbortIncomplete(ctx); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, b, "kept", []byte("kept"))
	if keys := listKeys(t, b); fmt.Sprint(keys) != "[kept]" {
		t.Fatalf("after AbortIncomplete: %v", keys)
	}
}

// testAbortStaleSparesLive: a garbage collection while a write runs leaves
// that write whole, and the stale one it removes never becomes visible.
func testAbortStaleSparesLive(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	mustPut(t, b, "kept", []byte("kept"))
	first, second := randomBytes(t, 64<<10), randomBytes(t, 64<<10)
	live, err := b.Create(ctx, "live")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := live.Write(first); err != nil {
		t.Fatal(err)
	}
	stale, err := b.Create(ctx, "stale")
	if err != nil {
		t.Fatal(err)
	}
	stale.Write(randomBytes(t, 4096)) // neither committed nor aborted
	if err := b.AbortStale(ctx, func(key string) bool { return key == "live" }); err != nil {
		t.Fatal(err)
	}
	if _, err := live.Write(second); err != nil {
		t.Fatalf("write after AbortStale: %v", err)
	}
	if err := live.Commit(ctx); err != nil {
		t.Fatalf("commit after AbortStale: %v", err)
	}
	mustEqual(t, b, "live", append(first, second...))
	mustEqual(t, b, "kept", []byte("kept"))
	if keys := listKeys(t, b); fmt.Sprint(keys) != "[kept live]" {
		t.Fatalf("after AbortStale: %v", keys)
	}
	stale.Abort(ctx)
}

func testRandomWriter(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	w, err := b.Create(ctx, "rw")
	if err != nil {
		t.Fatal(err)
	}
	rw, ok := w.(backend.RandomWriter)
	if !ok {
		w.Abort(ctx)
		t.Skip("backend offers no RandomWriter")
	}
	// Out of order, with a hole, then truncated.
	if _, err := rw.WriteAt([]byte("world"), 10); err != nil {
		t.Fatal(err)
	}
	if _, err := rw.WriteAt([]byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 5)
	if _, err := rw.ReadAt(p, 10); err != nil || string(p) != "world" {
		t.Fatalf("read back: %q %v", p, err)
	}
	if err := rw.Truncate(12); err != nil {
		t.Fatal(err)
	}
	if err := rw.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, b, "rw", []byte("hello\x00\x00\x00\x00\x00wo"))

	// Rewritten, read back, then aborted: nothing stays, whatever the
	// writer did to take the writes out of order.
	w, err = b.Create(ctx, "rw-aborted")
	if err != nil {
		t.Fatal(err)
	}
	rw = w.(backend.RandomWriter)
	if _, err := rw.Write([]byte("abcdef")); err != nil {
		t.Fatal(err)
	}
	if _, err := rw.WriteAt([]byte("X"), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := rw.ReadAt(p[:3], 0); err != nil || string(p[:3]) != "aXc" {
		t.Fatalf("read back: %q %v", p[:3], err)
	}
	if err := rw.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if keys := listKeys(t, b); fmt.Sprint(keys) != "[rw]" {
		t.Fatalf("keys after an aborted random write: %v, want [rw]", keys)
	}
}
