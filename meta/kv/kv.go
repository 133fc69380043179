// Package kv is the small transactional key-value layer under the registry:
// get, set, delete, prefix scan, batch get, transactions retried on
// conflict, and a change feed resumable from a revision. It links no
// engine: badger (package badgerkv, one machine) and etcd (package etcdkv,
// several daemons sharing one catalogue) implement the same interfaces, and
// kvtest holds the one conformance suite both pass, so nothing above this
// package may depend on either.
package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

var (
	// ErrNotFound is returned by Txn.Get for a missing key.
	ErrNotFound = errors.New("key not found")
	// ErrCompacted ends a Watch whose start revision the engine no longer
	// keeps: the watcher must read the keys again (relist) and watch from
	// the revision of that read.
	ErrCompacted = errors.New("watch: revision compacted")
	// ErrTooLarge: a transaction exceeds MaxTxnBytes or MaxTxnOps.
	ErrTooLarge = errors.New("transaction too large for the registry")
	// ErrUnavailable: the engine could not be reached or did not answer in
	// time (etcd without a quorum, or cut off). A write that failed so may
	// or may not have been committed.
	ErrUnavailable = errors.New("registry unavailable")
	// ErrClosed ends the watches of a store that was closed.
	ErrClosed = errors.New("registry closed")
)

// The bounds of one Update, the same on every engine, so that what works on
// badger works on etcd: etcd refuses requests over 1.5 MiB
// (--max-request-bytes) and transactions of over 128 operations or
// comparisons (--max-txn-ops), and a transaction is one request; badger
// refuses batches over a share of its memtable.
const (
	// MaxTxnBytes bounds what one Update writes, keys plus values; the
	// margin under etcd's 1.5 MiB leaves room for its comparisons and
	// framing.
	MaxTxnBytes = 1 << 20
	// MaxTxnOps bounds the keys one Update writes, and the keys it reads
	// (each read becomes a comparison at the commit).
	MaxTxnOps = 128
)

// Txn is one transaction. It is used by one goroutine and only inside the
// function passed to View or Update.
type Txn interface {
	// Get returns a copy of key's value, or ErrNotFound.
	Get(key []byte) ([]byte, error)
	// Set stores value under key (Update transactions only).
	Set(key, value []byte) error
	// Delete removes key; a missing key is not an error.
	Delete(key []byte) error
	// Scan calls fn for every key with the prefix, in key order, stopping at
	// and returning fn's first error. key and value are valid only during
	// the call.
	Scan(prefix []byte, fn func(key, value []byte) error) error
	// GetMany returns copies of the keys' values in one round trip:
	// values[i] is keys[i]'s, nil where the key is missing.
	GetMany(keys [][]byte) (values [][]byte, err error)
	// Revision is the revision this transaction reads at: every change
	// committed at or below it is visible. (A badger snapshot may also
	// show changes a little above it, so a watch started from
	// Revision()+1 can repeat a change already read: apply events
	// idempotently.)
	Revision() (int64, error)
}

// Event is one key's change, as the change feed reports it.
type Event struct {
	// Rev is the revision of the transaction that made the change; the
	// events of one transaction share it.
	Rev int64
	Key []byte
	// Value is the key's new value; nil when Deleted.
	Value   []byte
	Deleted bool
	// Prev is the key's value before the change, nil if it had none.
	Prev []byte
}

// Batch is what a watch delivers: the events of one or more whole
// transactions, in revision order, or a final error.
type Batch struct {
	Events []Event
	// Err ends the watch: ErrCompacted (relist), ErrClosed, or the
	// context's error.
	Err error
}

// KV is a transactional key-value store.
type KV interface {
	// View runs fn in a read-only transaction, a consistent snapshot.
	View(ctx context.Context, fn func(Txn) error) error
	// Update runs fn in a read-write transaction, commits it durably and
	// returns the commit's revision (0 if fn wrote nothing). When the
	// commit conflicts with a concurrent transaction, fn is run again on a
	// fresh transaction, so fn must not have side effects outside the
	// transaction. Writes over MaxTxnBytes fail with ErrTooLarge.
	Update(ctx context.Context, fn func(Txn) error) (rev int64, err error)
	// Watch delivers every change to the keys under prefix committed at
	// revision fromRev or later, in revision order, each transaction's
	// events in one Batch, missing none: a broken connection is resumed
	// from the last revision delivered. The channel closes after a Batch
	// with Err: ErrCompacted when fromRev (or the resume point) is older
	// than the engine keeps, or ctx's error once ctx is done.
	Watch(ctx context.Context, prefix []byte, fromRev int64) <-chan Batch
	// Grant takes a lease of about ttl, kept alive by this process until
	// Revoke or Close, and writes value under LeaseKey(prefix, id), tied
	// to the lease: the key goes when the lease ends. (On badger one process owns the registry, so a
	// lease lives as long as the process: a key left by one that crashed
	// is the next process's to remove, and Alive says it is dead.)
	Grant(ctx context.Context, ttl time.Duration, prefix, value []byte) (Lease, error)
	// Alive reports whether lease id is held now, by any process.
	Alive(ctx context.Context, id int64) (bool, error)
	// Close flushes and closes the store.
	Close() error
}

// Lease is a process's hold on the registry, which other processes can see
// end (a daemon that died).
type Lease interface {
	// ID names the lease in records (never 0).
	ID() int64
	// Lost is closed when the lease ended without Revoke: the registry
	// could not be reached to keep it alive for its whole ttl.
	Lost() <-chan struct{}
	// Revoke ends the lease now and removes its key.
	Revoke(ctx context.Context) error
}

// Size is what a write of key and value counts against MaxTxnBytes.
func Size(key, value []byte) int { return len(key) + len(value) }

// LeaseKey is the key Grant writes for lease id under prefix: the id in 16
// hex digits, so that a scan of prefix lists the leases' keys.
func LeaseKey(prefix []byte, id int64) []byte { return fmt.Appendf(bytes.Clone(prefix), "%016x", id) }

// LeaseOfKey is the lease id of a key LeaseKey made, or 0.
func LeaseOfKey(prefix, key []byte) int64 {
	id, err := strconv.ParseInt(string(bytes.TrimPrefix(key, prefix)), 16, 64)
	if err != nil || !bytes.HasPrefix(key, prefix) {
		return 0
	}
	return id
}
