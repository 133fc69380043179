package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestCrashConsistency kills the daemon with SIGKILL, round after round,
// at observable points of uploads through the mount and REST, renames,
// deactivations, deletes and garbage collection, all running at once,
// restarts it on the same data, and checks that nothing is lost:
//
//   - the registry opens (the daemon starts) and every image is in a legal
//     status, none left saving/uploading/importing;
//   - every image with content holds exactly what its record says (scrub
//     re-hashes it), and no stored object or partial write lacks an owner;
//   - every upload the daemon acknowledged (cp's close returned 0, PUT
//     answered 204) is there with the size, md5 and sha512 of what was
//     sent; an unacknowledged one is active with all of it or not at all;
//   - an acknowledged rename, (de)activation or delete happened; an
//     unacknowledged one happened or not, nothing in between.
//
// The timing is random but seeded (GLIMPSE_CRASH_SEED, logged); rounds run
// for GLIMPSE_CRASH_TIME (default 40s on badger, 20s on etcd; e.g. 10m for
// a long run).
//
// It runs on both registry engines. On etcd the daemon's lease outlives
// it, so each restart waits for the lease to expire first (a readiness
// check on the cluster, about 2 s: the shortest lease etcd grants); that,
// and a commit being one etcd transaction (all of it or none, with nothing
// on the daemon's disk to tear), is why etcd's default is shorter. It
// still runs every crash point at least once.
func TestCrashConsistency(t *testing.T) {
	needMount(t)
	seed := time.Now().UnixNano()
	if s := os.Getenv("GLIMPSE_CRASH_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("GLIMPSE_CRASH_SEED: %v", err)
		}
	}
	budgets := map[string]time.Duration{"badger": 40 * time.Second, "etcd": 20 * time.Second}
	if s := os.Getenv("GLIMPSE_CRASH_TIME"); s != "" {
		b, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("GLIMPSE_CRASH_TIME: %v", err)
		}
		budgets["badger"], budgets["etcd"] = b, b
	}
	t.Run("badger", func(t *testing.T) { crashConsistency(t, badgerRegistry(), seed, budgets["badger"], 3) })
	t.Run("etcd", func(t *testing.T) {
		crashConsistency(t, etcdRegistry(t, "crash"), seed, budgets["etcd"], len(crashPoints))
	})
}

func crashConsistency(t *testing.T, reg testRegistry, seed int64, budget time.Duration, minRounds int) {
	t.Logf("seed %d (GLIMPSE_CRASH_SEED=%d reproduces the schedule), budget %s, registry %s", seed, seed, budget, reg.name)
	rng := rand.New(rand.NewSource(seed))

	tmp := t.TempDir()
	data, mnt := filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	m := &crashModel{images: map[string]*tracked{}}
	tried := map[string]int{}
	start := time.Now()
	var leaseWait time.Duration
	round := 0
	for ; round < minRounds || time.Since(start) < budget; round++ {
		if round > 0 {
			leaseWait += reg.waitLeasesGone(t, "crash")
		}
		d := startDaemon(t, data, mnt, reg.serveArgs("--log-level", "warn")...)
		if round > 0 {
			checkRecovered(t, d.addr, data)
			m.verify(t, d.addr)
		}
		p := crashPoints[round%len(crashPoints)]
		tried[p.name]++
		m.round(t, rng, round, d, p)
	}
	leaseWait += reg.waitLeasesGone(t, "crash")
	d := startDaemon(t, data, mnt, reg.serveArgs("--log-level", "warn")...)
	checkRecovered(t, d.addr, data)
	m.verify(t, d.addr)
	d.stop()
	offlineScrub(t, data, reg.scrubArgs()...)
	for _, p := range crashPoints {
		t.Logf("crash point %q: %d rounds", p.name, tried[p.name])
	}
	if reg.etcd != nil {
		t.Logf("waited %v in all for killed daemons' leases to expire", leaseWait.Round(time.Millisecond))
	}
	t.Logf("%d rounds in %s; %d uploads acknowledged and verified intact; unacknowledged ones settled %d active and whole, %d killed or queued; %d metadata operations checked; %d images at the end",
		round, time.Since(start).Round(time.Second), m.ackedUploads, m.unackedActive, m.unackedNot, m.metaOps, len(m.images))
}

