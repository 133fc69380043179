package etcdkv_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/meta/kv"
	"github.com/glimpse-project/glimpse/meta/kv/etcdkv"
	"github.com/glimpse-project/glimpse/meta/kv/kvtest"
)

// hungMemberBound is how soon after a member hangs (SIGSTOP: its
// connections stay open, it answers nothing) writes are acknowledged
// again: two missed probes (about 2 s), or the election when it is the
// leader, whichever is later, and a margin for a loaded machine. Before
// members were probed it took the gRPC keep-alive's 12 s.
const hungMemberBound = 4 * time.Second

// openOnThree opens a client under prefix on a fresh 3-member cluster,
// closed when the test ends.
func openOnThree(t *testing.T, prefix string) (*kvtest.Etcd, *etcdkv.DB) {
	t.Helper()
	cluster := kvtest.StartEtcd(t, 3)
	cfg, err := etcdkv.ParseURL(cluster.URL(prefix))
	if err != nil {
		t.Fatal(err)
	}
	db, err := etcdkv.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return cluster, db
}

// The leader hangs while a client writes, watches and holds a lease:
// writes are acknowledged again within hungMemberBound and then go on
// without waiting on it, a write cut short is refused as unavailable (not
// hung on), every acknowledged write reaches the watch, and the lease,
// whose keep-alives may have gone through the hung member, is not lost.
func TestHungMemberIsLeft(t *testing.T) {
	cluster, db := openOnThree(t, "hung")
	ctx := context.Background()
	put := func(key string) error {
		_, err := db.Update(ctx, func(tx kv.Txn) error {
			if _, err := tx.Get([]byte(key)); !errors.Is(err, kv.ErrNotFound) {
				return fmt.Errorf("%s before it was written: %v", key, err)
			}
			return tx.Set([]byte(key), []byte("v"))
		})
		return err
	}
	if err := put("k/before"); err != nil {
		t.Fatal(err)
	}
	// Five seconds: kept alive every ttl/3, it must move to another member
	// within its remaining 3 s or more.
	l, err := db.Grant(ctx, 5*time.Second, []byte("d/"), []byte("me"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		for b := range db.Watch(wctx, []byte("k/"), 0) {
			mu.Lock()
			for _, ev := range b.Events {
				seen[string(ev.Key)] = true
			}
			mu.Unlock()
		}
	}()

	// The watch is under way once it delivers a write made after it.
	for i := 0; ; i++ {
		key := fmt.Sprintf("k/warm%d", i)
		if err := put(key); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		ok := seen[key]
		mu.Unlock()
		if ok {
			break
		}
		if i > 100 {
			t.Fatal("the watch delivers nothing")
		}
	}

	leader := cluster.Leader(t)
	cluster.Pause(t, leader)
	defer cluster.Resume(t, leader)
	hungAt := time.Now()
	var acked []string
	var firstAck, slowest time.Duration
	refused := 0
	for i := 0; time.Since(hungAt) < hungMemberBound+4*time.Second; i++ {
		key := fmt.Sprintf("k/%d", i)
		start := time.Now()
		err := put(key)
		took := time.Since(start)
		switch {
		case err == nil && len(acked) == 0:
			firstAck = time.Since(hungAt)
			acked = append(acked, key)
		case err == nil:
			// A write sent to the hung member before it was found
			// hung waits until then; none after.
			if start.Sub(hungAt) > hungMemberBound {
				slowest = max(slowest, took)
			}
			acked = append(acked, key)
		case errors.Is(err, kv.ErrUnavailable):
			if len(acked) > 0 {
				t.Fatalf("write %s refused after writes resumed: %v", key, err)
			}
			refused++
		default:
			t.Fatalf("write %s with the leader hung: %v", key, err)
		}
	}
	t.Logf("leader hung: first write acknowledged %v after, %d refused as unavailable before; then %d writes, the slowest past %v %v",
		firstAck.Round(time.Millisecond), refused, len(acked), hungMemberBound, slowest.Round(time.Millisecond))
	if len(acked) == 0 || firstAck > hungMemberBound {
		t.Fatalf("writes resumed %v after the leader hung, want within %v", firstAck, hungMemberBound)
	}
	if slowest > time.Second {
		t.Errorf("a write took %v more than %v after the leader hung: still sent to it?", slowest, hungMemberBound)
	}
	deadline := time.Now().Add(2 * time.Second)
	for _, key := range acked {
		for {
			mu.Lock()
			ok := seen[key]
			mu.Unlock()
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("acknowledged write %s never reached the watch", key)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	select {
	case <-l.Lost():
		t.Fatal("the lease was lost while a member hung")
	default:
	}
	if alive, err := db.Alive(ctx, l.ID()); err != nil || !alive {
		t.Fatalf("the lease after the leader hung: alive %v, %v", alive, err)
	}
}

// A member merely slow (here the leader, stopped 300 ms of every 500, as
// under a stalling disk or a starved CPU) still answers the probes: it is
// not taken for hung, and no write is refused.
func TestSlowMemberIsKept(t *testing.T) {
	cluster, db := openOnThree(t, "slow")
	ctx := context.Background()
	leader := cluster.Leader(t)
	stop := make(chan struct{})
	toggled := make(chan struct{})
	go func() {
		defer close(toggled)
		for {
			cluster.Pause(t, leader)
			time.Sleep(300 * time.Millisecond)
			cluster.Resume(t, leader)
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	var slowest time.Duration
	n := 0
	for start := time.Now(); time.Since(start) < 6*time.Second; n++ {
		s := time.Now()
		_, err := db.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte(fmt.Sprintf("k/%d", n)), []byte("v")) })
		if err != nil {
			close(stop)
			<-toggled
			t.Fatalf("write %d with the leader slow: %v", n, err)
		}
		slowest = max(slowest, time.Since(s))
	}
	close(stop)
	<-toggled
	t.Logf("leader stopped 300 ms of every 500: %d writes, none refused, the slowest %v", n, slowest.Round(time.Millisecond))
}
