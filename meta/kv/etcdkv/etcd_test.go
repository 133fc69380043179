package etcdkv_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

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

// A lease whose process stops keeping it alive (a daemon killed) ends after
// its ttl, and its key goes with it, for every other client.
func TestLeaseExpires(t *testing.T) {
	cluster := kvtest.StartEtcd(t, 1)
	open := func() *etcdkv.DB {
		cfg, err := etcdkv.ParseURL(cluster.URL("lease"))
		if err != nil {
			t.Fatal(err)
		}
		db, err := etcdkv.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	dying, watcher := open(), open()
	defer watcher.Close()
	ctx := context.Background()
	l, err := dying.Grant(ctx, 2*time.Second, []byte("d/"), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	// Kept alive past its ttl while the process lives.
	time.Sleep(3 * time.Second)
	if alive, err := watcher.Alive(ctx, l.ID()); err != nil || !alive {
		t.Fatalf("a lease kept alive for 3 s of a 2 s ttl: alive %v, %v", alive, err)
	}
	dying.Close() // no revoke: the keep-alives stop, as when a daemon is killed
	start := time.Now()
	for {
		alive, err := watcher.Alive(ctx, l.ID())
		if err != nil {
			t.Fatal(err)
		}
		if !alive {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("the lease of a closed client still alive after 10 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("lease ended %v after its client went", time.Since(start).Round(10*time.Millisecond))
	err = watcher.View(ctx, func(tx kv.Txn) error { _, err := tx.Get(kv.LeaseKey([]byte("d/"), l.ID())); return err })
	if !errors.Is(err, kv.ErrNotFound) {
		t.Fatalf("the expired lease's key: %v", err)
	}
}
