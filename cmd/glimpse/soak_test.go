package main

import (
	"bufio"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestSoak runs writers through the mount, REST uploads and downloads,
// readers through the mount, renames, deactivations and deletes, and gc,
// all at once, for GLIMPSE_SOAK (default 30s on badger, 15s on etcd; e.g.
// GLIMPSE_SOAK=5m). Every few seconds the daemon's invariants are checked
// (scrub re-hashes every image); at the end every image holds what was
// sent, nothing is in flight or orphaned, and the daemon's goroutines, open
// files and RSS are back within stated bounds of what they were once the
// load had warmed up.
//
// It runs on both registry engines. Everything but the registry is the
// same code on both, and badger's run exercises it longest; what etcd adds
// is per operation (a transaction, watch events, the mount's invalidation
// reads), so a leak of goroutines, streams or open files there passes the
// bounds within seconds of load, and its variant is half as long.
func TestSoak(t *testing.T) {
	needMount(t)
	durations := map[string]time.Duration{"badger": 30 * time.Second, "etcd": 15 * time.Second}
	if s := os.Getenv("GLIMPSE_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("GLIMPSE_SOAK: %v", err)
		}
		durations["badger"], durations["etcd"] = d, d
	}
	t.Run("badger", func(t *testing.T) { soak(t, badgerRegistry(), durations["badger"]) })
	t.Run("etcd", func(t *testing.T) { soak(t, etcdRegistry(t, "soak"), durations["etcd"]) })
}

func soak(t *testing.T, reg testRegistry, duration time.Duration) {
	tmp := t.TempDir()
	data, mnt := filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	d := startDaemon(t, data, mnt, reg.serveArgs("--debug-pprof", "--log-level", "warn")...)
	pid := d.cmd.Process.Pid
	idle := sampleDaemon(t, d, pid)
	t.Logf("idle: %s", idle)

	pool := &soakPool{free: map[string]*soakImage{}}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ops soakCounts
	worker := func(name string, seed int64, fn func(rng *rand.Rand, i int) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			for i := 0; ctx.Err() == nil; i++ {
				if err := fn(rng, i); err != nil {
					t.Errorf("%s: %v", name, err)
					stop()
					return
				}
			}
		}()
	}
	for w := 0; w < 2; w++ {
		worker(fmt.Sprintf("mount writer %d", w), int64(w), func(rng *rand.Rand, i int) error {
			return soakMountWrite(d, pool, &ops, fmt.Sprintf("w%d-%d", w, i), content(rng.Int63(), 64<<10+rng.Intn(4<<20)))
		})
		worker(fmt.Sprintf("REST uploader %d", w), int64(10+w), func(rng *rand.Rand, i int) error {
			return soakRESTUpload(ctx, d, pool, &ops, fmt.Sprintf("u%d-%d", w, i), content(rng.Int63(), 64<<10+rng.Intn(4<<20)))
		})
		worker(fmt.Sprintf("reader %d", w), int64(20+w), func(rng *rand.Rand, i int) error {
			return soakRead(ctx, d, pool, &ops, rng)
		})
	}
	worker("mutator", 30, func(rng *rand.Rand, i int) error {
		return soakMutate(ctx, d, pool, &ops, rng, i)
	})

	// Resources once the load has warmed up, then invariants and gc every
	// few seconds while it runs.
	var warm daemonSample
	start := time.Now()
	deadline := start.Add(duration)
	for n := 0; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
		select {
		case <-time.After(min(5*time.Second, time.Until(deadline))):
		case <-ctx.Done():
		}
		if n == 0 {
			warm = sampleDaemon(t, d, pid)
			t.Logf("warm: %s", warm)
			saveHeapProfile(t, d, reg.name+"-warm")
		}
		rep := restScrub(t, d.addr)
		for _, p := range rep.Problems {
			// A delete removes the record, then the content: between the
			// two the content is briefly an orphan. Orphans must be gone
			// at the end.
			if p.Kind != "orphan" {
				t.Fatalf("invariant broken under load: %+v", p)
			}
		}
		if code, b, err := restCall(context.Background(), "POST", "http://"+d.addr+"/v2/glimpse/gc", nil, ""); err != nil || code != http.StatusOK {
			t.Fatalf("gc under load: %d %s %v", code, b, err)
		}
		ops.add(&ops.checks)
	}
	stop()
	wg.Wait()
	if t.Failed() {
		return
	}

	waitSettled(t, d.addr)
	checkRecovered(t, d.addr, data) // nothing in flight, no orphan, all re-hashed
	for id, img := range pool.free {
		got := restGet(t, d.addr, id)
		if got == nil || got.Status != img.status || got.Name != img.name || !got.holds(img.src) {
			t.Fatalf("image %s after the soak: %+v, want %s %q holding what was sent", id, got, img.status, img.name)
		}
	}
	end := sampleDaemon(t, d, pid)
	t.Logf("end: %s", end)
	saveHeapProfile(t, d, reg.name+"-end")
	t.Logf("%s in %s; %d images at the end", ops.String(), time.Since(start).Round(time.Second), len(pool.free))
	// Bounds: goroutines back to the idle count plus a few (HTTP keep-alive
	// connections of the test's clients, go-fuse's spare readers); open
	// files to idle plus a few (idle HTTP connections); the live Go heap
	// (after a GC) within 16 MiB of the warmed-up figure: a leak per
	// operation grows it past that in thousands of operations. RSS gets a
	// looser bound, 128 MiB over warm: this daemon is the -race test
	// binary, whose shadow memory grows with every address the heap has
	// touched and is never given back, and the catalogue itself grows.
	if end.goroutines > idle.goroutines+25 {
		t.Errorf("goroutines: %d at the end, %d idle: not flat", end.goroutines, idle.goroutines)
	}
	if end.fds > idle.fds+20 {
		t.Errorf("open files: %d at the end, %d idle: not flat", end.fds, idle.fds)
	}
	if end.liveHeap > warm.liveHeap+16<<20 {
		t.Errorf("live heap: %d MiB at the end, %d MiB warm: not flat", end.liveHeap>>20, warm.liveHeap>>20)
	}
	// RSS also holds memory the runtime freed but has not yet returned
	// (the live heap above is the leak check). 2026-12-03: with the upload
	// slots' buffers pooled, 183 MiB warm and 266 MiB at the end; before,
	// each slot kept the buffer it had once used (64 MiB live, RSS +300).
	if end.rssKiB > warm.rssKiB+128<<10 {
		t.Errorf("RSS: %d MiB at the end, %d MiB warm: not flat", end.rssKiB>>10, warm.rssKiB>>10)
	}
	d.stop()
	offlineScrub(t, data, reg.scrubArgs()...)
}

