package badgerkv_test

import (
	"log/slog"
	"testing"

	"github.com/glimpse-project/glimpse/meta/kv"
	"github.com/glimpse-project/glimpse/meta/kv/badgerkv"
	"github.com/glimpse-project/glimpse/meta/kv/kvtest"
)

func TestConformance(t *testing.T) {
	for _, mode := range []struct {
		name string
		dir  func(t *testing.T) string
	}{
		{"memory", func(*testing.T) string { return "" }},
		{"disk", func(t *testing.T) string { return t.TempDir() }},
	} {
		t.Run(mode.name, func(t *testing.T) {
			kvtest.Run(t, kvtest.Engine{
				Open: func(t *testing.T) kv.KV {
					db, err := badgerkv.Open(mode.dir(t), slog.New(slog.DiscardHandler))
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { db.Close() })
					return db
				},
				Compact: func(t *testing.T, db kv.KV, rev int64) { db.(*badgerkv.DB).Compact(rev) },
			})
		})
	}
}
