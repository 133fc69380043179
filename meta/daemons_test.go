package meta

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// A joined Store stamps the work it starts with its lease and lists it in
// the work index until it ends; Daemons lists the joined daemon, Leave ends
// its lease.
func TestWriterLeaseAndWorkIndex(t *testing.T) {
	stores(t, func(t *testing.T, s *Store) {
		jctx, cancel := context.WithCancel(ctx)
		defer cancel()
		if err := s.Join(jctx, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		working := func() string {
			t.Helper()
			ids, err := s.Working()
			if err != nil {
				t.Fatal(err)
			}
			return fmt.Sprint(ids)
		}
		img, err := s.Create(ctx, &Image{ID: "a", Status: Queued})
		if err != nil || img.WriterLease != 0 || working() != "[]" {
			t.Fatalf("a queued image: lease %x, working %s, %v", img.WriterLease, working(), err)
		}
		img, err = s.Update(ctx, "a", func(img *Image) error { img.Status = Saving; return nil })
		if err != nil || img.WriterLease != s.Lease() || s.Lease() == 0 || working() != "[a]" {
			t.Fatalf("an upload: lease %x (ours %x), working %s, %v", img.WriterLease, s.Lease(), working(), err)
		}
		if alive, err := s.Alive(ctx, img.WriterLease); err != nil || !alive {
			t.Fatalf("our own lease: alive %v, %v", alive, err)
		}
		img, err = s.Update(ctx, "a", func(img *Image) error { img.Status = Active; img.Size = size(1); return nil })
		if err != nil || img.WriterLease != 0 || working() != "[]" {
			t.Fatalf("after the upload: lease %x, working %s, %v", img.WriterLease, working(), err)
		}
		ds, err := s.Daemons(ctx)
		if err != nil || len(ds) != 1 || ds[0].Lease != s.Lease() {
			t.Fatalf("daemons %+v, %v", ds, err)
		}
		lease := s.Lease()
		if err := s.Leave(ctx); err != nil {
			t.Fatal(err)
		}
		if alive, err := s.Alive(ctx, lease); err != nil || alive {
			t.Fatalf("a lease given up: alive %v, %v", alive, err)
		}
		if ds, err := s.Daemons(ctx); err != nil || len(ds) != 0 {
			t.Fatalf("daemons after Leave: %+v, %v", ds, err)
		}
	})
}
