// Package backend owns the bytes of images: one small interface, Backend,
// with an implementation per kind of store beside it (local, and later s3,
// swift, rbd, http) and one conformance suite, backendtest, that every
// implementation passes. The shape follows restic's internal/backend.
//
// A backend knows nothing about images, statuses or hashes: it stores opaque
// objects under keys chosen by the lifecycle (an image's id).
package backend

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned (wrapped) when a key holds no committed object.
var ErrNotFound = errors.New("object not found")

// Info describes a committed object.
type Info struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// Backend is a store of immutable objects.
//
// Objects are written once through a Writer and become visible under their
// key only when Commit returns nil; after that they never change until
// Delete. Every method is safe for concurrent use.
type Backend interface {
	// Create starts a new object under key. Nothing is visible under key
	// until Commit; an Abort, an error or a crash leaves nothing that List
	// reports, and AbortIncomplete removes whatever bytes it left.
	// Creating a key that already holds an object replaces it at Commit.
	Create(ctx context.Context, key string) (Writer, error)

	// Open gives random access to a committed object. A missing key is an
	// error wrapping ErrNotFound.
	Open(ctx context.Context, key string) (Reader, error)

	// Stat describes a committed object; a missing key wraps ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)

	// Delete removes a committed object. Deleting a missing key is not an
	// error, so that recovery can repeat it safely.
	Delete(ctx context.Context, key string) error

	// List calls fn for every committed object, in no particular order, in
	// the calling goroutine. An error from fn stops the listing and is
	// returned.
	List(ctx context.Context, fn func(Info) error) error

	// AbortIncomplete removes every incomplete write left behind by an
	// earlier process (a crash mid-upload). It is called once at startup,
	// before any Create of this process.
	AbortIncomplete(ctx context.Context) error

	// AbortStale removes incomplete writes as AbortIncomplete does, but
	// spares every write whose key live reports, so that a garbage
	// collector can run while uploads do: it passes the keys of the
	// uploads in flight. live is asked after the incomplete writes are
	// listed, so a write that starts later is never touched. It removes
	// what an earlier process left and what this one failed to abort
	// (a store that was away when an upload was abandoned).
	AbortStale(ctx context.Context, live func(key string) bool) error

	// Close releases the backend's resources.
	Close() error
}

// Writer receives an object's bytes in order. It is used by one goroutine
// at a time.
type Writer interface {
	io.Writer
	// Commit makes the object durable and then visible under its key.
	// Writes and a second Commit after it fail; an Abort after it keeps
	// the object.
	Commit(ctx context.Context) error
	// Abort discards the object. It is safe after a failed Commit and
	// idempotent.
	Abort(ctx context.Context) error
}

// RandomWriter is a Writer that also accepts writes at any offset, reads
// back what was written, and truncates, as a file does. Backends that can
// offer it cheaply (local disk) implement it, so that the mount can take the
// out-of-order writes of cp --sparse or dd seek= without a spool.
type RandomWriter interface {
	Writer
	io.WriterAt
	io.ReaderAt
	Truncate(size int64) error
}

// Reader is random access to a committed object.
type Reader interface {
	io.ReaderAt
	io.Closer
	// Size is the object's length in bytes.
	Size() int64
}

// FileReader is a Reader backed by an open file descriptor, so the mount can
// splice reads straight from it (fuse.ReadResultFd) instead of copying
// through the daemon.
type FileReader interface {
	Reader
	Fd() uintptr
}
