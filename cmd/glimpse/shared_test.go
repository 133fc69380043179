package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/glimpse-project/glimpse/meta/kv/kvtest"
)

// propagationBudget is the contract's bound: every daemon's faces reflect
// every change within 1 s.
const propagationBudget = time.Second

// sharedDaemons starts a 3-member etcd, a MinIO, and n daemons on them
// (one catalogue under one registry prefix, one bucket), each with its own
// data dir, mount and REST listener.
func sharedDaemons(t *testing.T, n int, extra ...string) (*kvtest.Etcd, *minio.Client, []*daemon) {
	t.Helper()
	needMount(t)
	cluster := kvtest.StartEtcd(t, 3)
	mc := startMinIO(t)
	var ds []*daemon
	for i := 0; i < n; i++ {
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("d%d", i))
		args := append([]string{"--registry", cluster.URL("shared"), "--store", "s3://images/glimpse"}, extra...)
		ds = append(ds, startDaemon(t, filepath.Join(dir, "data"), filepath.Join(dir, "mnt"), args...))
	}
	return cluster, mc, ds
}

// eventually polls ok until it holds, failing the test past the budget, and
// returns how long it took.
func eventually(t *testing.T, budget time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > budget {
			t.Fatalf("%s: not within %v", what, budget)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func gone(p string) bool {
	_, err := os.Lstat(p)
	return errors.Is(err, syscall.ENOENT)
}

// listedByName reports whether a daemon's REST list shows an image named
// name (with the status, if not empty).
func listedByName(r rest, name, status string) bool {
	q := "/v2/images?name=" + url.QueryEscape(name)
	if status != "" {
		q += "&status=" + status
	}
	st, body := r.do("GET", q, "", nil)
	if st != http.StatusOK {
		r.t.Fatalf("list: %d %s", st, body)
	}
	images, _ := r.decode(body)["images"].([]any)
	return len(images) > 0
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

// Two daemons on one etcd catalogue and one bucket: a cp into A's mount is
// listed in B's mount and REST within the budget, and so are renames,
// property changes, deactivations and deletions; a REST upload through B
// shows in A's mount.
func TestSharedCatalogue(t *testing.T) {
	for _, tool := range []string{"cp", "getfattr", "setfattr"} {
		needTool(t, tool)
	}
	_, _, ds := sharedDaemons(t, 2)
	a, b := ds[0], ds[1]
	restA, restB := rest{t: t, base: "http://" + a.addr}, rest{t: t, base: "http://" + b.addr}
	tmp := t.TempDir()
	src := randomFile(t, tmp, "src.img", 64<<10)

	const copies = 20
	var mountLag, restLag []time.Duration
	for i := 0; i < copies; i++ {
		name := fmt.Sprintf("disk%02d.img", i)
		// B looks first, so that its kernel holds a negative entry that
		// only the watch's invalidation removes in time.
		if exists(filepath.Join(b.mnt, "active", name)) {
			t.Fatalf("%s in B before the copy", name)
		}
		mustRun(t, "cp", src, filepath.Join(a.mnt, "active", name))
		mountLag = append(mountLag, eventually(t, propagationBudget, name+" in B's mount", func() bool {
			return exists(filepath.Join(b.mnt, "active", name))
		}))
		restLag = append(restLag, eventually(t, propagationBudget, name+" in B's REST list", func() bool {
			return listedByName(restB, name, "active")
		}))
	}
	t.Logf("cp in A -> listed in B's mount: p50 %v p99 %v; in B's REST (after the mount): p50 %v p99 %v",
		percentile(mountLag, .5), percentile(mountLag, .99), percentile(restLag, .5), percentile(restLag, .99))

	first := filepath.Join(a.mnt, "active", "disk00.img")
	id := xattr(t, first, "id")
	if got := xattr(t, filepath.Join(b.mnt, "active", "disk00.img"), "checksum"); got != xattr(t, first, "checksum") {
		t.Fatalf("B's checksum %s differs from A's", got)
	}
	if got := mustRun(t, "cmp", src, filepath.Join(b.mnt, "active", "disk01.img")); got != "" {
		t.Fatalf("B reads other content than A wrote: %s", got)
	}

	// A rename in A.
	if err := os.Rename(first, filepath.Join(a.mnt, "active", "renamed.img")); err != nil {
		t.Fatal(err)
	}
	eventually(t, propagationBudget, "the rename in B's mount", func() bool {
		return exists(filepath.Join(b.mnt, "active", "renamed.img")) && gone(filepath.Join(b.mnt, "active", "disk00.img"))
	})
	eventually(t, propagationBudget, "the rename in B's REST", func() bool { return restB.image(id)["name"] == "renamed.img" })

	// A property set in A.
	mustRun(t, "setfattr", "-n", "user.os_distro", "-v", "debian", filepath.Join(a.mnt, "active", "renamed.img"))
	eventually(t, propagationBudget, "the property in B's mount", func() bool {
		out, ok := run(t, "getfattr", "--absolute-names", "--only-values", "-n", "user.os_distro", filepath.Join(b.mnt, "images", id))
		return ok && strings.TrimSpace(out) == "debian"
	})

	// A deactivation in A.
	if err := os.Rename(filepath.Join(a.mnt, "active", "renamed.img"), filepath.Join(a.mnt, "deactivated", "renamed.img")); err != nil {
		t.Fatal(err)
	}
	eventually(t, propagationBudget, "the deactivation in B's mount", func() bool {
		return exists(filepath.Join(b.mnt, "deactivated", "renamed.img")) && gone(filepath.Join(b.mnt, "active", "renamed.img"))
	})
	if _, err := os.ReadFile(filepath.Join(b.mnt, "deactivated", "renamed.img")); !errors.Is(err, syscall.EACCES) {
		t.Fatalf("reading a deactivated image through B: %v, want EACCES", err)
	}

	// A deletion in A.
	if err := os.Remove(filepath.Join(a.mnt, "deactivated", "renamed.img")); err != nil {
		t.Fatal(err)
	}
	eventually(t, propagationBudget, "the deletion in B's mount", func() bool {
		return gone(filepath.Join(b.mnt, "deactivated", "renamed.img")) && gone(filepath.Join(b.mnt, "images", id))
	})
	if st, _ := restB.do("GET", "/v2/images/"+id, "", nil); st != http.StatusNotFound {
		t.Fatalf("B's REST shows the deleted image: %d", st)
	}

	// The other way: a REST upload through B shows in A's mount.
	newID := restB.create("from-b.img")
	if st, body := restB.upload(newID, strings.NewReader(strings.Repeat("b", 4096))); st != http.StatusNoContent {
		t.Fatalf("upload through B: %d %s", st, body)
	}
	eventually(t, propagationBudget, "B's upload in A's mount", func() bool {
		return exists(filepath.Join(a.mnt, "active", "from-b.img"))
	})
	if got := xattr(t, filepath.Join(a.mnt, "active", "from-b.img"), "id"); got != newID {
		t.Fatalf("A shows id %s for B's image %s", got, newID)
	}
	if !listedByName(restA, "from-b.img", "active") {
		t.Fatal("A's REST does not list B's upload")
	}
}

// A daemon SIGKILLed in the middle of an upload: while its lease lives the
// other daemon leaves the upload alone; once it expires, the survivor kills
// the upload with a reason and nothing of it is left in the bucket (no
// object, no multipart upload), while the image committed before stays.
func TestSharedDaemonKilledMidUpload(t *testing.T) {
	const lease = 3 * time.Second
	_, mc, ds := sharedDaemons(t, 2, "--registry-lease", lease.String())
	a, b := ds[0], ds[1]
	restB := rest{t: t, base: "http://" + b.addr}
	tmp := t.TempDir()
	kept := randomFile(t, tmp, "kept.img", 1<<20)
	mustRun(t, "cp", kept, filepath.Join(a.mnt, "active")+"/")
	keptID := xattr(t, filepath.Join(a.mnt, "active", "kept.img"), "id")

	f, err := os.Create(filepath.Join(a.mnt, "active", "doomed.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for i := 0; i < 20; i++ { // past the first 16 MiB part: a multipart upload is under way
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	doomed := xattr(t, filepath.Join(a.mnt, "saving", "doomed.img"), "id")
	eventually(t, 10*time.Second, "a multipart upload in the bucket", func() bool {
		return len(incompleteUploads(t, mc, "images")) > 0
	})
	// Longer than the lease: a live daemon's upload is not the survivor's.
	time.Sleep(lease + lease/2)
	if st := restB.image(doomed)["status"]; st != "saving" {
		t.Fatalf("B changed A's live upload to %v", st)
	}

	a.kill()
	killedAt := time.Now()
	settled := eventually(t, 4*lease, "the dead daemon's upload killed by the survivor", func() bool {
		return restB.image(doomed)["status"] == "killed"
	})
	t.Logf("upload killed %v after its daemon was (lease %v)", settled.Round(10*time.Millisecond), lease)
	if time.Since(killedAt) < lease/2 {
		t.Fatalf("killed %v after the daemon died, before its %v lease could expire", time.Since(killedAt), lease)
	}
	reason := xattr(t, filepath.Join(b.mnt, "images", doomed), "glimpse.error")
	if !strings.Contains(reason, "daemon writing it stopped") {
		t.Fatalf("kill reason %q", reason)
	}
	eventually(t, 10*time.Second, "nothing of the upload left in the bucket", func() bool {
		keys := objects(t, mc, "images")
		return len(incompleteUploads(t, mc, "images")) == 0 && fmt.Sprint(keys) == "[glimpse/"+keptID+"]"
	})
	mustRun(t, "cmp", kept, filepath.Join(b.mnt, "active", "kept.img"))
}

// Two daemons rename the same image at the same moment, each through its
// own mount, to different names: exactly one rename succeeds, the other
// gets ENOENT (as two rename(2) calls of one path on one filesystem), and
// both mounts and both REST listeners end showing the winner's name. The
// same for two deletions.
func TestSharedConcurrentRenameAndDelete(t *testing.T) {
	_, _, ds := sharedDaemons(t, 2)
	tmp := t.TempDir()
	src := randomFile(t, tmp, "src.img", 4096)
	const rounds = 8
	for i := 0; i < rounds; i++ {
		name := fmt.Sprintf("race%d.img", i)
		mustRun(t, "cp", src, filepath.Join(ds[0].mnt, "active", name))
		id := xattr(t, filepath.Join(ds[0].mnt, "active", name), "id")
		for _, d := range ds {
			eventually(t, propagationBudget, name+" in every mount", func() bool { return exists(filepath.Join(d.mnt, "active", name)) })
		}
		targets := []string{fmt.Sprintf("by-a%d.img", i), fmt.Sprintf("by-b%d.img", i)}
		errs := make([]error, 2)
		start := make(chan struct{})
		done := make(chan int)
		for j, d := range ds {
			go func() {
				<-start
				errs[j] = os.Rename(filepath.Join(d.mnt, "active", name), filepath.Join(d.mnt, "active", targets[j]))
				done <- j
			}()
		}
		close(start)
		<-done
		<-done
		winner := -1
		for j, err := range errs {
			switch {
			case err == nil && winner == -1:
				winner = j
			case err == nil:
				t.Fatalf("round %d: both renames succeeded", i)
			case !errors.Is(err, syscall.ENOENT):
				t.Fatalf("round %d: the losing rename failed with %v, want ENOENT", i, err)
			}
		}
		if winner == -1 {
			t.Fatalf("round %d: no rename succeeded: %v", i, errs)
		}
		for j, d := range ds {
			r := rest{t: t, base: "http://" + d.addr}
			eventually(t, propagationBudget, fmt.Sprintf("round %d: daemon %d agrees", i, j), func() bool {
				return exists(filepath.Join(d.mnt, "active", targets[winner])) &&
					gone(filepath.Join(d.mnt, "active", targets[1-winner])) &&
					gone(filepath.Join(d.mnt, "active", name)) &&
					r.image(id)["name"] == targets[winner]
			})
		}

		// Both delete it at once: one rm succeeds, the other finds nothing.
		start = make(chan struct{})
		for j, d := range ds {
			go func() {
				<-start
				errs[j] = os.Remove(filepath.Join(d.mnt, "images", id))
				done <- j
			}()
		}
		close(start)
		<-done
		<-done
		ok := 0
		for _, err := range errs {
			if err == nil {
				ok++
			} else if !errors.Is(err, syscall.ENOENT) {
				t.Fatalf("round %d: the losing rm failed with %v, want ENOENT", i, err)
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d deletions succeeded: %v", i, ok, errs)
		}
		for _, d := range ds {
			eventually(t, propagationBudget, "the deletion everywhere", func() bool { return gone(filepath.Join(d.mnt, "images", id)) })
		}
	}
}

// The etcd leader SIGKILLed while two daemons write: every write a daemon
// acknowledged is there afterwards, through both daemons; a write refused
// meanwhile is refused with 503 (the registry has no quorum for a moment),
// not a hang or a 500; writes resume within seconds; and the change feed
// goes on (a change in A still reaches B's mount in time).
func TestSharedEtcdLeaderKilled(t *testing.T) {
	cluster, _, ds := sharedDaemons(t, 2)
	const (
		run      = 6 * time.Second
		killAt   = 2 * time.Second
		maxWrite = 2000 // per writer: a bound on the loop, never reached
	)
	type result struct {
		acked   []string
		refused map[int]int
		gap     time.Duration
	}
	results := make([]result, len(ds))
	start := time.Now()
	done := make(chan int)
	for w, d := range ds {
		go func() {
			defer func() { done <- w }()
			res := &results[w]
			res.refused = map[int]int{}
			client := &http.Client{Timeout: 30 * time.Second}
			last := time.Now()
			for i := 0; i < maxWrite && time.Since(start) < run; i++ {
				body := fmt.Sprintf(`{"name": "w%d-%d", "disk_format": "raw", "container_format": "bare"}`, w, i)
				req, _ := http.NewRequest("POST", "http://"+d.addr+"/v2/images", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					res.refused[-1]++
					continue
				}
				var created struct{ ID string }
				if resp.StatusCode == http.StatusCreated {
					if err := json.NewDecoder(resp.Body).Decode(&created); err == nil && created.ID != "" {
						res.acked = append(res.acked, created.ID)
						res.gap = max(res.gap, time.Since(last))
						last = time.Now()
					}
				} else {
					res.refused[resp.StatusCode]++
				}
				resp.Body.Close()
			}
		}()
	}
	time.Sleep(killAt)
	leader := cluster.Leader(t)
	cluster.Kill(t, leader)
	killed := time.Now()
	<-done
	<-done
	cluster.Restart(t, leader)

	total := 0
	for w, res := range results {
		t.Logf("writer %d: %d acknowledged, refused %v, longest gap between acknowledgements %v",
			w, len(res.acked), res.refused, res.gap.Round(time.Millisecond))
		for st, n := range res.refused {
			if st != http.StatusServiceUnavailable {
				t.Errorf("writer %d: %d writes answered %d (-1: no answer), want only 503 while the leader is gone", w, n, st)
			}
		}
		if res.gap > 5*time.Second {
			t.Errorf("writer %d: no write acknowledged for %v after the leader died", w, res.gap)
		}
		total += len(res.acked)
	}
	if total == 0 {
		t.Fatal("no write acknowledged at all")
	}
	// Every acknowledged write is there, through both daemons.
	for _, res := range results {
		for _, id := range res.acked {
			for _, d := range ds {
				r := rest{t: t, base: "http://" + d.addr}
				if st, body := r.do("GET", "/v2/images/"+id, "", nil); st != http.StatusOK {
					t.Fatalf("acknowledged image %s lost after the leader was killed: %d %s", id, st, body)
				}
			}
		}
	}
	t.Logf("%d acknowledged images all present in both daemons; leader (member %d) killed %v into the run",
		total, leader, killed.Sub(start).Round(time.Millisecond))

	// The feed still carries A's changes to B's mount.
	a, b := ds[0], ds[1]
	ra := rest{t: t, base: "http://" + a.addr}
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("after-%d", i)
		if exists(filepath.Join(b.mnt, "queued", name)) {
			t.Fatalf("%s in B before it was made", name)
		}
		ra.create(name)
		eventually(t, propagationBudget, name+" in B's mount after the leader change", func() bool {
			return exists(filepath.Join(b.mnt, "queued", name))
		})
	}
}

// gc and scrub with --data work on the registry and store directly, so on
// an etcd registry they refuse while any daemon holds a lease on it, and
// run once the daemons stopped (a clean stop gives the lease up).
func TestSharedDirectGCRefusesWhileLeased(t *testing.T) {
	cluster, _, ds := sharedDaemons(t, 1)
	direct := []string{"--data", filepath.Join(t.TempDir(), "direct"), "--registry", cluster.URL("shared"), "--store", "s3://images/glimpse"}
	for _, cmd := range []string{"gc", "scrub"} {
		out, err := glimpse(t, append([]string{cmd}, direct...)...)
		if err == nil || !strings.Contains(out, "hold a lease on this registry") {
			t.Fatalf("%s --data beside a live daemon: %v\n%s", cmd, err, out)
		}
	}
	ds[0].stop()
	if out, err := glimpse(t, append([]string{"gc"}, direct...)...); err != nil {
		t.Fatalf("gc --data once the daemon stopped: %v\n%s", err, out)
	}
}

// etcd stalled: one member SIGSTOPped (the leader) while a daemon writes,
// then every member, as when a daemon is cut off from etcd. With one member
// stalled, writes go on within seconds (after an election, once the
// daemons leave the stalled member) and none acknowledged is lost;
// with all of them, writes fail with 503 (REST) and EIO (mount) within a
// bounded time, reads of an open image go on from the store, and once etcd
// answers again the daemons write and see each other's changes as before.
func TestSharedEtcdStalled(t *testing.T) {
	// A stalled member keeps its connections open, so gRPC's keep-alive
	// would give up on it only after 12 s; the registry probes every member
	// and leaves one that misses two probes (about 2 s; measured: the
	// first create acknowledged 2.3 s after the leader stopped, also the
	// time of the election). The bound leaves a loaded machine a margin.
	const stalledWriteBound = 5 * time.Second
	cluster, _, ds := sharedDaemons(t, 2)
	a, b := ds[0], ds[1]
	ra, rb := rest{t: t, base: "http://" + a.addr}, rest{t: t, base: "http://" + b.addr}
	tmp := t.TempDir()
	src := randomFile(t, tmp, "open.img", 8<<20)
	mustRun(t, "cp", src, filepath.Join(a.mnt, "active", "open.img"))
	open, err := os.Open(filepath.Join(a.mnt, "active", "open.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()

	// One member stalled: the leader.
	leader := cluster.Leader(t)
	cluster.Pause(t, leader)
	paused := []int{leader}
	defer func() {
		for _, i := range paused {
			cluster.Resume(t, i)
		}
	}()
	var acked []string
	refused := 0
	stalledAt := time.Now()
	var firstAck time.Duration
	for i := 0; time.Since(stalledAt) < stalledWriteBound && len(acked) < 20; i++ {
		st, body := ra.do("POST", "/v2/images", "application/json",
			strings.NewReader(fmt.Sprintf(`{"name": "stalled-%d", "disk_format": "raw", "container_format": "bare"}`, i)))
		switch st {
		case http.StatusCreated:
			if acked = append(acked, ra.decode(body)["id"].(string)); len(acked) == 1 {
				firstAck = time.Since(stalledAt)
			}
		case http.StatusServiceUnavailable:
			refused++
		default:
			t.Fatalf("create with the leader stalled: %d %s", st, body)
		}
	}
	if len(acked) == 0 || firstAck > stalledWriteBound {
		t.Fatalf("no write acknowledged within %v with one member of three stalled (%d refused with 503)", stalledWriteBound, refused)
	}
	t.Logf("leader stalled: the first create acknowledged %v after, %d refused with 503 before", firstAck.Round(time.Millisecond), refused)
	cluster.Resume(t, leader)
	paused = nil
	for _, id := range acked {
		if st, _ := rb.do("GET", "/v2/images/"+id, "", nil); st != http.StatusOK {
			t.Fatalf("acknowledged image %s missing after the leader stalled", id)
		}
	}
	t.Logf("leader stalled: %d creates acknowledged, all present after", len(acked))

	// Every member stalled: the daemons are cut off.
	for i := range cluster.Endpoints {
		cluster.Pause(t, i)
		paused = append(paused, i)
	}
	start := time.Now()
	st, body := ra.do("POST", "/v2/images", "application/json", strings.NewReader(`{"name": "cut-off"}`))
	took := time.Since(start)
	if st != http.StatusServiceUnavailable {
		t.Fatalf("create cut off from etcd: %d %s, want 503", st, body)
	}
	if took > 15*time.Second {
		t.Fatalf("create cut off from etcd took %v to fail", took)
	}
	start = time.Now()
	err = os.WriteFile(filepath.Join(a.mnt, "queued", "cut-off.raw"), nil, 0o644)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("touch in the mount cut off from etcd: %v, want EIO", err)
	}
	t.Logf("cut off: REST create refused with 503 after %v, touch with EIO after %v", took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	buf := make([]byte, 1<<20)
	if _, err := open.ReadAt(buf, 4<<20); err != nil {
		t.Fatalf("reading an open image while cut off: %v", err)
	}
	for _, i := range paused {
		cluster.Resume(t, i)
	}
	paused = nil

	// Back: writes work and changes propagate.
	eventually(t, 30*time.Second, "a create once etcd is back", func() bool {
		st, _ := ra.do("POST", "/v2/images", "application/json", strings.NewReader(`{"name": "back"}`))
		return st == http.StatusCreated
	})
	if exists(filepath.Join(b.mnt, "queued", "back-again")) {
		t.Fatal("back-again in B before it was made")
	}
	ra.create("back-again")
	eventually(t, propagationBudget, "A's change in B's mount after the outage", func() bool {
		return exists(filepath.Join(b.mnt, "queued", "back-again"))
	})
	mustRun(t, "cmp", src, filepath.Join(b.mnt, "active", "open.img"))
}