// crashPoint is when a round kills the daemon: after the first event of
// that kind, and a random delay below maxDelay.
type crashPoint struct {
	name     string
	event    string
	maxDelay time.Duration
}

var crashPoints = []crashPoint{
	{"mid cp through the mount (image saving, bytes written)", "mount-progress", 0},
	{"cp closing: hashing, store commit, inspection, activation", "mount-close", 4 * time.Millisecond},
	{"mid REST PUT (image saving, bytes sent)", "rest-progress", 0},
	{"REST PUT body sent: store commit, activation", "rest-eof", 4 * time.Millisecond},
	{"renames, (de)activations and deletes in flight", "meta", 3 * time.Millisecond},
	{"everything at once, gc running", "start", 300 * time.Millisecond},
}

// tracked is what the test knows of one image: the outcomes still possible.
type tracked struct {
	id       string
	src      source
	acked    bool            // the upload was acknowledged
	names    map[string]bool // names it may have
	statuses map[string]bool // statuses it may have (nil: any legal one)
	mayGo    bool            // a delete was issued
	mustGo   bool            // a delete was acknowledged
}

type crashModel struct {
	mu            sync.Mutex
	images        map[string]*tracked
	ackedUploads  int
	unackedActive int // unacknowledged uploads found active and whole
	unackedNot    int // unacknowledged uploads found queued or killed
	metaOps       int
}

func (m *crashModel) add(tr *tracked) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.images[tr.id] = tr
}

// verify checks every tracked image against what the daemon shows after a
// restart, then settles the model on what it shows.
func (m *crashModel) verify(t *testing.T, addr string) {
	t.Helper()
	for id, tr := range m.images {
		img := restGet(t, addr, id)
		switch {
		case img == nil && !tr.mayGo:
			t.Fatalf("image %s (%v) is gone, but nobody deleted it", id, tr.names)
		case img == nil:
			delete(m.images, id)
			continue
		case tr.mustGo:
			t.Fatalf("image %s survived an acknowledged delete: %+v", id, img)
		case !tr.names[img.Name]:
			t.Fatalf("image %s is named %q, want one of %v", id, img.Name, tr.names)
		case tr.statuses != nil && !tr.statuses[img.Status]:
			t.Fatalf("image %s is %s, want one of %v", id, img.Status, tr.statuses)
		}
		hasData := img.Status == "active" || img.Status == "deactivated"
		if tr.acked && !hasData {
			t.Fatalf("acknowledged upload %s (%s) is %s after the restart", id, img.Name, img.Status)
		}
		if hasData && !img.holds(tr.src) {
			t.Fatalf("image %s (%s) is %s but does not hold what was sent (size %v, want %d)", id, img.Name, img.Status, img.Size, tr.src.size)
		}
		if !tr.acked && hasData {
			m.unackedActive++
		} else if !tr.acked {
			m.unackedNot++
		}
		if !hasData {
			delete(m.images, id) // queued or killed: nothing more to do with it
			continue
		}
		tr.acked, tr.mayGo = true, false
		tr.names = map[string]bool{img.Name: true}
		tr.statuses = map[string]bool{img.Status: true}
	}
}

// only returns the single element of a one-element set.
func only(set map[string]bool) string {
	for k := range set {
		return k
	}
	return ""
}

