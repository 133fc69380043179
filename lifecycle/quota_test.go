package lifecycle

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/glimpse-project/glimpse/meta"
)

// Two uploads of one project, each within the byte quota alone, together
// over it: the write that crosses fails, that image is killed with the
// reason and leaves nothing stored, and the other one commits.
func TestQuotaConcurrentUploads(t *testing.T) {
	e := newEnv(t)
	e.svc = New(Config{Store: e.store, Backend: e.be, Quota: Quota{Bytes: 1000}})
	ctx := context.Background()
	a, b := e.create(t, "a"), e.create(t, "b")
	upA, err := e.svc.BeginUpload(ctx, admin, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	upB, err := e.svc.BeginUpload(ctx, admin, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	dataA := random(t, 600)
	if _, err := upA.Write(dataA); err != nil {
		t.Fatal(err)
	}
	if _, err := upB.Write(random(t, 300)); err != nil {
		t.Fatalf("B within what A leaves: %v", err)
	}
	if _, err := upB.Write(random(t, 300)); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("B crossing the quota: %v, want ErrOverQuota", err)
	}
	if _, err := upB.Commit(ctx); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("B's commit: %v", err)
	}
	img, err := upA.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkActive(t, img, dataA)
	killed, _ := e.store.Get(b.ID)
	if killed.Status != meta.Killed || killed.Error == "" {
		t.Fatalf("B: %s %q", killed.Status, killed.Error)
	}
	if objs := e.objects(t); len(objs) != 1 || objs[0] != a.ID {
		t.Fatalf("store: %v", objs)
	}
}

// Many concurrent creates never pass image_count_total.
func TestQuotaConcurrentCreates(t *testing.T) {
	e := newEnv(t)
	e.svc = New(Config{Store: e.store, Backend: e.be, Quota: Quota{Images: 5}})
	var wg sync.WaitGroup
	var mu sync.Mutex
	created, refused := 0, 0
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.svc.Create(context.Background(), Principal{Project: "p1"}, CreateSpec{Name: "x"})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				created++
			case errors.Is(err, ErrOverQuota):
				refused++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if created != 5 || refused != 15 {
		t.Fatalf("created %d, refused %d; want 5 and 15", created, refused)
	}
	if _, err := e.svc.Create(context.Background(), Principal{Project: "p2"}, CreateSpec{Name: "x"}); err != nil {
		t.Fatalf("another project: %v", err)
	}
}

// BenchmarkCreateWithQuota measures what an image-count quota costs a
// create in a catalogue of 5,000 images, against no quota:
// go test -run '^$' -bench CreateWithQuota ./lifecycle
func BenchmarkCreateWithQuota(b *testing.B) {
	for _, quota := range []Quota{{}, {Images: 1 << 40}} {
		name := "none"
		if quota.any() {
			name = "images"
		}
		b.Run(name, func(b *testing.B) {
			e := newEnv(b)
			p := Principal{Project: "p1"}
			for i := 0; i < 5000; i++ {
				if _, err := e.svc.Create(context.Background(), p, CreateSpec{Name: "x"}); err != nil {
					b.Fatal(err)
				}
			}
			e.svc = New(Config{Store: e.store, Backend: e.be, Quota: quota})
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := e.svc.Create(context.Background(), p, CreateSpec{Name: "x"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The usage the registry counts follows every change: after creates, uploads, a kill and
// deletes it agrees with a fresh scan of the catalogue, and a service
// started on an existing catalogue counts what is there.
func TestQuotaLedgerMatchesTheCatalogue(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	q := Quota{Images: 100, Bytes: 1 << 30}
	e.svc = New(Config{Store: e.store, Backend: e.be, Quota: q})
	p := Principal{Project: "p1"}
	var ids []string
	for i := 0; i < 4; i++ {
		img, err := e.svc.Create(ctx, p, CreateSpec{Name: "x"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, img.ID)
	}
	for i, id := range ids[:3] {
		up, err := e.svc.BeginUpload(ctx, p, id)
		if err != nil {
			t.Fatal(err)
		}
		up.Write(random(t, 1000*(i+1)))
		if i == 2 {
			up.Abort(ctx, "test")
			continue
		}
		if _, err := up.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.svc.Delete(ctx, p, ids[0]); err != nil {
		t.Fatal(err)
	}
	want := usage{images: 3, stored: 2000}
	for _, svc := range []*Service{e.svc, New(Config{Store: e.store, Backend: e.be, Quota: q})} {
		if got, err := svc.usageOf("p1", ""); err != nil || got != want {
			t.Fatalf("usage %+v %v, want %+v", got, err, want)
		}
	}
}
