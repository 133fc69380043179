// Package spool turns any backend's Writer into a backend.RandomWriter, so
// that the mount can take the writes of cp --sparse (holes, a final
// ftruncate) and of writers that seek back or reread what they wrote (a
// header patched after the data) on a store that only streams (S3, Swift).
//
// While the writes arrive in order the bytes go straight to the store's
// stream and nowhere else (a hole is streamed as the zeros it reads as), so
// a cp into an S3-backed mount costs no local disk: keeping a local copy of
// every byte in case a later write went backwards cost a write and a read
// of the whole image on the data disk, a fifth of the throughput of a cp
// into S3 on a 2-core machine.
//
// The first operation a stream cannot take (a write below what was already
// streamed, a truncation below it, a read of streamed bytes) makes the
// writer fall back to a local spool file: it commits the stream as it is,
// reads that prefix back into the spool file, and from then on the file is
// the truth; Commit uploads it through a new stream, replacing the prefix.
// Between the fallback and Commit the prefix is a committed object under
// the key. The lifecycle counts an object under the id of an upload in
// flight as owned (garbage collection spares it) and removes it at the next
// start if the process dies, and Abort deletes it.
//
// The spool file lives in the directory given to New (on the data disk,
// not tmpfs: it holds the whole object) and is removed at Commit or Abort;
// Clean removes the leftovers of a crash at startup.
package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/backend/freespace"
)

const filePrefix = "spool-"

// errClosed is returned by every operation after Commit or Abort.
var errClosed = os.ErrClosed

// Writer is a backend.RandomWriter that streams to the store while the
// writes come in order and spools to a local file once they do not. Safe
// for concurrent use.
type Writer struct {
	b   backend.Backend
	key string
	dir string

	mu sync.Mutex // guards everything below
	// Exactly one of stream and f is set until Commit or Abort.
	stream backend.Writer // while streaming
	f      *os.File       // after the fallback: the object's bytes
	// streamed is how many bytes went to stream; the object is those,
	// then zeros up to size.
	streamed int64
	size     int64 // the object's length so far
	off      int64 // where the next Write lands
	// prefix: the fallback committed the streamed bytes under key, which
	// Abort must delete.
	prefix bool
	// broken is a failed fallback's error, returned by every later call:
	// the bytes it was to save are lost.
	broken error
	closed bool
	// reserve is free space the spool file leaves on dir's filesystem
	// (see WrapReserving).
	reserve int64
}

var _ backend.RandomWriter = (*Writer)(nil)

// New starts an object under key on b; dir is where a spool file goes if
// the writes stop coming in order. If b's own writer already is a
// RandomWriter (local disk), callers should use that instead.
func New(ctx context.Context, b backend.Backend, key, dir string) (*Writer, error) {
	stream, err := b.Create(ctx, key)
	if err != nil {
		return nil, err
	}
	return &Writer{b: b, key: key, dir: dir, stream: stream}, nil
}

// Clean removes the spool files a crashed process left in dir.
func Clean(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("spool: clean %s: %w", dir, err)
	}
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), filePrefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Streaming tells whether the bytes are still going out as they come
// (false once the writer fell back to a spool file).
func (w *Writer) Streaming() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stream != nil
}

// Write implements io.Writer: it writes at the end of the previous Write.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.writeAt(p, w.off)
	w.off += int64(n)
	return n, err
}

// WriteAt implements io.WriterAt.
func (w *Writer) WriteAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writeAt(p, off)
}

func (w *Writer) usable() error {
	if w.closed {
		return errClosed
	}
	return w.broken
}

func (w *Writer) writeAt(p []byte, off int64) (int, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("spool %s: negative offset", w.key)
	}
	if w.stream != nil && off < w.streamed {
		if err := w.fallback(); err != nil {
			return 0, err
		}
	}
	if w.stream != nil {
		if err := w.streamZeros(off); err != nil {
			return 0, err
		}
		n, err := w.stream.Write(p)
		w.streamed += int64(n)
		w.size = max(w.size, w.streamed)
		return n, err
	}
	if err := freespace.Check(w.dir, w.reserve, int64(len(p))); err != nil {
		return 0, fmt.Errorf("spool %s: %w", w.key, err)
	}
	n, err := w.f.WriteAt(p, off)
	w.size = max(w.size, off+int64(n))
	if err != nil {
		return n, fmt.Errorf("spool %s: %w", w.key, err)
	}
	return n, nil
}

// zeros is what a hole streams as.
var zeros = make([]byte, 64<<10)

// streamZeros streams the hole between what was streamed and end.
func (w *Writer) streamZeros(end int64) error {
	for w.streamed < end {
		n, err := w.stream.Write(zeros[:min(int64(len(zeros)), end-w.streamed)])
		w.streamed += int64(n)
		if err != nil {
			return err
		}
	}
	w.size = max(w.size, w.streamed)
	return nil
}

// fallback ends the stream and moves to a spool file holding what was
// streamed: the stream is committed as it is and read back. If that fails
// the writer is broken: the streamed bytes exist nowhere else.
func (w *Writer) fallback() error {
	ctx := context.Background() // the store's own timeouts bound these calls
	err := w.stream.Commit(ctx)
	if err != nil {
		// Whatever the abort leaves (a multipart upload the store
		// did not take back) AbortStale or the next start removes.
		err = errors.Join(err, w.stream.Abort(ctx))
	}
	w.stream = nil
	if err == nil {
		w.prefix = true
		w.f, err = w.readPrefix(ctx)
	}
	if err != nil {
		w.broken = fmt.Errorf("spool %s: fall back to a spool file: %w", w.key, err)
		return w.broken
	}
	return nil
}

