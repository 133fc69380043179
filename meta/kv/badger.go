package kv

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Badger is a KV on dgraph-io/badger.
type Badger struct {
	db   *badger.DB
	stop chan struct{}
	wg   sync.WaitGroup
}

var _ KV = (*Badger)(nil)

// maxConflictRetries bounds Update's retries; badger conflicts only when two
// transactions touch the same keys, so a few retries always suffice unless
// something is badly wrong.
const maxConflictRetries = 100

// OpenBadger opens (creating if needed) a badger database in dir. An empty
// dir opens an in-memory database, for tests.
func OpenBadger(dir string, logger *slog.Logger) (*Badger, error) {
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
	b := &Badger{db: db, stop: make(chan struct{})}
	if dir != "" {
		b.wg.Add(1)
		go b.collectGarbage()
	}
	return b, nil
}

func (b *Badger) collectGarbage() {
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

// View implements KV.
func (b *Badger) View(fn func(Txn) error) error {
	return b.db.View(func(t *badger.Txn) error { return fn(badgerTxn{t}) })
}

// Update implements KV.
func (b *Badger) Update(fn func(Txn) error) error {
	for i := 0; ; i++ {
		err := b.db.Update(func(t *badger.Txn) error { return fn(badgerTxn{t}) })
		if !errors.Is(err, badger.ErrConflict) || i >= maxConflictRetries {
			return err
		}
	}
}

// Close implements KV.
func (b *Badger) Close() error {
	close(b.stop)
	b.wg.Wait()
	return b.db.Close()
}

type badgerTxn struct{ t *badger.Txn }

func (t badgerTxn) Get(key []byte) ([]byte, error) {
	item, err := t.t.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

func (t badgerTxn) Set(key, value []byte) error { return t.t.Set(key, value) }

func (t badgerTxn) Delete(key []byte) error { return t.t.Delete(key) }

func (t badgerTxn) Scan(prefix []byte, fn func(key, value []byte) error) error {
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
