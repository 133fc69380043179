package local_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/backend/backendtest"
	"github.com/glimpse-project/glimpse/backend/local"
)

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		l, err := local.Open(local.Config{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

// AbortStale removes the partial file of a dead write and keeps the live
// one's.
func TestAbortStaleRemovesPartialFiles(t *testing.T) {
	dir := t.TempDir()
	l, err := local.Open(local.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, key := range []string{"live", "dead"} {
		w, err := l.Create(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(key))
	}
	if err := l.AbortStale(ctx, func(key string) bool { return key == "live" }); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, ".partial"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || !strings.HasPrefix(entries[0].Name(), "live.") {
		t.Fatalf(".partial after AbortStale: %v, want only the live write", entries)
	}
}
