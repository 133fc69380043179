package meta

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/glimpse-project/glimpse/meta/kv/badgerkv"
)

// stores runs fn against an on-disk badger and an in-memory one, each
// fresh per subtest.
var ctx = context.Background()

func stores(t *testing.T, fn func(t *testing.T, s *Store)) {
	for _, kind := range []string{"disk", "memory"} {
		t.Run(kind, func(t *testing.T) {
			dir := ""
			if kind == "disk" {
				dir = t.TempDir()
			}
			db, err := badgerkv.Open(dir, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			s, err := Open(db)
			if err != nil {
				t.Fatal(err)
			}
			fn(t, s)
		})
	}
}

func TestCanMove(t *testing.T) {
	for _, c := range []struct {
		from, to Status
		ok       bool
	}{
		{Queued, Saving, true},
		{Saving, Active, true},
		{Saving, Killed, true},
		{Active, Deactivated, true},
		{Deactivated, Active, true},
		{Active, Queued, false},
		{Active, Saving, false},
		{Killed, Active, false},
		{Deactivated, Killed, false},
		{Queued, Deactivated, false},
		{Active, Active, true},
	} {
		if got := CanMove(c.from, c.to); got != c.ok {
			t.Errorf("CanMove(%s, %s) = %v, want %v", c.from, c.to, got, c.ok)
		}
	}
}

func TestCreateGetUpdateDelete(t *testing.T) {
	stores(t, func(t *testing.T, s *Store) {
		var events []Event
		s.Subscribe(func(ev Event) { events = append(events, ev) })
		img, err := s.Create(ctx, &Image{ID: "a", Name: "disk", Status: Queued})
		if err != nil {
			t.Fatal(err)
		}
		if img.CreatedAt.IsZero() || !img.UpdatedAt.Equal(img.CreatedAt) {
			t.Fatalf("times not set: %+v", img)
		}
		if _, err := s.Create(ctx, &Image{ID: "a", Status: Queued}); !errors.Is(err, ErrExists) {
			t.Fatalf("second create: %v, want ErrExists", err)
		}
		got, err := s.Update(ctx, "a", func(img *Image) error { img.Status = Saving; img.Name = "disk2"; return nil })
		if err != nil || got.Status != Saving || got.Name != "disk2" {
			t.Fatalf("update: %+v %v", got, err)
		}
		if _, err := s.Update(ctx, "a", func(img *Image) error { img.Status = Deactivated; return nil }); !errors.Is(err, ErrIllegalMove) {
			t.Fatalf("illegal move: %v", err)
		}
		if back, _ := s.Get("a"); back.Status != Saving {
			t.Fatalf("a refused update changed the record: %+v", back)
		}
		if ids, _ := s.InStatus(Saving); fmt.Sprint(ids) != "[a]" {
			t.Fatalf("saving index: %v", ids)
		}
		if ids, _ := s.InStatus(Queued); len(ids) != 0 {
			t.Fatalf("stale queued index: %v", ids)
		}
		refuse := errors.New("refused")
		if _, err := s.Delete(ctx, "a", func(*Image) error { return refuse }); !errors.Is(err, refuse) {
			t.Fatalf("a refused delete: %v", err)
		}
		if _, err := s.Get("a"); err != nil {
			t.Fatalf("a refused delete removed the record: %v", err)
		}
		if _, err := s.Delete(ctx, "a", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get("a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get deleted: %v", err)
		}
		if ids, _ := s.Named(Saving, "disk2"); len(ids) != 0 {
			t.Fatalf("stale name index: %v", ids)
		}
		if len(events) != 3 || events[0].Old != nil || events[2].New != nil || events[1].Old.Status != Queued || events[1].New.Status != Saving {
			t.Fatalf("events: %d %+v", len(events), events)
		}
	})
}

func TestNamesSortedAndShared(t *testing.T) {
	stores(t, func(t *testing.T, s *Store) {
		for _, c := range [][2]string{{"3", "b"}, {"1", "a"}, {"2", "b"}, {"4", "with/slash"}, {"5", ""}, {"6", "b@x"}} {
			if _, err := s.Create(ctx, &Image{ID: c[0], Name: c[1], Status: Active}); err != nil {
				t.Fatal(err)
			}
		}
		var got []string
		s.Names(Active, func(e Entry) error { got = append(got, e.Name+"="+e.ID); return nil })
		if want := "[a=1 b=2 b=3 b@x=6]"; fmt.Sprint(got) != want {
			t.Fatalf("names: %v, want %s", got, want)
		}
		if ids, _ := s.Named(Active, "b"); fmt.Sprint(ids) != "[2 3]" {
			t.Fatalf("named b: %v", ids)
		}
		if ids, _ := s.InStatus(Active); len(ids) != 6 {
			t.Fatalf("unlistable names must still be in the status index: %v", ids)
		}
	})
}

func TestConcurrentUpdatesAllLand(t *testing.T) {
	stores(t, func(t *testing.T, s *Store) {
		if _, err := s.Create(ctx, &Image{ID: "c", Status: Queued}); err != nil {
			t.Fatal(err)
		}
		const n = 50
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.Update(ctx, "c", func(img *Image) error { img.MinRAM++; return nil })
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		img, _ := s.Get("c")
		if img.MinRAM != n {
			t.Fatalf("min_ram %d after %d concurrent increments: conflicts lost updates", img.MinRAM, n)
		}
	})
}

func TestReopenKeepsRecords(t *testing.T) {
	dir := t.TempDir()
	db, err := badgerkv.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := Open(db)
	s.Create(ctx, &Image{ID: "keep", Name: "k", Status: Active})
	db.Close()
	db, err = badgerkv.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err = Open(db)
	if err != nil {
		t.Fatal(err)
	}
	if img, err := s.Get("keep"); err != nil || img.Name != "k" {
		t.Fatalf("after reopen: %+v %v", img, err)
	}
}