// round runs uploads and metadata operations at once and kills the daemon
// at p.
func (m *crashModel) round(t *testing.T, rng *rand.Rand, round int, d *daemon, p crashPoint) {
	events := make(chan string, 64)
	emit := func(ev string) {
		select {
		case events <- ev:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	seedOf := func() int64 { return rng.Int63() }
	// Two small images settled first, so that every round has images to
	// rename, (de)activate and delete.
	for i := 0; i < 2; i++ {
		name := fmt.Sprintf("r%d-base%d", round, i)
		b := content(seedOf(), 64<<10+rng.Intn(256<<10))
		id, err := restCreate(ctx, d.addr, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := restUpload(ctx, d.addr, id, bytesReader(b)); err != nil {
			t.Fatal(err)
		}
		m.add(&tracked{id: id, src: sourceOf(b), acked: true, names: map[string]bool{name: true}, statuses: map[string]bool{"active": true}})
	}
	// Metadata operations go to images from earlier rounds, one per image.
	var candidates []*tracked
	for _, tr := range m.images {
		candidates = append(candidates, tr)
	}
	sort.Slice(candidates, func(i, j int) bool { return candidates[i].id < candidates[j].id })
	rng.Shuffle(len(candidates), func(i, j int) { candidates[i], candidates[j] = candidates[j], candidates[i] })

	for i, n := 0, 1+rng.Intn(3); i < n; i++ {
		name := fmt.Sprintf("r%d-cp%d", round, i)
		size, chunk, frac, s := 1<<20+rng.Intn(7<<20), 4096<<rng.Intn(9), rng.Float64(), seedOf()
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.mountUpload(d.mnt, name, content(s, size), chunk, frac, emit)
		}()
	}
	for i, n := 0, 1+rng.Intn(2); i < n; i++ {
		name := fmt.Sprintf("r%d-put%d", round, i)
		size, frac, s := 1<<20+rng.Intn(7<<20), rng.Float64(), seedOf()
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.restUpload(ctx, d.addr, name, content(s, size), frac, emit)
		}()
	}
	for i, tr := range candidates[:min(len(candidates), 1+rng.Intn(4))] {
		op := rng.Intn(4)
		newName := fmt.Sprintf("r%d-mv%d", round, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			emit("meta")
			m.metaOp(ctx, d, tr, op, newName)
		}()
	}
	if p.event == "start" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, _, err := restCall(ctx, "POST", "http://"+d.addr+"/v2/glimpse/gc", nil, ""); err != nil {
					return
				}
			}
		}()
	}
	emit("start")

	delay := time.Duration(0)
	if p.maxDelay > 0 {
		delay = time.Duration(rng.Int63n(int64(p.maxDelay)))
	}
	timeout := time.After(5 * time.Second)
wait:
	for {
		select {
		case ev := <-events:
			if ev == p.event {
				break wait
			}
		case <-timeout:
			t.Logf("round %d: no %q event in 5s; killing anyway", round, p.event)
			break wait
		}
	}
	time.Sleep(delay)
	d.kill()
	cancel()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("round %d: clients still blocked 30s after the daemon was killed", round)
	}
}

func bytesReader(b []byte) io.Reader {
	return &announcingReader{b: b, at: len(b) + 1, emit: func(string) {}}
}

// content is size bytes, different for every seed: a 64 KiB block of
// pseudo-random bytes from seed, repeated, each copy numbered in its first
// 8 bytes (cheap to make even under -race, and no two blocks alike).
func content(seed int64, size int) []byte {
	b := make([]byte, size)
	block := make([]byte, min(size, 64<<10))
	rand.New(rand.NewSource(seed)).Read(block)
	for off, i := 0, uint64(0); off < size; off, i = off+len(block), i+1 {
		if n := copy(b[off:], block); n >= 8 {
			binary.LittleEndian.PutUint64(b[off:], i^uint64(seed))
		}
	}
	return b
}

