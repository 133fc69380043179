package meta

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/meta/kv"
	"github.com/glimpse-project/glimpse/meta/kv/badgerkv"
	"github.com/glimpse-project/glimpse/meta/kv/etcdkv"
	"github.com/glimpse-project/glimpse/meta/kv/kvtest"
)

// recorder keeps the events a subscriber saw.
type recorder struct {
	mu     sync.Mutex
	events []Event
	seen   chan struct{}
}

func record(s *Store) *recorder {
	r := &recorder{seen: make(chan struct{}, 1)}
	s.Subscribe(func(ev Event) {
		r.mu.Lock()
		r.events = append(r.events, ev)
		r.mu.Unlock()
		select {
		case r.seen <- struct{}{}:
		default:
		}
	})
	return r
}

// waitFor waits until an event satisfies ok, and returns it.
func (r *recorder) waitFor(t *testing.T, what string, ok func(Event) bool) Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		r.mu.Lock()
		for _, ev := range r.events {
			if ok(ev) {
				r.mu.Unlock()
				return ev
			}
		}
		r.mu.Unlock()
		select {
		case <-r.seen:
		case <-deadline:
			t.Fatalf("no event %s within 5 s", what)
		}
	}
}

func openEtcd(t *testing.T, url string) kv.KV {
	t.Helper()
	cfg, err := etcdkv.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	db, err := etcdkv.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Two Stores on one etcd prefix are two daemons sharing a catalogue: each
// sees the other's changes, with the old and new records.
func TestFeedAcrossDaemons(t *testing.T) {
	cluster := kvtest.StartEtcd(t, 1)
	a, err := Open(openEtcd(t, cluster.URL("feed")))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(openEtcd(t, cluster.URL("feed")))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	seenByB := record(b)

	img, err := a.Create(ctx, &Image{ID: "x", Name: "disk", Status: Queued})
	if err != nil {
		t.Fatal(err)
	}
	ev := seenByB.waitFor(t, "for the creation", func(ev Event) bool { return ev.New != nil && ev.New.ID == "x" })
	if ev.Old != nil || ev.New.Name != "disk" || ev.Rev == 0 {
		t.Fatalf("creation event: %+v", ev)
	}
	if _, err := a.Update(ctx, "x", func(img *Image) error { img.Name = "renamed"; return nil }); err != nil {
		t.Fatal(err)
	}
	ev = seenByB.waitFor(t, "for the rename", func(ev Event) bool { return ev.New != nil && ev.New.Name == "renamed" })
	if ev.Old == nil || ev.Old.Name != "disk" {
		t.Fatalf("rename event without the old record: %+v", ev)
	}
	if _, err := a.Delete(ctx, img.ID, nil); err != nil {
		t.Fatal(err)
	}
	ev = seenByB.waitFor(t, "for the deletion", func(ev Event) bool { return ev.New == nil && ev.Old != nil })
	if ev.Old.Name != "renamed" {
		t.Fatalf("deletion event: %+v", ev)
	}
	// B's reads agree with A's writes.
	if _, err := b.Get("x"); err == nil {
		t.Fatal("B still reads the deleted image")
	}
}

// A writer's own subscribers have seen its change when it returns, on
// either engine.
func TestFeedDeliversBeforeReturn(t *testing.T) {
	cluster := kvtest.StartEtcd(t, 1)
	engines := map[string]func(t *testing.T) *Store{
		"etcd": func(t *testing.T) *Store {
			s, err := Open(openEtcd(t, cluster.URL("own")))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			return s
		},
	}
	stores(t, func(t *testing.T, s *Store) { checkDeliveredBeforeReturn(t, s) })
	for name, open := range engines {
		t.Run(name, func(t *testing.T) { checkDeliveredBeforeReturn(t, open(t)) })
	}
}

func checkDeliveredBeforeReturn(t *testing.T, s *Store) {
	r := record(s)
	for i := 0; i < 20; i++ {
		id := fmt.Sprint("img", i)
		if _, err := s.Create(ctx, &Image{ID: id, Status: Queued}); err != nil {
			t.Fatal(err)
		}
		r.mu.Lock()
		n := len(r.events)
		last := r.events[n-1]
		r.mu.Unlock()
		if n != i+1 || last.New == nil || last.New.ID != id {
			t.Fatalf("after create %d: %d events, last %+v", i, n, last)
		}
	}
}

// A feed that fell behind a compaction tells its subscribers to
// resynchronise and goes on with later changes.
func TestFeedResyncsAfterCompaction(t *testing.T) {
	cluster := kvtest.StartEtcd(t, 1)
	for name, compact := range map[string]func(db kv.KV, rev int64){
		"etcd": func(db kv.KV, rev int64) {
			if _, err := db.(*etcdkv.DB).Client().Compact(ctx, rev); err != nil {
				t.Fatal(err)
			}
		},
		"badger": func(db kv.KV, rev int64) { db.(*badgerkv.DB).Compact(rev) },
	} {
		t.Run(name, func(t *testing.T) {
			var db kv.KV
			if name == "etcd" {
				db = openEtcd(t, cluster.URL("compact"))
			} else {
				bdb, err := badgerkv.Open("", slog.New(slog.DiscardHandler))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { bdb.Close() })
				db = bdb
			}
			writer, err := Open(db)
			if err != nil {
				t.Fatal(err)
			}
			defer writer.Close()
			start, err := writer.revision(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{"a", "b", "c"} {
				if _, err := writer.Create(ctx, &Image{ID: id, Status: Queued}); err != nil {
					t.Fatal(err)
				}
			}
			now, err := writer.revision(ctx)
			if err != nil {
				t.Fatal(err)
			}
			compact(db, now)
			// A daemon whose feed stood at start, before the compaction.
			late := &Store{kv: db, now: writer.now}
			var r *recorder
			late.startFeedPaused(start, slog.New(slog.DiscardHandler), func() { r = record(late) })
			defer late.Close()
			ev := r.waitFor(t, "to resynchronise", func(ev Event) bool { return ev.Resync })
			if ev.Rev < now {
				t.Fatalf("resync at revision %d, before the compaction at %d", ev.Rev, now)
			}
			if _, err := writer.Update(ctx, "a", func(img *Image) error { img.Name = "after"; return nil }); err != nil {
				t.Fatal(err)
			}
			r.waitFor(t, "after the resync", func(ev Event) bool { return ev.New != nil && ev.New.Name == "after" })
		})
	}
}
