//go:build ceph

package rbd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/ceph/go-ceph/rbd"

	"github.com/glimpse-project/glimpse/backend"
)

// growStep caps how much the image grows at once beyond what a write needs:
// growing doubles the image up to this step, so a long upload resizes it a
// few dozen times rather than once per chunk. Commit trims it to the size
// written.
const growStep = 1 << 30

// writer is an image being written under its temporary name. Sequential
// Writes gather in buf (one chunk) before they go to the image; WriteAt,
// ReadAt and Truncate first write buf out, so the image always reads back
// what was written.
type writer struct {
	// mu serialises the writer's methods with abandon (AbortIncomplete).
	mu  sync.Mutex
	s   *RBD
	key string
	tmp string
	img *rbd.Image // nil once committed or aborted

	buf    []byte
	bufOff int64 // where buf goes in the image
	off    int64 // where the next Write lands (bufOff + len(buf))
	size   int64 // the object's size: the end of the furthest write, or Truncate's
	cap    int64 // the image's size (>= size)
	err    error // sticky: a failed write to the image
}

var _ backend.RandomWriter = (*writer)(nil)

func (w *writer) check() error {
	if w.img == nil {
		return os.ErrClosed
	}
	return w.err
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(); err != nil {
		return 0, err
	}
	total := 0
	for len(p) > 0 {
		if len(w.buf) == 0 {
			w.bufOff = w.off
		}
		n := min(len(p), w.s.cfg.ChunkSize-len(w.buf))
		w.buf = append(w.buf, p[:n]...)
		p, w.off, total = p[n:], w.off+int64(n), total+n
		if len(w.buf) == w.s.cfg.ChunkSize {
			if err := w.flush(); err != nil {
				return total - len(w.buf), err
			}
		}
	}
	return total, nil
}

// flush writes buf to the image.
func (w *writer) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if _, err := w.writeAt(w.buf, w.bufOff); err != nil {
		return err
	}
	w.buf = w.buf[:0]
	return nil
}

// writeAt grows the image if needed and writes p at off.
func (w *writer) writeAt(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	if end > w.cap {
		newCap := max(end, min(2*w.cap, w.cap+growStep))
		if err := w.img.Resize(uint64(newCap)); err != nil {
			w.err = wrap("grow", w.key, err)
			return 0, w.err
		}
		w.cap = newCap
	}
	n, err := w.img.WriteAt(p, off)
	if err != nil {
		w.err = wrap("write", w.key, err)
		return n, w.err
	}
	w.size = max(w.size, end)
	return n, nil
}

func (w *writer) WriteAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("rbd store: write %s: negative offset", w.key)
	}
	if err := w.flush(); err != nil {
		return 0, err
	}
	return w.writeAt(p, off)
}

func (w *writer) ReadAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(); err != nil {
		return 0, err
	}
	if err := w.flush(); err != nil {
		return 0, err
	}
	if off >= w.size {
		return 0, io.EOF
	}
	want := p[:min(int64(len(p)), w.size-off)]
	n, err := w.img.ReadAt(want, off)
	if err != nil && err != io.EOF {
		return n, wrap("read back", w.key, err)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Truncate sets the object's size; growing it reads as zeros.
func (w *writer) Truncate(size int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("rbd store: truncate %s: negative size", w.key)
	}
	if err := w.flush(); err != nil {
		return err
	}
	if size < w.cap {
		// Shrinking discards what lies beyond, so growing again reads zeros.
		if err := w.img.Resize(uint64(size)); err != nil {
			w.err = wrap("truncate", w.key, err)
			return w.err
		}
		w.cap = size
	}
	w.size = size
	return nil
}

// Commit implements backend.Writer: the image is trimmed to its size and
// flushed, its snapshot taken and protected, and then it is renamed to its
// key. An object it replaces is renamed aside first and removed after.
func (w *writer) Commit(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(); err != nil {
		return err
	}
	if err := w.flush(); err != nil {
		return err
	}
	if w.cap != w.size {
		if err := w.img.Resize(uint64(w.size)); err != nil {
			return wrap("trim", w.key, err)
		}
		w.cap = w.size
	}
	if err := w.img.Flush(); err != nil {
		return wrap("flush", w.key, err)
	}
	snap, err := w.img.CreateSnapshot(SnapName)
	if err != nil {
		return wrap("snapshot", w.key, err)
	}
	if err := snap.Protect(); err != nil {
		return wrap("protect snapshot of", w.key, err)
	}
	if err := w.img.Close(); err != nil {
		return wrap("close", w.key, err)
	}
	w.img = nil
	// Replace: move the old image aside (AbortIncomplete would remove it
	// after a crash), then ours in, then remove the old one.
	old, err := partialName(w.key)
	if err != nil {
		return err
	}
	err = rbd.GetImage(w.s.ioctx, w.key).Rename(old)
	replaced := err == nil
	if err != nil && !errors.Is(err, rbd.ErrNotFound) {
		w.reopen()
		return wrap("move aside the image replaced by", w.key, err)
	}
	if err := rbd.GetImage(w.s.ioctx, w.tmp).Rename(w.key); err != nil {
		if replaced {
			rbd.GetImage(w.s.ioctx, old).Rename(w.key)
		}
		w.reopen()
		return wrap("rename into place", w.key, err)
	}
	w.tmp = ""
	w.s.forget(w)
	if replaced {
		w.s.remove(old) // best effort: AbortIncomplete removes it otherwise
	}
	return nil
}

// reopen gives a failed Commit's writer its image back, for Abort.
func (w *writer) reopen() {
	if img, err := rbd.OpenImage(w.s.ioctx, w.tmp, rbd.NoSnapshot); err == nil {
		w.img = img
	}
}

// Abort implements backend.Writer: the temporary image goes, with its
// snapshot if a failed Commit took one.
func (w *writer) Abort(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.tmp == "" {
		return nil // committed, or aborted already
	}
	if w.img != nil {
		w.img.Close()
		w.img = nil
	}
	w.buf = nil
	if err := w.s.remove(w.tmp); err != nil {
		return fmt.Errorf("rbd store: abort %s: %w", w.key, err)
	}
	w.tmp = ""
	w.s.forget(w)
	return nil
}

// abandon closes the image of a writer that AbortIncomplete treats as
// crashed; the writer fails from then on, and AbortIncomplete removes the
// image.
func (w *writer) abandon() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.img != nil {
		w.img.Close()
		w.img = nil
	}
	w.buf = nil
	w.tmp = ""
}

func (s *RBD) forget(w *writer) {
	s.mu.Lock()
	delete(s.writers, w)
	s.mu.Unlock()
}
