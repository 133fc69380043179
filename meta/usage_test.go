package meta

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/glimpse-project/glimpse/meta/kv"
	"github.com/glimpse-project/glimpse/meta/kv/badgerkv"
	"github.com/glimpse-project/glimpse/meta/kv/kvtest"
)

func size(n int64) *int64 { return &n }

// Usage follows creates, uploads, owner changes and deletes, in the same
// transaction as each.
func TestUsageCounted(t *testing.T) {
	stores(t, func(t *testing.T, s *Store) {
		want := func(project string, u Usage) {
			t.Helper()
			got, err := s.Usage(project)
			if err != nil || got != u {
				t.Fatalf("usage of %s: %+v %v, want %+v", project, got, err, u)
			}
		}
		for _, id := range []string{"a", "b", "c"} {
			if _, err := s.Create(ctx, &Image{ID: id, Owner: "p1", Status: Queued}); err != nil {
				t.Fatal(err)
			}
		}
		want("p1", Usage{Images: 3})
		if _, err := s.Update(ctx, "a", func(img *Image) error { img.Status = Saving; return nil }); err != nil {
			t.Fatal(err)
		}
		want("p1", Usage{Images: 3, Uploading: 1})
		if _, err := s.Update(ctx, "a", func(img *Image) error { img.Status = Active; img.Size = size(1000); return nil }); err != nil {
			t.Fatal(err)
		}
		want("p1", Usage{Images: 3, Stored: 1000})
		if _, err := s.Update(ctx, "b", func(img *Image) error { img.Owner = "p2"; return nil }); err != nil {
			t.Fatal(err)
		}
		want("p1", Usage{Images: 2, Stored: 1000})
		want("p2", Usage{Images: 1})
		if _, err := s.Delete(ctx, "a", nil); err != nil {
			t.Fatal(err)
		}
		want("p1", Usage{Images: 1})
	})
}

// A registry of schema 1 (before usage was counted) is upgraded at Open:
// each project's usage is counted from its records.
func TestUsageUpgrade(t *testing.T) {
	dir := t.TempDir()
	db, err := badgerkv.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(db)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := s.Create(ctx, &Image{ID: fmt.Sprint(i), Owner: fmt.Sprint("p", i%2), Status: Active, Size: size(10)}); err != nil {
			t.Fatal(err)
		}
	}
	// Back to what schema 1 wrote: no counters.
	if _, err := db.Update(ctx, func(tx kv.Txn) error {
		var keys [][]byte
		if err := tx.Scan([]byte("u/"), func(k, _ []byte) error {
			keys = append(keys, append([]byte(nil), k...))
			return nil
		}); err != nil {
			return err
		}
		for _, k := range keys {
			if err := tx.Delete(k); err != nil {
				return err
			}
		}
		return tx.Set(versionKey, []byte("1"))
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for p, want := range map[string]Usage{"p0": {Images: 3, Stored: 30}, "p1": {Images: 2, Stored: 20}} {
		if got, err := s.Usage(p); err != nil || got != want {
			t.Fatalf("usage of %s after the upgrade: %+v %v, want %+v", p, got, err, want)
		}
	}
	db.Close()
}

// Two daemons on one etcd creating a project's images at once: the limit,
// asked inside each transaction, lets exactly as many through as it
// allows, whichever daemon makes them.
func TestUsageLimitExactAcrossDaemons(t *testing.T) {
	cluster := kvtest.StartEtcd(t, 1)
	const quota, tries = 7, 20
	errQuota := errors.New("over quota")
	var stores []*Store
	for i := 0; i < 2; i++ {
		s, err := Open(openEtcd(t, cluster.URL("usage")))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		s.SetLimit(func(project string, before, after Usage) error {
			if after.Images > quota {
				return errQuota
			}
			return nil
		})
		stores = append(stores, s)
	}
	var made, refused atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[w%2]
			for i := 0; i < tries/4; i++ {
				_, err := s.Create(context.Background(), &Image{ID: fmt.Sprintf("w%d-%d", w, i), Owner: "p", Status: Queued})
				switch {
				case err == nil:
					made.Add(1)
				case errors.Is(err, errQuota):
					refused.Add(1)
				default:
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if made.Load() != quota || refused.Load() != tries-quota {
		t.Fatalf("made %d, refused %d; want %d and %d", made.Load(), refused.Load(), quota, tries-quota)
	}
	if u, err := stores[1].Usage("p"); err != nil || u.Images != quota {
		t.Fatalf("usage %+v %v", u, err)
	}
}
