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
	e.svc.quota = Quota{Bytes: 1000}
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
	e.svc.quota = Quota{Images: 5}
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