// mountUpload copies b into active/name in pieces of chunk bytes, as cp
// does, announcing when frac of it is written and when it closes.
func (m *crashModel) mountUpload(mnt, name string, b []byte, chunk int, frac float64, emit func(string)) {
	path := filepath.Join(mnt, "active", name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return // the daemon died first
	}
	defer f.Close()
	id := make([]byte, 64)
	n, err := syscall.Getxattr(path, "user.id", id)
	if err != nil {
		return
	}
	tr := &tracked{id: string(id[:n]), src: sourceOf(b), names: map[string]bool{name: true}}
	m.add(tr)
	announced := false
	for off := 0; off < len(b); off += chunk {
		if !announced && float64(off) >= frac*float64(len(b)) {
			emit("mount-progress")
			announced = true
		}
		if _, err := f.Write(b[off:min(off+chunk, len(b))]); err != nil {
			return
		}
	}
	emit("mount-close")
	if f.Close() == nil {
		m.mu.Lock()
		tr.acked = true
		m.ackedUploads++
		m.mu.Unlock()
	}
}

// restUpload creates image name over REST and PUTs b, announcing when frac
// of the body is sent and when all of it is.
func (m *crashModel) restUpload(ctx context.Context, addr, name string, b []byte, frac float64, emit func(string)) {
	id, err := restCreate(ctx, addr, name)
	if err != nil {
		return
	}
	tr := &tracked{id: id, src: sourceOf(b), names: map[string]bool{name: true}}
	m.add(tr)
	body := &announcingReader{b: b, at: int(frac * float64(len(b))), emit: emit}
	if restUpload(ctx, addr, id, body) == nil {
		m.mu.Lock()
		tr.acked = true
		m.ackedUploads++
		m.mu.Unlock()
	}
}

type announcingReader struct {
	b         []byte
	off, at   int
	announced bool
	emit      func(string)
}

func (r *announcingReader) Read(p []byte) (int, error) {
	if r.off >= len(r.b) {
		r.emit("rest-eof")
		return 0, io.EOF
	}
	if !r.announced && r.off >= r.at {
		r.emit("rest-progress")
		r.announced = true
	}
	n := copy(p[:min(len(p), 256<<10)], r.b[r.off:])
	r.off += n
	return n, nil
}

// metaOp renames, deactivates or reactivates, or deletes tr, through the
// mount or REST, and records what may have happened.
func (m *crashModel) metaOp(ctx context.Context, d *daemon, tr *tracked, op int, newName string) {
	m.mu.Lock()
	name, status := only(tr.names), only(tr.statuses)
	m.metaOps++
	m.mu.Unlock()
	switch op {
	case 0: // rename through the mount
		m.mu.Lock()
		tr.names[newName] = true
		m.mu.Unlock()
		if os.Rename(filepath.Join(d.mnt, status, name), filepath.Join(d.mnt, status, newName)) == nil {
			m.mu.Lock()
			tr.names = map[string]bool{newName: true}
			m.mu.Unlock()
		}
	case 1: // deactivate or reactivate through the mount
		to := map[string]string{"active": "deactivated", "deactivated": "active"}[status]
		m.mu.Lock()
		tr.statuses[to] = true
		m.mu.Unlock()
		if os.Rename(filepath.Join(d.mnt, status, name), filepath.Join(d.mnt, to, name)) == nil {
			m.mu.Lock()
			tr.statuses = map[string]bool{to: true}
			m.mu.Unlock()
		}
	case 2: // rm through the mount
		m.mu.Lock()
		tr.mayGo = true
		m.mu.Unlock()
		if os.Remove(filepath.Join(d.mnt, status, name)) == nil {
			m.mu.Lock()
			tr.mustGo = true
			m.mu.Unlock()
		}
	case 3: // DELETE over REST
		m.mu.Lock()
		tr.mayGo = true
		m.mu.Unlock()
		code, _, err := restCall(ctx, "DELETE", "http://"+d.addr+"/v2/images/"+tr.id, nil, "")
		if err == nil && code == http.StatusNoContent {
			m.mu.Lock()
			tr.mustGo = true
			m.mu.Unlock()
		}
	}
}
