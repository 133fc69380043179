// Package kv is the small transactional key-value layer under the registry:
// get, set, delete, prefix scan, and transactions retried on conflict.
// badger is the engine for one machine (Badger); a distributed engine (etcd)
// can implement the same two interfaces, so nothing above this package may
// depend on badger.
package kv

import "errors"

// ErrNotFound is returned by Txn.Get for a missing key.
var ErrNotFound = errors.New("key not found")

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
}

// KV is a transactional key-value store.
type KV interface {
	// View runs fn in a read-only transaction.
	View(fn func(Txn) error) error
	// Update runs fn in a read-write transaction and commits it durably.
	// When the commit conflicts with a concurrent transaction, fn is run
	// again on a fresh transaction, so fn must not have side effects
	// outside the transaction.
	Update(fn func(Txn) error) error
	// Close flushes and closes the store.
	Close() error
}
