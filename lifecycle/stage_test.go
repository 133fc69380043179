package lifecycle_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/lifecycletest"
	"github.com/glimpse-project/glimpse/meta"
)

func newServiceWithStore(t *testing.T, maxSize int64) (*lifecycle.Service, backend.Backend) {
	t.Helper()
	env := lifecycletest.New(t, lifecycle.Config{MaxImageSize: maxSize})
	return env.Service, env.Backend
}

func keys(t *testing.T, be backend.Backend) []string {
	t.Helper()
	var out []string
	be.List(context.Background(), func(i backend.Info) error { out = append(out, i.Key); return nil })
	return out
}

func TestStageImportDelete(t *testing.T) {
	ctx := context.Background()
	s, be := newServiceWithStore(t, 100)
	img, _ := s.Create(ctx, admin, lifecycle.CreateSpec{Name: "s", DiskFormat: "raw", ContainerFormat: "bare"})
	if _, err := s.ImportStaged(ctx, admin, img.ID); !errors.Is(err, lifecycle.ErrConflict) {
		t.Fatalf("import before stage: %v", err)
	}
	staged, err := s.Stage(ctx, admin, img.ID, strings.NewReader("hello"))
	if err != nil || staged.Status != meta.Uploading || *staged.Size != 5 {
		t.Fatalf("stage: %+v, %v", staged, err)
	}
	if _, err := s.Stage(ctx, admin, img.ID, strings.NewReader("again")); !errors.Is(err, lifecycle.ErrConflict) {
		t.Fatalf("second stage: %v", err)
	}
	done, err := s.ImportStaged(ctx, admin, img.ID)
	if err != nil || done.Status != meta.Active || done.Checksum != "5d41402abc4b2a76b9719d911017c592" {
		t.Fatalf("import: %+v, %v", done, err)
	}
	if got := keys(t, be); len(got) != 1 || got[0] != img.ID {
		t.Fatalf("store after import: %v (staged data must be gone)", got)
	}

	// Deleting a staged image removes the staged bytes.
	other, _ := s.Create(ctx, admin, lifecycle.CreateSpec{Name: "o", DiskFormat: "raw", ContainerFormat: "bare"})
	if _, err := s.Stage(ctx, admin, other.ID, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, admin, other.ID); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, be); len(got) != 1 {
		t.Fatalf("store after deleting a staged image: %v", got)
	}

	// Over the cap: refused, back to queued, nothing left behind.
	big, _ := s.Create(ctx, admin, lifecycle.CreateSpec{Name: "b", DiskFormat: "raw", ContainerFormat: "bare"})
	if _, err := s.Stage(ctx, admin, big.ID, strings.NewReader(strings.Repeat("x", 101))); !errors.Is(err, lifecycle.ErrTooLarge) {
		t.Fatalf("stage over the cap: %v", err)
	}
	if got, _ := s.Get(ctx, admin, big.ID); got.Status != meta.Queued {
		t.Fatalf("after a refused stage: %s", got.Status)
	}
	if got := keys(t, be); len(got) != 1 {
		t.Fatalf("store after a refused stage: %v", got)
	}
}
