// Package kvtest is the conformance suite every kv engine passes (badger,
// etcd), and the real etcd the tests start (scripts/etcd).
package kvtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/meta/kv"
)

// Engine is what the suite needs of an engine.
type Engine struct {
	// Open returns a fresh, empty store, closed when the test ends.
	Open func(t *testing.T) kv.KV
	// Compact makes the engine forget the change feed's history up to
	// and including rev.
	Compact func(t *testing.T, db kv.KV, rev int64)
}

// watchWait bounds how long the suite waits for a change to reach a watch;
// the contract promises far less (the mounts must agree within 1 s).
const watchWait = 5 * time.Second

// Run runs the suite.
func Run(t *testing.T, e Engine) {
	ctx := context.Background()
	t.Run("GetSetDelete", func(t *testing.T) {
		db := e.Open(t)
		mustUpdate(t, db, func(tx kv.Txn) error { return tx.Set([]byte("a"), []byte("1")) })
		got := mustGet(t, db, "a")
		if got != "1" {
			t.Fatalf("Get a = %q, want 1", got)
		}
		mustUpdate(t, db, func(tx kv.Txn) error { return tx.Set([]byte("empty"), nil) })
		if got := mustGet(t, db, "empty"); got != "" {
			t.Fatalf("Get of an empty value = %q", got)
		}
		mustUpdate(t, db, func(tx kv.Txn) error { return tx.Delete([]byte("a")) })
		err := db.View(ctx, func(tx kv.Txn) error { _, err := tx.Get([]byte("a")); return err })
		if !errors.Is(err, kv.ErrNotFound) {
			t.Fatalf("Get of a deleted key: %v, want ErrNotFound", err)
		}
		if rev := mustUpdate(t, db, func(tx kv.Txn) error { return tx.Delete([]byte("never")) }); rev == 0 {
			t.Fatal("a delete of a missing key reported no commit")
		}
	})

	t.Run("ReadOwnWrites", func(t *testing.T) {
		db := e.Open(t)
		mustUpdate(t, db, func(tx kv.Txn) error { return tx.Set([]byte("p/b"), []byte("old")) })
		var scanned []string
		mustUpdate(t, db, func(tx kv.Txn) error {
			scanned = nil
			if err := tx.Set([]byte("p/a"), []byte("new")); err != nil {
				return err
			}
			if err := tx.Delete([]byte("p/b")); err != nil {
				return err
			}
			if err := tx.Set([]byte("p/c"), []byte("c")); err != nil {
				return err
			}
			if v, err := tx.Get([]byte("p/a")); err != nil || string(v) != "new" {
				return fmt.Errorf("Get of a key set in the transaction: %q, %v", v, err)
			}
			if _, err := tx.Get([]byte("p/b")); !errors.Is(err, kv.ErrNotFound) {
				return fmt.Errorf("Get of a key deleted in the transaction: %v", err)
			}
			return tx.Scan([]byte("p/"), func(k, v []byte) error {
				scanned = append(scanned, string(k)+"="+string(v))
				return nil
			})
		})
		if fmt.Sprint(scanned) != "[p/a=new p/c=c]" {
			t.Fatalf("Scan inside the transaction saw %v", scanned)
		}
	})

	t.Run("ScanOrderAndPrefix", func(t *testing.T) {
		db := e.Open(t)
		keys := []string{"s/b", "s/a\x00x", "s/a", "s/c/d", "t/a", "r/z", "s"}
		mustUpdate(t, db, func(tx kv.Txn) error {
			for _, k := range keys {
				if err := tx.Set([]byte(k), []byte("v"+k)); err != nil {
					return err
				}
			}
			return nil
		})
		var got []string
		err := db.View(ctx, func(tx kv.Txn) error {
			return tx.Scan([]byte("s/"), func(k, v []byte) error {
				if string(v) != "v"+string(k) {
					return fmt.Errorf("Scan: %q holds %q", k, v)
				}
				got = append(got, string(k))
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprintf("%q", got) != `["s/a" "s/a\x00x" "s/b" "s/c/d"]` {
			t.Fatalf("Scan s/ = %q", got)
		}
		stop := errors.New("stop")
		n := 0
		err = db.View(ctx, func(tx kv.Txn) error {
			return tx.Scan([]byte("s/"), func(k, v []byte) error { n++; return stop })
		})
		if !errors.Is(err, stop) || n != 1 {
			t.Fatalf("Scan did not stop at fn's error: %v after %d keys", err, n)
		}
	})

	t.Run("ScanManyPages", func(t *testing.T) {
		db := e.Open(t)
		const n = 2500 // more than one page of a range read
		for i := 0; i < n; i += kv.MaxTxnOps / 2 {
			mustUpdate(t, db, func(tx kv.Txn) error {
				for j := i; j < min(n, i+kv.MaxTxnOps/2); j++ {
					if err := tx.Set(fmt.Appendf(nil, "k/%05d", j), nil); err != nil {
						return err
					}
				}
				return nil
			})
		}
		i := 0
		err := db.View(ctx, func(tx kv.Txn) error {
			return tx.Scan([]byte("k/"), func(k, _ []byte) error {
				if want := fmt.Sprintf("k/%05d", i); string(k) != want {
					return fmt.Errorf("key %d is %q, want %q", i, k, want)
				}
				i++
				return nil
			})
		})
		if err != nil || i != n {
			t.Fatalf("scanned %d of %d keys: %v", i, n, err)
		}
	})

	t.Run("GetMany", func(t *testing.T) {
		db := e.Open(t)
		var keys [][]byte
		for i := 0; i < 300; i++ {
			k := fmt.Appendf(nil, "g/%d", i)
			keys = append(keys, k)
			if i%3 == 0 {
				continue // missing
			}
			mustUpdate(t, db, func(tx kv.Txn) error { return tx.Set(k, []byte(strconv.Itoa(i))) })
		}
		var vals [][]byte
		err := db.View(ctx, func(tx kv.Txn) error {
			var err error
			vals, err = tx.GetMany(keys)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if i%3 == 0 && v != nil || i%3 != 0 && string(v) != strconv.Itoa(i) {
				t.Fatalf("GetMany[%d] = %q", i, v)
			}
		}
	})

	t.Run("ErrorAbortsAndNoWriteCommitsNothing", func(t *testing.T) {
		db := e.Open(t)
		boom := errors.New("boom")
		_, err := db.Update(ctx, func(tx kv.Txn) error {
			if err := tx.Set([]byte("x"), []byte("1")); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Update returned %v, want fn's error", err)
		}
		err = db.View(ctx, func(tx kv.Txn) error { _, err := tx.Get([]byte("x")); return err })
		if !errors.Is(err, kv.ErrNotFound) {
			t.Fatalf("a failed transaction's write is visible: %v", err)
		}
		rev, err := db.Update(ctx, func(tx kv.Txn) error { _, err := tx.Get([]byte("x")); _ = err; return nil })
		if err != nil || rev != 0 {
			t.Fatalf("a read-only Update: rev %d, %v; want 0, nil", rev, err)
		}
	})

	t.Run("ConflictsRetry", func(t *testing.T) {
		db := e.Open(t)
		const workers, each = 4, 15
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					_, err := db.Update(ctx, func(tx kv.Txn) error {
						n := 0
						v, err := tx.Get([]byte("counter"))
						if err == nil {
							n, _ = strconv.Atoi(string(v))
						} else if !errors.Is(err, kv.ErrNotFound) {
							return err
						}
						return tx.Set([]byte("counter"), []byte(strconv.Itoa(n+1)))
					})
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if got := mustGet(t, db, "counter"); got != strconv.Itoa(workers*each) {
			t.Fatalf("counter = %s after %d increments: an update was lost", got, workers*each)
		}
	})

	t.Run("TooLarge", func(t *testing.T) {
		db := e.Open(t)
		big := bytes.Repeat([]byte("x"), kv.MaxTxnBytes/2)
		_, err := db.Update(ctx, func(tx kv.Txn) error {
			for i := 0; i < 3; i++ {
				if err := tx.Set([]byte("big/"+strconv.Itoa(i)), big); err != nil {
					return err
				}
			}
			return nil
		})
		if !errors.Is(err, kv.ErrTooLarge) {
			t.Fatalf("an Update of %d bytes: %v, want ErrTooLarge", 3*len(big), err)
		}
		err = db.View(ctx, func(tx kv.Txn) error { _, err := tx.Get([]byte("big/0")); return err })
		if !errors.Is(err, kv.ErrNotFound) {
			t.Fatalf("part of a refused transaction was written: %v", err)
		}
		_, err = db.Update(ctx, func(tx kv.Txn) error {
			for i := 0; i <= kv.MaxTxnOps; i++ {
				if err := tx.Set([]byte("many/"+strconv.Itoa(i)), nil); err != nil {
					return err
				}
			}
			return nil
		})
		if !errors.Is(err, kv.ErrTooLarge) {
			t.Fatalf("an Update of %d keys: %v, want ErrTooLarge", kv.MaxTxnOps+1, err)
		}
		// Just under the bounds fits on every engine.
		mustUpdate(t, db, func(tx kv.Txn) error {
			for i := 0; i < kv.MaxTxnOps; i++ {
				if err := tx.Set([]byte("many/"+strconv.Itoa(i)), nil); err != nil {
					return err
				}
			}
			return nil
		})
		mustUpdate(t, db, func(tx kv.Txn) error {
			return tx.Set([]byte("fits"), bytes.Repeat([]byte("y"), kv.MaxTxnBytes-len("fits")-64))
		})
	})

	t.Run("WatchFromRevision", func(t *testing.T) {
		db := e.Open(t)
		mustUpdate(t, db, func(tx kv.Txn) error { return tx.Set([]byte("w/before"), []byte("0")) })
		var from int64
		if err := db.View(ctx, func(tx kv.Txn) error { var err error; from, err = tx.Revision(); return err }); err != nil {
			t.Fatal(err)
		}
		r1 := mustUpdate(t, db, func(tx kv.Txn) error {
			if err := tx.Set([]byte("w/a"), []byte("1")); err != nil {
				return err
			}
			if err := tx.Set([]byte("other"), []byte("x")); err != nil {
				return err
			}
			return tx.Set([]byte("w/b"), []byte("1"))
		})
		r2 := mustUpdate(t, db, func(tx kv.Txn) error { return tx.Set([]byte("w/a"), []byte("2")) })
		r3 := mustUpdate(t, db, func(tx kv.Txn) error { return tx.Delete([]byte("w/b")) })
		if !(from < r1 && r1 < r2 && r2 < r3) {
			t.Fatalf("revisions do not grow: read at %d, then commits %d %d %d", from, r1, r2, r3)
		}
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		got := collect(t, db.Watch(wctx, []byte("w/"), from+1), 4)
		want := []kv.Event{
			{Rev: r1, Key: []byte("w/a"), Value: []byte("1")},
			{Rev: r1, Key: []byte("w/b"), Value: []byte("1")},
			{Rev: r2, Key: []byte("w/a"), Value: []byte("2"), Prev: []byte("1")},
			{Rev: r3, Key: []byte("w/b"), Deleted: true, Prev: []byte("1")},
		}
		checkEvents(t, got, want)

		// Changes committed after the watch started arrive too.
		r4 := mustUpdate(t, db, func(tx kv.Txn) error { return tx.Set([]byte("w/c"), []byte("live")) })
		checkEvents(t, collect(t, db.Watch(wctx, []byte("w/"), r4), 1),
			[]kv.Event{{Rev: r4, Key: []byte("w/c"), Value: []byte("live")}})
	})

	t.Run("WatchFromNowAndCancel", func(t *testing.T) {
		db := e.Open(t)
		wctx, cancel := context.WithCancel(ctx)
		ch := db.Watch(wctx, []byte("n/"), 0)
		// The watch may take a moment to be in place on a remote engine:
		// write until the first change arrives, then check the order.
		deadline := time.After(watchWait)
		var first kv.Event
	wait:
		for i := 0; ; i++ {
			mustUpdate(t, db, func(tx kv.Txn) error { return tx.Set([]byte("n/k"), []byte(strconv.Itoa(i))) })
			select {
			case b := <-ch:
				if b.Err != nil {
					t.Fatal(b.Err)
				}
				first = b.Events[0]
				break wait
			case <-time.After(50 * time.Millisecond):
			case <-deadline:
				t.Fatal("no change reached a watch from now")
			}
		}
		rev := mustUpdate(t, db, func(tx kv.Txn) error { return tx.Set([]byte("n/k"), []byte("last")) })
		for {
			b := recv(t, ch)
			if b.Err != nil {
				t.Fatal(b.Err)
			}
			ev := b.Events[len(b.Events)-1]
			if ev.Rev < first.Rev {
				t.Fatalf("revision %d after %d", ev.Rev, first.Rev)
			}
			if ev.Rev == rev {
				break
			}
		}
		cancel()
		for b := range ch {
			if b.Err != nil && !errors.Is(b.Err, context.Canceled) {
				t.Fatalf("a cancelled watch ended with %v", b.Err)
			}
		}
	})

	t.Run("Lease", func(t *testing.T) {
		db := e.Open(t)
		l, err := db.Grant(ctx, 5*time.Second, []byte("d/"), []byte("host"))
		if err != nil {
			t.Fatal(err)
		}
		if l.ID() == 0 {
			t.Fatal("lease id 0")
		}
		key := kv.LeaseKey([]byte("d/"), l.ID())
		if kv.LeaseOfKey([]byte("d/"), key) != l.ID() {
			t.Fatalf("LeaseOfKey(%q) is not %x", key, l.ID())
		}
		if got := mustGet(t, db, string(key)); got != "host" {
			t.Fatalf("the lease's key holds %q", got)
		}
		if alive, err := db.Alive(ctx, l.ID()); err != nil || !alive {
			t.Fatalf("a held lease: alive %v, %v", alive, err)
		}
		if alive, err := db.Alive(ctx, l.ID()^0x5a5a5a); err != nil || alive {
			t.Fatalf("a lease nobody took: alive %v, %v", alive, err)
		}
		if err := l.Revoke(ctx); err != nil {
			t.Fatal(err)
		}
		if alive, err := db.Alive(ctx, l.ID()); err != nil || alive {
			t.Fatalf("a revoked lease: alive %v, %v", alive, err)
		}
		err = db.View(ctx, func(tx kv.Txn) error { _, err := tx.Get(key); return err })
		if !errors.Is(err, kv.ErrNotFound) {
			t.Fatalf("a revoked lease's key: %v, want ErrNotFound", err)
		}
		select {
		case <-l.Lost():
			t.Fatal("a revoked lease reports itself lost")
		default:
		}
	})

	t.Run("WatchCompacted", func(t *testing.T) {
		db := e.Open(t)
		r1 := mustUpdate(t, db, func(tx kv.Txn) error { return tx.Set([]byte("c/a"), []byte("1")) })
		r2 := mustUpdate(t, db, func(tx kv.Txn) error { return tx.Set([]byte("c/a"), []byte("2")) })
		e.Compact(t, db, r2)
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		b := recv(t, db.Watch(wctx, []byte("c/"), r1))
		if !errors.Is(b.Err, kv.ErrCompacted) {
			t.Fatalf("a watch from a compacted revision got %+v, want ErrCompacted", b)
		}
		// A relist at the current revision and a watch from the next one
		// is how a watcher recovers.
		var rev int64
		var v []byte
		err := db.View(ctx, func(tx kv.Txn) error {
			var err error
			if rev, err = tx.Revision(); err != nil {
				return err
			}
			v, err = tx.Get([]byte("c/a"))
			return err
		})
		if err != nil || string(v) != "2" {
			t.Fatalf("relist: %q, %v", v, err)
		}
		r3 := mustUpdate(t, db, func(tx kv.Txn) error { return tx.Set([]byte("c/a"), []byte("3")) })
		checkEvents(t, collect(t, db.Watch(wctx, []byte("c/"), rev+1), 1),
			[]kv.Event{{Rev: r3, Key: []byte("c/a"), Value: []byte("3"), Prev: []byte("2")}})
	})
}

func mustUpdate(t *testing.T, db kv.KV, fn func(kv.Txn) error) int64 {
	t.Helper()
	rev, err := db.Update(context.Background(), fn)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func mustGet(t *testing.T, db kv.KV, key string) string {
	t.Helper()
	var v []byte
	err := db.View(context.Background(), func(tx kv.Txn) error {
		var err error
		v, err = tx.Get([]byte(key))
		return err
	})
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	return string(v)
}

func recv(t *testing.T, ch <-chan kv.Batch) kv.Batch {
	t.Helper()
	select {
	case b, ok := <-ch:
		if !ok {
			t.Fatal("the watch closed")
		}
		return b
	case <-time.After(watchWait):
		t.Fatalf("nothing from the watch in %v", watchWait)
	}
	return kv.Batch{}
}

// collect reads n events from a watch, checking that each batch holds whole
// transactions in revision order.
func collect(t *testing.T, ch <-chan kv.Batch, n int) []kv.Event {
	t.Helper()
	var evs []kv.Event
	for len(evs) < n {
		b := recv(t, ch)
		if b.Err != nil {
			t.Fatalf("watch error after %d events: %v", len(evs), b.Err)
		}
		evs = append(evs, b.Events...)
	}
	return evs
}

func checkEvents(t *testing.T, got, want []kv.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d: %s", len(got), len(want), show(got))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Rev != w.Rev || !bytes.Equal(g.Key, w.Key) || g.Deleted != w.Deleted ||
			!bytes.Equal(g.Value, w.Value) || !bytes.Equal(g.Prev, w.Prev) || (g.Prev == nil) != (w.Prev == nil) {
			t.Fatalf("event %d:\n got %s\nwant %s", i, show(got[i:i+1]), show(want[i:i+1]))
		}
	}
}

func show(evs []kv.Event) string {
	var b bytes.Buffer
	for _, e := range evs {
		fmt.Fprintf(&b, "{rev %d %q value %q deleted %v prev %q} ", e.Rev, e.Key, e.Value, e.Deleted, e.Prev)
	}
	return b.String()
}
