// Package lifecycletest builds a real lifecycle for the tests of the faces
// above it: an in-memory registry and a local store in a temp dir.
package lifecycletest

import (
	"log/slog"
	"testing"

	"github.com/glimpse-project/glimpse/backend/local"
	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
	"github.com/glimpse-project/glimpse/meta/kv/badgerkv"
)

// Admin is the principal the daemon's mount uses by default.
var Admin = lifecycle.Principal{Project: "admin", Admin: true}

// Env is a lifecycle with its registry and store, torn down with the test.
type Env struct {
	Service *lifecycle.Service
	Store   *meta.Store
	Backend *local.Local
}

// New returns a fresh Env; cfg's Store and Backend are filled in.
func New(t testing.TB, cfg lifecycle.Config) Env {
	t.Helper()
	return NewIn(t, cfg, t.TempDir())
}

// NewIn is New with the local store in storeDir (a small filesystem, to
// fill it).
func NewIn(t testing.TB, cfg lifecycle.Config, storeDir string) Env {
	t.Helper()
	db, err := badgerkv.Open("", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := meta.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	be, err := local.Open(local.Config{Dir: storeDir})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store, cfg.Backend = store, be
	return Env{Service: lifecycle.New(cfg), Store: store, Backend: be}
}
