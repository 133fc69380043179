// Package badgerkv is the registry's engine for one machine: kv.KV on
// dgraph-io/badger, with the change feed kept in this process's memory.
package badgerkv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/glimpse-project/glimpse/meta/kv"
)

// DB is a kv.KV on badger. Revisions count this process's commits (from 1
// at each open): one process owns a badger directory, so nobody resumes a
// watch across a restart; the feed keeps the last historyEvents events.
type DB struct {
	db   *badger.DB
	stop chan struct{}
	wg   sync.WaitGroup

	// commitMu makes revision order commit order: a revision is taken and
	// the transaction queued for writing under it, and badger writes its
	// queue in order.
	commitMu sync.Mutex
	next     int64 // the revision the next commit takes

	mu        sync.Mutex // guards the fields below
	settled   map[int64][]kv.Event
	published int64      // every revision up to it is in history (or compacted)
	compacted int64      // the newest revision no longer in history
	history   []kv.Event // in revision order
	histBytes int
	changed   chan struct{} // closed (and replaced) when published moves
	closed    bool
	leases    map[int64]*lease // held by this process
}

var _ kv.KV = (*DB)(nil)

const (
	// maxConflictRetries bounds Update's retries; badger conflicts only when
	// two transactions touch the same keys, so a few retries always suffice
	// unless something is badly wrong.
	maxConflictRetries = 100
	// historyEvents and historyBytes bound the feed's memory; a watcher
	// that falls further behind gets kv.ErrCompacted and relists.
	historyEvents = 8192
	historyBytes  = 16 << 20
)

// Open opens (creating if needed) a badger database in dir. An empty dir
// opens an in-memory database, for tests.
func Open(dir string, logger *slog.Logger) (*DB, error) {
	opts := badger.DefaultOptions(dir).
		WithInMemory(dir == "").
		// The registry holds metadata only: small memtables and caches keep
		// the daemon's RSS low (badger's defaults take several hundred MiB).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(16 << 20).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2).
		// Status changes are commit points: they must survive a crash.
		WithSyncWrites(dir != "").
		WithLogger(badgerLogger{logger})
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open registry %s: %w", dir, err)
	}
	b := &DB{db: db, stop: make(chan struct{}), next: 1, settled: map[int64][]kv.Event{}, changed: make(chan struct{}), leases: map[int64]*lease{}}
	if dir != "" {
		b.wg.Add(1)
		go b.collectGarbage()
	}
	return b, nil
}

func (b *DB) collectGarbage() {
	defer b.wg.Done()
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			for b.db.RunValueLogGC(0.5) == nil {
			}
		}
	}
}

// View implements kv.KV.
func (b *DB) View(ctx context.Context, fn func(kv.Txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := b.begin(false)
	defer t.t.Discard()
	return fn(t)
}

// begin opens a transaction and notes the revision it reads at: taken
// before the snapshot, so every change up to it is in the snapshot.
func (b *DB) begin(update bool) *txn {
	b.mu.Lock()
	rev := b.published
	b.mu.Unlock()
	return &txn{t: b.db.NewTransaction(update), rev: rev, update: update}
}

// Update implements kv.KV.
func (b *DB) Update(ctx context.Context, fn func(kv.Txn) error) (int64, error) {
	for i := 0; ; i++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		rev, err := b.try(fn)
		if !errors.Is(err, badger.ErrConflict) || i >= maxConflictRetries {
			return rev, err
		}
	}
}

func (b *DB) try(fn func(kv.Txn) error) (int64, error) {
	t := b.begin(true)
	if err := fn(t); err != nil {
		t.t.Discard()
		return 0, err
	}
	if len(t.order) == 0 {
		t.t.Discard()
		return 0, nil
	}
	if err := t.checkBounds(); err != nil {
		t.t.Discard()
		return 0, err
	}
	events := t.events()
	done := make(chan error, 1)
	b.commitMu.Lock()
	rev := b.next
	b.next++
	t.t.CommitWith(func(err error) {
		b.settle(rev, events, err)
		done <- err
	})
	b.commitMu.Unlock()
	if err := <-done; err != nil {
		return 0, err
	}
	return rev, nil
}