type soakCounts struct {
	mu                                                       sync.Mutex
	mountWrites, restUploads, mountReads, restReads, renames int
	deactivations, deletes, checks                           int
	bytesIn, bytesOut                                        int64
}

func (c *soakCounts) add(n *int) {
	c.mu.Lock()
	*n++
	c.mu.Unlock()
}

func (c *soakCounts) bytes(in, out int64) {
	c.mu.Lock()
	c.bytesIn += in
	c.bytesOut += out
	c.mu.Unlock()
}

func (c *soakCounts) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("%d cp into the mount, %d REST uploads (%d MiB in), %d reads through the mount, %d REST downloads (%d MiB out), %d renames, %d deactivate+reactivate, %d deletes, %d scrub+gc passes",
		c.mountWrites, c.restUploads, c.bytesIn>>20, c.mountReads, c.restReads, c.bytesOut>>20, c.renames, c.deactivations, c.deletes, c.checks)
}

type soakImage struct {
	id, name, status string
	src              source
}

// soakPool holds the settled images; a worker takes one for its sole use
// and puts it back, so each knows exactly what the image must be.
type soakPool struct {
	mu   sync.Mutex
	free map[string]*soakImage
}

func (p *soakPool) put(img *soakImage) {
	p.mu.Lock()
	p.free[img.id] = img
	p.mu.Unlock()
}

func (p *soakPool) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}

func (p *soakPool) take(rng *rand.Rand) *soakImage {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) == 0 {
		return nil
	}
	n := rng.Intn(len(p.free))
	for id, img := range p.free {
		if n == 0 {
			delete(p.free, id)
			return img
		}
		n--
	}
	return nil
}

func soakMountWrite(d *daemon, pool *soakPool, ops *soakCounts, name string, b []byte) error {
	path := filepath.Join(d.mnt, "active", name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("cp %s: %w", name, err)
	}
	id := make([]byte, 64)
	n, err := syscall.Getxattr(path, "user.id", id)
	if err != nil {
		return fmt.Errorf("id of %s: %w", name, err)
	}
	pool.put(&soakImage{id: string(id[:n]), name: name, status: "active", src: sourceOf(b)})
	ops.add(&ops.mountWrites)
	ops.bytes(int64(len(b)), 0)
	return nil
}

func soakRESTUpload(ctx context.Context, d *daemon, pool *soakPool, ops *soakCounts, name string, b []byte) error {
	id, err := restCreate(ctx, d.addr, name)
	if err != nil {
		return ignoreStop(ctx, err)
	}
	if err := restUpload(ctx, d.addr, id, bytesReader(b)); err != nil {
		return ignoreStop(ctx, err)
	}
	pool.put(&soakImage{id: id, name: name, status: "active", src: sourceOf(b)})
	ops.add(&ops.restUploads)
	ops.bytes(int64(len(b)), 0)
	return nil
}

