// Package spool turns any backend's Writer into a backend.RandomWriter, so
// that the mount can take the writes of cp --sparse (holes, a final
// ftruncate) and qemu-img (out of order) on a store that only streams (S3).
//
// Every byte goes to a local spool file, which is the truth and serves
// ReadAt. While the writes arrive in order the bytes are also streamed to
// the store as they come (a hole is streamed as the zeros it reads as), so
// a cp into an S3-backed mount uploads while it copies and Commit only
// finishes the upload. The first write below what was already streamed, or
// a truncation below it, abandons that stream (its multipart upload is
// aborted) and Commit uploads the spool file instead.
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
)

const filePrefix = "spool-"

// Writer is a backend.RandomWriter that spools to a local file and streams
// to the store while it can. Safe for concurrent use.
type Writer struct {
	b   backend.Backend
	key string

	mu       sync.Mutex
	f        *os.File       // nil once committed or aborted
	size     int64          // the object's length so far
	off      int64          // where the next Write lands
	stream   backend.Writer // nil once abandoned
	streamed int64          // bytes sent to stream (a prefix of the file)
}

var _ backend.RandomWriter = (*Writer)(nil)

// New starts an object under key on b, spooled in dir. If b's own writer
// already is a RandomWriter (local disk), callers should use that instead.
func New(ctx context.Context, b backend.Backend, key, dir string) (*Writer, error) {
	f, err := os.CreateTemp(dir, filePrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", key, err)
	}
	stream, err := b.Create(ctx, key)
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &Writer{b: b, key: key, f: f, stream: stream}, nil
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
// (false once a write out of order made Commit upload the spool file).
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

func (w *Writer) writeAt(p []byte, off int64) (int, error) {
	if w.f == nil {
		return 0, os.ErrClosed
	}
	if off < 0 {
		return 0, fmt.Errorf("spool %s: negative offset", w.key)
	}
	n, err := w.f.WriteAt(p, off)
	w.size = max(w.size, off+int64(n))
	if err != nil {
		return n, fmt.Errorf("spool %s: %w", w.key, err)
	}
	if w.stream != nil {
		if off < w.streamed {
			w.abandon()
		} else {
			w.catchUp(off + int64(n))
		}
	}
	return n, nil
}

// catchUp streams the file's bytes from streamed up to end. An error from
// the stream is not the writer's: Commit retries from the spool file, and
// reports the store's error if it persists.
func (w *Writer) catchUp(end int64) {
	if end <= w.streamed {
		return
	}
	_, err := io.Copy(w.stream, io.NewSectionReader(w.f, w.streamed, end-w.streamed))
	if err != nil {
		w.abandon()
		return
	}
	w.streamed = end
}

// abandon aborts the stream; Commit will upload the spool file.
func (w *Writer) abandon() {
	w.stream.Abort(context.Background())
	w.stream = nil
}

// ReadAt implements io.ReaderAt over what was written so far.
func (w *Writer) ReadAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return 0, os.ErrClosed
	}
	if off >= w.size {
		return 0, io.EOF
	}
	if max := w.size - off; int64(len(p)) > max {
		n, err := w.f.ReadAt(p[:max], off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return w.f.ReadAt(p, off)
}

// Truncate sets the object's length, as ftruncate does.
func (w *Writer) Truncate(size int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return os.ErrClosed
	}
	if err := w.f.Truncate(size); err != nil {
		return fmt.Errorf("spool %s: %w", w.key, err)
	}
	w.size = size
	if w.stream != nil && size < w.streamed {
		w.abandon()
	}
	return nil
}

// Commit implements backend.Writer: it finishes the stream, or uploads the
// spool file through a new writer if the stream was abandoned.
func (w *Writer) Commit(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return os.ErrClosed
	}
	if w.stream != nil {
		w.catchUp(w.size) // the tail: zeros after a final ftruncate
	}
	if w.stream != nil {
		if err := w.stream.Commit(ctx); err != nil {
			w.stream.Abort(ctx)
			w.stream = nil
			return err
		}
		w.stream = nil
		return w.close()
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
	return w.close()
}

// Abort implements backend.Writer. Idempotent; safe after a failed Commit.
func (w *Writer) Abort(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var err error
	if w.stream != nil {
		err = w.stream.Abort(ctx)
		w.stream = nil
	}
	if w.f != nil {
		err = errors.Join(err, w.close())
	}
	return err
}

func (w *Writer) close() error {
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
	return &spooled{Backend: b, dir: dir}
}

type spooled struct {
	backend.Backend
	dir string
}

func (s *spooled) Create(ctx context.Context, key string) (backend.Writer, error) {
	return New(ctx, s.Backend, key, s.dir)
}

func (s *spooled) AbortIncomplete(ctx context.Context) error {
	return errors.Join(Clean(s.dir), s.Backend.AbortIncomplete(ctx))
}