// checkBounds refuses a transaction over kv.MaxTxnBytes or kv.MaxTxnOps,
// as etcd would.
func (t *txn) checkBounds() error {
	switch {
	case t.size > kv.MaxTxnBytes:
		return fmt.Errorf("%w: %d bytes written, at most %d", kv.ErrTooLarge, t.size, kv.MaxTxnBytes)
	case len(t.order) > kv.MaxTxnOps:
		return fmt.Errorf("%w: %d keys written, at most %d", kv.ErrTooLarge, len(t.order), kv.MaxTxnOps)
	case len(t.reads) > kv.MaxTxnOps:
		return fmt.Errorf("%w: %d keys read before writing, at most %d", kv.ErrTooLarge, len(t.reads), kv.MaxTxnOps)
	}
	return nil
}

// settle records the outcome of the commit at rev and publishes every
// revision whose predecessors are all settled. A failed commit publishes
// nothing: its revision stays a gap.
func (b *DB) settle(rev int64, events []kv.Event, err error) {
	if err != nil {
		events = nil
	}
	for i := range events {
		events[i].Rev = rev
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.settled[rev] = events
	moved := false
	for {
		evs, ok := b.settled[b.published+1]
		if !ok {
			break
		}
		delete(b.settled, b.published+1)
		b.published++
		moved = true
		for _, ev := range evs {
			b.history = append(b.history, ev)
			b.histBytes += len(ev.Key) + len(ev.Value) + len(ev.Prev)
		}
	}
	// Drop whole revisions from the front while over the bounds.
	for len(b.history) > 0 && (len(b.history) > historyEvents || b.histBytes > historyBytes) {
		old := b.history[0].Rev
		for len(b.history) > 0 && b.history[0].Rev == old {
			ev := b.history[0]
			b.histBytes -= len(ev.Key) + len(ev.Value) + len(ev.Prev)
			b.history[0] = kv.Event{}
			b.history = b.history[1:]
		}
		b.compacted = old
	}
	if moved {
		close(b.changed)
		b.changed = make(chan struct{})
	}
}

// Watch implements kv.KV.
func (b *DB) Watch(ctx context.Context, prefix []byte, fromRev int64) <-chan kv.Batch {
	ch := make(chan kv.Batch, 16)
	b.mu.Lock()
	if fromRev <= 0 {
		fromRev = b.published + 1
	}
	b.mu.Unlock()
	go func() {
		defer close(ch)
		next := fromRev
		for {
			b.mu.Lock()
			var events []kv.Event
			err := error(nil)
			switch {
			case b.closed:
				err = kv.ErrClosed
			case next <= b.compacted:
				err = fmt.Errorf("%w: revision %d, the registry keeps from %d on", kv.ErrCompacted, next, b.compacted+1)
			default:
				for _, ev := range b.history {
					if ev.Rev >= next && bytes.HasPrefix(ev.Key, prefix) {
						events = append(events, ev)
					}
				}
				if b.published+1 > next {
					next = b.published + 1
				}
			}
			changed := b.changed
			b.mu.Unlock()
			if err != nil {
				select {
				case ch <- kv.Batch{Err: err}:
				case <-ctx.Done():
					endWatch(ch, ctx.Err())
				}
				return
			}
			if len(events) > 0 {
				select {
				case ch <- kv.Batch{Events: events}:
				case <-ctx.Done():
					endWatch(ch, ctx.Err())
					return
				}
			}
			select {
			case <-changed:
			case <-b.stop:
			case <-ctx.Done():
				endWatch(ch, ctx.Err())
				return
			}
		}
	}()
	return ch
}

// endWatch delivers a watch's final error if the watcher still reads; one
// that stopped reading has gone and needs none.
func endWatch(ch chan<- kv.Batch, err error) {
	select {
	case ch <- kv.Batch{Err: err}:
	default:
	}
}

// Close implements kv.KV.
func (b *DB) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	close(b.stop)
	b.wg.Wait()
	return b.db.Close()
}

// txn is a badger transaction that remembers what it writes, with each
// key's value before the transaction, for the change feed.
type txn struct {
	t      *badger.Txn
	rev    int64
	update bool
	order  [][]byte             // keys written, in first-write order
	writes map[string]*kv.Event // by key
	reads  map[string]struct{}  // keys read (Update only), for kv.MaxTxnOps
	size   int
}

func (t *txn) Get(key []byte) ([]byte, error) {
	if t.update {
		if _, written := t.writes[string(key)]; !written {
			if t.reads == nil {
				t.reads = map[string]struct{}{}
			}
			t.reads[string(key)] = struct{}{}
		}
	}
	return t.get(key)
}