// ignoreStop drops an error caused by the end of the soak.
func ignoreStop(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// soakRead reads an image back, through the mount or REST, and compares
// its md5 with what was sent.
func soakRead(ctx context.Context, d *daemon, pool *soakPool, ops *soakCounts, rng *rand.Rand) error {
	img := pool.take(rng)
	if img == nil {
		select {
		case <-time.After(10 * time.Millisecond): // nothing uploaded yet
		case <-ctx.Done():
		}
		return nil
	}
	defer pool.put(img)
	sum := md5.New()
	var n int64
	if img.status == "active" && rng.Intn(2) == 0 {
		f, err := os.Open(filepath.Join(d.mnt, "images", img.id))
		if err != nil {
			return fmt.Errorf("open %s: %w", img.name, err)
		}
		defer f.Close()
		if n, err = io.Copy(sum, f); err != nil {
			return fmt.Errorf("read %s: %w", img.name, err)
		}
		ops.add(&ops.mountReads)
	} else {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+d.addr+"/v2/images/"+img.id+"/file", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return ignoreStop(ctx, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("download %s: %s", img.name, resp.Status)
		}
		if n, err = io.Copy(sum, resp.Body); err != nil {
			return ignoreStop(ctx, err)
		}
		ops.add(&ops.restReads)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != img.src.md5 {
		return fmt.Errorf("read %s (%s): md5 %s, want %s", img.name, img.status, got, img.src.md5)
	}
	ops.bytes(0, n)
	return nil
}

// soakMutate renames, deactivates or reactivates, or deletes an image,
// through the mount or REST, and checks that it happened.
func soakMutate(ctx context.Context, d *daemon, pool *soakPool, ops *soakCounts, rng *rand.Rand, i int) error {
	img := pool.take(rng)
	if img == nil {
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
		}
		return nil
	}
	dir := filepath.Join(d.mnt, img.status)
	switch op := rng.Intn(4); {
	case op == 0:
		name := fmt.Sprintf("mv%d", i)
		if err := os.Rename(filepath.Join(dir, img.name), filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("mv %s: %w", img.name, err)
		}
		img.name = name
		ops.add(&ops.renames)
	case op == 1:
		to := map[string]string{"active": "deactivated", "deactivated": "active"}[img.status]
		if err := os.Rename(filepath.Join(dir, img.name), filepath.Join(d.mnt, to, img.name)); err != nil {
			return fmt.Errorf("mv %s to %s: %w", img.name, to, err)
		}
		img.status = to
		ops.add(&ops.deactivations)
	case op == 2 && pool.size() > 8:
		if err := os.Remove(filepath.Join(dir, img.name)); err != nil {
			return fmt.Errorf("rm %s: %w", img.name, err)
		}
		ops.add(&ops.deletes)
		return nil
	case op == 3 && pool.size() > 8:
		code, b, err := restCall(ctx, "DELETE", "http://"+d.addr+"/v2/images/"+img.id, nil, "")
		if err != nil {
			return ignoreStop(ctx, err) // deleted or not: no longer tracked
		}
		if code != http.StatusNoContent {
			return fmt.Errorf("DELETE %s: %d %s", img.name, code, b)
		}
		ops.add(&ops.deletes)
		return nil
	}
	pool.put(img)
	return nil
}

// saveHeapProfile writes the daemon's heap profile, after a GC, to
// $GLIMPSE_SOAK_PROFILES/heap-<when>.pprof when that is set, so a soak that
// finds growth can be followed with `go tool pprof -diff_base`.
func saveHeapProfile(t *testing.T, d *daemon, when string) {
	t.Helper()
	dir := os.Getenv("GLIMPSE_SOAK_PROFILES")
	if dir == "" {
		return
	}
	resp, err := http.Get("http://" + d.addr + "/debug/pprof/heap?gc=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "heap-"+when+".pprof")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("heap profile: %s", path)
}

// daemonSample is the daemon's use of resources at one moment.
type daemonSample struct {
	goroutines, fds int
	rssKiB          int
	liveHeap        int64 // bytes in use on the Go heap right after a GC
}

func (s daemonSample) String() string {
	return fmt.Sprintf("%d goroutines, %d open files, RSS %d MiB, live heap %d MiB", s.goroutines, s.fds, s.rssKiB>>10, s.liveHeap>>20)
}

func sampleDaemon(t *testing.T, d *daemon, pid int) daemonSample {
	t.Helper()
	var s daemonSample
	resp, err := http.Get("http://" + d.addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	resp.Body.Close()
	// "goroutine profile: total N"
	if s.goroutines, err = strconv.Atoi(strings.TrimSpace(line[strings.LastIndexByte(line, ' ')+1:])); err != nil {
		t.Fatalf("goroutine profile: %q", line)
	}
	resp, err = http.Get("http://" + d.addr + "/debug/pprof/heap?debug=1&gc=1")
	if err != nil {
		t.Fatal(err)
	}
	heap, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, l := range strings.Split(string(heap), "\n") {
		if v, ok := strings.CutPrefix(l, "# HeapAlloc = "); ok {
			s.liveHeap, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	if s.liveHeap == 0 {
		t.Fatal("no HeapAlloc in the heap profile")
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	s.fds = len(fds)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			s.rssKiB, _ = strconv.Atoi(strings.Fields(v)[0])
		}
	}
	return s
}
