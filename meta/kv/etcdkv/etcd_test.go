package etcdkv_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/glimpse-project/glimpse/meta/kv"
	"github.com/glimpse-project/glimpse/meta/kv/etcdkv"
	"github.com/glimpse-project/glimpse/meta/kv/kvtest"
)

func TestConformance(t *testing.T) {
	cluster := kvtest.StartEtcd(t, 1)
	n := 0
	kvtest.Run(t, kvtest.Engine{
		Open: func(t *testing.T) kv.KV {
			n++ // each test its own prefix on the one cluster
			cfg, err := etcdkv.ParseURL(cluster.URL(fmt.Sprintf("conformance%d", n)))
			if err != nil {
				t.Fatal(err)
			}
			db, err := etcdkv.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		},
		Compact: func(t *testing.T, db kv.KV, rev int64) {
			if _, err := db.(*etcdkv.DB).Client().Compact(context.Background(), rev); err != nil {
				t.Fatal(err)
			}
		},
	})
}