// readPrefix copies the committed prefix into a new spool file of the
// object's size (the zeros past the prefix are a hole in it).
func (w *Writer) readPrefix(ctx context.Context) (*os.File, error) {
	f, err := os.CreateTemp(w.dir, filePrefix+"*")
	if err != nil {
		return nil, err
	}
	err = w.copyPrefix(ctx, f)
	if err == nil {
		err = f.Truncate(w.size)
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

func (w *Writer) copyPrefix(ctx context.Context, f *os.File) error {
	r, err := w.b.Open(ctx, w.key)
	if err != nil {
		return err
	}
	defer r.Close()
	if r.Size() != w.streamed {
		return fmt.Errorf("the store holds %d bytes of the %d streamed", r.Size(), w.streamed)
	}
	if err := freespace.Check(w.dir, w.reserve, w.streamed); err != nil {
		return err
	}
	_, err = io.Copy(f, io.NewSectionReader(r, 0, w.streamed))
	return err
}

// ReadAt implements io.ReaderAt over what was written so far. Reading
// streamed bytes makes the writer fall back to a spool file: a stream
// cannot be read back.
func (w *Writer) ReadAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("spool %s: negative offset", w.key)
	}
	if off >= w.size {
		return 0, io.EOF
	}
	end := min(w.size, off+int64(len(p)))
	if w.stream != nil && off < w.streamed {
		if err := w.fallback(); err != nil {
			return 0, err
		}
	}
	n, err := int(end-off), error(nil)
	if w.stream != nil {
		clear(p[:n]) // the tail not streamed yet reads as zeros
	} else {
		n, err = w.f.ReadAt(p[:n], off)
	}
	if err == nil && n < len(p) {
		err = io.EOF
	}
	return n, err
}

// Truncate sets the object's length, as ftruncate does.
func (w *Writer) Truncate(size int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("spool %s: negative size", w.key)
	}
	if w.stream != nil && size < w.streamed {
		if err := w.fallback(); err != nil {
			return err
		}
	}
	if w.f != nil {
		if err := w.f.Truncate(size); err != nil {
			return fmt.Errorf("spool %s: %w", w.key, err)
		}
	}
	w.size = size // while streaming, a longer object: zeros not yet streamed
	return nil
}

// Commit implements backend.Writer: it finishes the stream, or uploads the
// spool file through a new stream after a fallback.
func (w *Writer) Commit(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if w.stream != nil {
		err := w.streamZeros(w.size) // the tail: zeros after a final ftruncate
		if err == nil {
			err = w.stream.Commit(ctx)
		}
		if err != nil {
			return err // the caller aborts
		}
		w.stream = nil
		w.closed = true
		return nil
	}
	up, err := w.b.Create(ctx, w.key)
	if err != nil {
		return err
	}
	if _, err := io.Copy(up, io.NewSectionReader(w.f, 0, w.size)); err != nil {
		up.Abort(ctx)
		return err
	}
	if err := up.Commit(ctx); err != nil {
		up.Abort(ctx)
		return err
	}
	w.prefix = false // replaced by the whole object
	w.closed = true
	return w.removeFile()
}

// Abort implements backend.Writer: it aborts the stream, or deletes the
// prefix a fallback committed, and removes the spool file. Idempotent; safe
// after a failed Commit; after a successful one it keeps the object.
func (w *Writer) Abort(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	var errs []error
	if w.stream != nil {
		errs = append(errs, w.stream.Abort(ctx))
		w.stream = nil
	}
	if w.prefix {
		err := w.b.Delete(ctx, w.key)
		if err == nil {
			w.prefix = false
		}
		errs = append(errs, err)
	}
	if w.f != nil {
		errs = append(errs, w.removeFile())
	}
	return errors.Join(errs...)
}

func (w *Writer) removeFile() error {
	name := w.f.Name()
	err := w.f.Close()
	w.f = nil
	if rerr := os.Remove(name); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	if err != nil {
		return fmt.Errorf("spool %s: %w", w.key, err)
	}
	return nil
}

// Wrap returns b with Create giving spool Writers (RandomWriters) spooled
// in dir, and AbortIncomplete also cleaning dir. For stores whose own
// writers only stream (S3); local disk needs no spool.
func Wrap(b backend.Backend, dir string) backend.Backend {
	return WrapReserving(b, dir, 0)
}

// WrapReserving is Wrap with spool files that leave reserve bytes free on
// dir's filesystem: a write that would take more fails with ENOSPC (for
// a spool beside the registry, whose badger dies of SIGBUS on a full
// filesystem).
func WrapReserving(b backend.Backend, dir string, reserve int64) backend.Backend {
	return &spooled{Backend: b, dir: dir, reserve: reserve}
}

type spooled struct {
	backend.Backend
	dir     string
	reserve int64
}

func (s *spooled) Create(ctx context.Context, key string) (backend.Writer, error) {
	w, err := New(ctx, s.Backend, key, s.dir)
	if err != nil {
		return nil, err
	}
	w.reserve = s.reserve
	return w, nil
}

func (s *spooled) AbortIncomplete(ctx context.Context) error {
	return errors.Join(Clean(s.dir), s.Backend.AbortIncomplete(ctx))
}