func (t *txn) get(key []byte) ([]byte, error) {
	item, err := t.t.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, kv.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

func (t *txn) GetMany(keys [][]byte) ([][]byte, error) {
	values := make([][]byte, len(keys))
	for i, k := range keys {
		v, err := t.Get(k)
		if errors.Is(err, kv.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		values[i] = v
	}
	return values, nil
}

func (t *txn) Revision() (int64, error) { return t.rev, nil }

// record notes a write of key; the first write of a key reads its value
// before the transaction (which also makes a concurrent change of it a
// conflict, so Prev is exact).
func (t *txn) record(key, value []byte, deleted bool) error {
	if t.writes == nil {
		t.writes = map[string]*kv.Event{}
	}
	ev, ok := t.writes[string(key)]
	if !ok {
		prev, err := t.get(key)
		if err != nil && !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		k := bytes.Clone(key)
		ev = &kv.Event{Key: k, Prev: prev}
		t.writes[string(key)] = ev
		t.order = append(t.order, k)
	}
	ev.Value, ev.Deleted = nil, deleted
	if !deleted {
		ev.Value = bytes.Clone(value)
		if ev.Value == nil {
			ev.Value = []byte{}
		}
	}
	t.size += kv.Size(key, value)
	if t.size > kv.MaxTxnBytes || len(t.order) > kv.MaxTxnOps {
		// Refused now, before badger's own (smaller) batch bound does.
		return t.checkBounds()
	}
	return nil
}

func (t *txn) Set(key, value []byte) error {
	if err := t.record(key, value, false); err != nil {
		return err
	}
	return t.t.Set(bytes.Clone(key), bytes.Clone(value))
}

func (t *txn) Delete(key []byte) error {
	if err := t.record(key, nil, true); err != nil {
		return err
	}
	return t.t.Delete(bytes.Clone(key))
}

// events is what the transaction changed, in first-write order; deleting
// a key that did not exist changes nothing (as on etcd).
func (t *txn) events() []kv.Event {
	var evs []kv.Event
	for _, k := range t.order {
		ev := t.writes[string(k)]
		if ev.Deleted && ev.Prev == nil {
			continue
		}
		evs = append(evs, *ev)
	}
	return evs
}

func (t *txn) Scan(prefix []byte, fn func(key, value []byte) error) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	it := t.t.NewIterator(opts)
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		err := item.Value(func(v []byte) error { return fn(item.Key(), v) })
		if err != nil {
			return err
		}
	}
	return nil
}

// badgerLogger sends badger's chatter to slog; its Infof lines are routine
// (compactions, replay) and go to debug.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error("registry: " + fmt.Sprintf(f, a...)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn("registry: " + fmt.Sprintf(f, a...)) }
func (b badgerLogger) Infof(f string, a ...any)    { b.l.Debug("registry: " + fmt.Sprintf(f, a...)) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.l.Debug("registry: " + fmt.Sprintf(f, a...)) }

// Compact forgets the change feed's history up to and including rev, as
// etcd's compaction does; watches from there on get kv.ErrCompacted.
func (b *DB) Compact(rev int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.history) > 0 && b.history[0].Rev <= rev {
		ev := b.history[0]
		b.histBytes -= len(ev.Key) + len(ev.Value) + len(ev.Prev)
		b.history = b.history[1:]
	}
	b.compacted = max(b.compacted, min(rev, b.published))
}

// lease is a badger lease: it lives as long as this process holds it.
type lease struct {
	db   *DB
	id   int64
	key  []byte
	lost chan struct{} // never closed: a process cannot lose touch with its own disk
}

func (l *lease) ID() int64             { return l.id }
func (l *lease) Lost() <-chan struct{} { return l.lost }

func (l *lease) Revoke(ctx context.Context) error {
	l.db.mu.Lock()
	delete(l.db.leases, l.id)
	l.db.mu.Unlock()
	_, err := l.db.Update(ctx, func(tx kv.Txn) error { return tx.Delete(l.key) })
	return err
}

// Grant implements kv.KV.
func (b *DB) Grant(ctx context.Context, ttl time.Duration, prefix, value []byte) (kv.Lease, error) {
	var raw [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	id := int64(binary.BigEndian.Uint64(raw[:])>>1) | 1
	l := &lease{db: b, id: id, key: kv.LeaseKey(prefix, id), lost: make(chan struct{})}
	if _, err := b.Update(ctx, func(tx kv.Txn) error { return tx.Set(l.key, value) }); err != nil {
		return nil, fmt.Errorf("grant lease: %w", err)
	}
	b.mu.Lock()
	b.leases[l.id] = l
	b.mu.Unlock()
	return l, nil
}

// Alive implements kv.KV: only this process's leases are held.
func (b *DB) Alive(ctx context.Context, id int64) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.leases[id] != nil, nil
}
