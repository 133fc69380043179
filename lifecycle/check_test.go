package lifecycle

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/meta"
)

// kinds sums up a report as "kind:image-or-key" strings, sorted.
func kinds(rep CheckReport) []string {
	var out []string
	for _, p := range rep.Problems {
		who := p.Image
		if who == "" {
			who = p.Key
		}
		out = append(out, p.Kind+":"+who)
	}
	sort.Strings(out)
	return out
}

func (e env) plant(t *testing.T, key string, data []byte) {
	t.Helper()
	w, err := e.be.Create(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestCheckCleanCatalogue(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a, b := random(t, 3<<20+5), random(t, 1000)
	e.upload(t, "a", a)
	e.upload(t, "b", b)
	e.create(t, "queued")
	bad := e.create(t, "evil")
	up, err := e.svc.BeginUpload(ctx, admin, bad.ID)
	if err != nil {
		t.Fatal(err)
	}
	up.Abort(ctx, "test kill")
	rep, err := e.svc.Check(ctx, CheckOptions{Rehash: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 || rep.Images != 4 || rep.Objects != 2 || rep.BytesHashed != int64(len(a)+len(b)) {
		t.Fatalf("check of a clean catalogue: %+v", rep)
	}
}

// Scrub finds a flipped byte, a truncated object, a missing object and an
// orphan; only with mark does it change anything, and then it deactivates
// the damaged images and says why, deleting nothing.
func TestScrubFindsAndMarksDamage(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	flipped := e.upload(t, "flipped", random(t, 1<<20))
	truncated := e.upload(t, "truncated", random(t, 1<<20))
	missing := e.upload(t, "missing", random(t, 1<<20))
	fine := e.upload(t, "fine", random(t, 1<<20))
	if _, err := e.svc.Deactivate(ctx, admin, truncated.ID); err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(e.be.Dir(), flipped.StoreKey)
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	content[12345] ^= 0x40
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(e.be.Dir(), truncated.StoreKey), 1000); err != nil {
		t.Fatal(err)
	}
	if err := e.be.Delete(ctx, missing.StoreKey); err != nil {
		t.Fatal(err)
	}
	e.plant(t, "planted-orphan", []byte("nobody's"))

	want := []string{"hash:" + flipped.ID, "missing:" + missing.ID, "orphan:planted-orphan", "size:" + truncated.ID}
	sort.Strings(want)
	rep, err := e.svc.Scrub(ctx, admin, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(rep); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("scrub found %v, want %v", got, want)
	}
	if img, _ := e.store.Get(flipped.ID); img.Status != meta.Active {
		t.Fatalf("scrub without mark changed the image: %s", img.Status)
	}

	rep, err = e.svc.Scrub(ctx, admin, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Problems {
		if p.Marked != (p.Kind != ProblemOrphan) {
			t.Errorf("problem %+v: marked %v", p, p.Marked)
		}
	}
	for _, id := range []string{flipped.ID, truncated.ID, missing.ID} {
		img, err := e.store.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if img.Status != meta.Deactivated || img.Properties[ScrubErrorProperty] == "" || img.StoreKey == "" {
			t.Errorf("marked image %s: status %s, properties %v, store key %q", img.Name, img.Status, img.Properties, img.StoreKey)
		}
	}
	if img, _ := e.store.Get(fine.ID); img.Status != meta.Active || img.Properties[ScrubErrorProperty] != "" {
		t.Errorf("undamaged image touched: %+v", img)
	}
	if !strings.Contains(e.mustGet(t, flipped.ID).Properties[ScrubErrorProperty], "md5") {
		t.Errorf("reason for the flipped byte: %q", e.mustGet(t, flipped.ID).Properties[ScrubErrorProperty])
	}
	if keys := e.objects(t); len(keys) != 4 {
		t.Errorf("scrub removed content: %v", keys)
	}
}

func (e env) mustGet(t *testing.T, id string) *meta.Image {
	t.Helper()
	img, err := e.store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// An image left saving without a writer is stuck; one being written is not.
func TestCheckFindsStuckUploads(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	stuck := e.create(t, "stuck")
	if _, err := e.store.Update(ctx, stuck.ID, func(img *meta.Image) error { img.Status = meta.Saving; return nil }); err != nil {
		t.Fatal(err)
	}
	writing := e.create(t, "writing")
	up, err := e.svc.BeginUpload(ctx, admin, writing.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Abort(ctx, "test over")
	up.Write(random(t, 4096))
	rep, err := e.svc.Check(ctx, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(rep); strings.Join(got, " ") != "stuck:"+stuck.ID {
		t.Fatalf("check found %v, want only the stuck upload", got)
	}
}

// On a shared catalogue an upload another daemon writes has no writer in
// this process: it is stuck only once that daemon's lease is gone.
func TestCheckSparesAnotherDaemonsUpload(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	other, err := e.db.Grant(ctx, time.Minute, []byte("test-daemon/"), []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	img := e.create(t, "elsewhere")
	if _, err := e.store.Update(ctx, img.ID, func(cur *meta.Image) error {
		cur.Status, cur.WriterLease = meta.Saving, other.ID()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rep, err := e.svc.Check(ctx, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(rep); len(got) != 0 {
		t.Fatalf("check found %v in a live daemon's upload", got)
	}
	if err := other.Revoke(ctx); err != nil {
		t.Fatal(err)
	}
	if rep, err = e.svc.Check(ctx, CheckOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := kinds(rep); strings.Join(got, " ") != "stuck:"+img.ID {
		t.Fatalf("check found %v once its daemon's lease was gone, want it stuck", got)
	}
}

// GC removes objects no image owns (a planted one, a killed image's
// leftover) and incomplete writes without a live upload, and spares active
// content and an upload in flight, which then completes.
func TestGCRemovesOrphansAndStaleWrites(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	kept := e.upload(t, "kept", random(t, 1<<20))
	killed := e.create(t, "killed")
	up, err := e.svc.BeginUpload(ctx, admin, killed.ID)
	if err != nil {
		t.Fatal(err)
	}
	up.Abort(ctx, "test kill")
	e.plant(t, killed.ID, []byte("left behind"))
	e.plant(t, "planted-orphan", []byte("nobody's"))
	stale, err := e.be.Create(ctx, "crashed-writer")
	if err != nil {
		t.Fatal(err)
	}
	stale.Write([]byte("abandoned"))

	liveImg := e.create(t, "live")
	live, err := e.svc.BeginUpload(ctx, admin, liveImg.ID)
	if err != nil {
		t.Fatal(err)
	}
	data := random(t, 2<<20)
	if _, err := live.Write(data[:1<<20]); err != nil {
		t.Fatal(err)
	}

	member := Principal{Project: "member"}
	if _, err := e.svc.GC(ctx, member, false); !errors.Is(err, ErrForbidden) {
		t.Fatalf("gc by a project member: %v, want forbidden", err)
	}
	if _, err := e.svc.Scrub(ctx, member, true); !errors.Is(err, ErrForbidden) {
		t.Fatalf("scrub by a project member: %v, want forbidden", err)
	}
	if objs := e.objects(t); len(objs) != 3 {
		t.Fatalf("objects after refused gc: %v", objs)
	}

	dry, err := e.svc.GC(ctx, admin, true)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(dry.Orphans)
	wantOrphans := []string{killed.ID, "planted-orphan"}
	sort.Strings(wantOrphans)
	if strings.Join(dry.Orphans, " ") != strings.Join(wantOrphans, " ") || len(e.objects(t)) != 3 {
		t.Fatalf("dry run: %+v, objects %v", dry, e.objects(t))
	}

	rep, err := e.svc.GC(ctx, admin, false)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(rep.Orphans)
	if strings.Join(rep.Orphans, " ") != strings.Join(wantOrphans, " ") || !rep.IncompleteAborted {
		t.Fatalf("gc: %+v", rep)
	}
	if keys := e.objects(t); strings.Join(keys, " ") != kept.ID {
		t.Fatalf("store after gc: %v, want only %s", keys, kept.ID)
	}
	partial, err := os.ReadDir(filepath.Join(e.be.Dir(), ".partial"))
	if err != nil {
		t.Fatal(err)
	}
	if len(partial) != 1 || !strings.HasPrefix(partial[0].Name(), liveImg.ID+".") {
		t.Fatalf(".partial after gc: %v, want only the live upload's file", partial)
	}
	if _, err := live.Write(data[1<<20:]); err != nil {
		t.Fatal(err)
	}
	done, err := live.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkActive(t, done, data)
	rep2, err := e.svc.Check(ctx, CheckOptions{Rehash: true})
	if err != nil || len(rep2.Problems) != 0 {
		t.Fatalf("check after gc: %+v %v", rep2, err)
	}
}
