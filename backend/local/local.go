// Package local stores objects as files in one directory on local disk, the
// default store (DATA/images). A write goes to a temp file under .partial,
// is fsynced, renamed into place and the directory fsynced (restic's
// local.Save), so a crash leaves either the whole object or only a partial
// file that AbortIncomplete removes.
package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/backend/freespace"
)

const partialDir = ".partial"

// Config names the directory that holds the objects.
type Config struct {
	Dir string
	// Reserve is free space, in bytes, that writes leave on Dir's
	// filesystem: a write that would take the filesystem below it fails
	// with ENOSPC. The daemon sets it when the registry shares the
	// filesystem: badger writes through mmapped files, and a page it
	// touches on a full filesystem kills the process with SIGBUS.
	Reserve int64
}

// Local is a backend.Backend on a local directory.
type Local struct {
	dir     string
	reserve int64
}

var _ backend.Backend = (*Local)(nil)

// Open prepares dir (creating it if needed) and returns the store.
func Open(cfg Config) (*Local, error) {
	if cfg.Dir == "" {
		return nil, errors.New("local store: no directory given")
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, partialDir), 0o700); err != nil {
		return nil, fmt.Errorf("local store: %w", err)
	}
	return &Local{dir: cfg.Dir, reserve: cfg.Reserve}, nil
}

// checkSpace fails with ENOSPC when writing n more bytes would leave less
// than the reserve free.
func (l *Local) checkSpace(n int) error {
	if err := freespace.Check(l.dir, l.reserve, int64(n)); err != nil {
		return fmt.Errorf("local store: %w", err)
	}
	return nil
}

// Dir is the directory holding the objects.
func (l *Local) Dir() string { return l.dir }

func (l *Local) path(key string) (string, error) {
	if key == "" || strings.ContainsAny(key, "/\x00") || key == "." || key == ".." || strings.HasPrefix(key, ".") {
		return "", fmt.Errorf("local store: invalid key %q", key)
	}
	return filepath.Join(l.dir, key), nil
}

// Create implements backend.Backend.
func (l *Local) Create(ctx context.Context, key string) (backend.Writer, error) {
	final, err := l.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Join(l.dir, partialDir), key+".*")
	if err != nil {
		return nil, fmt.Errorf("local store: create %s: %w", key, err)
	}
	return &writer{l: l, f: f, final: final}, nil
}

// Open implements backend.Backend.
func (l *Local) Open(ctx context.Context, key string) (backend.Reader, error) {
	p, err := l.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, wrapNotExist(key, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("local store: stat %s: %w", key, err)
	}
	return &reader{File: f, size: st.Size()}, nil
}

// Stat implements backend.Backend.
func (l *Local) Stat(ctx context.Context, key string) (backend.Info, error) {
	p, err := l.path(key)
	if err != nil {
		return backend.Info{}, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return backend.Info{}, wrapNotExist(key, err)
	}
	return backend.Info{Key: key, Size: st.Size(), ModTime: st.ModTime()}, nil
}

// Delete implements backend.Backend.
func (l *Local) Delete(ctx context.Context, key string) error {
	p, err := l.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("local store: delete %s: %w", key, err)
	}
	return syncDir(l.dir)
}

// List implements backend.Backend.
func (l *Local) List(ctx context.Context, fn func(backend.Info) error) error {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("local store: list: %w", err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		st, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted while we listed
		}
		if err != nil {
			return fmt.Errorf("local store: list: %w", err)
		}
		if err := fn(backend.Info{Key: e.Name(), Size: st.Size(), ModTime: st.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

// AbortIncomplete implements backend.Backend: it empties .partial.
func (l *Local) AbortIncomplete(ctx context.Context) error {
	return l.AbortStale(ctx, func(string) bool { return false })
}

// AbortStale implements backend.Backend: it removes the files in .partial
// except those of live keys (a partial file is named KEY.RANDOM).
func (l *Local) AbortStale(ctx context.Context, live func(key string) bool) error {
	dir := filepath.Join(l.dir, partialDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("local store: list partial writes: %w", err)
	}
	for _, e := range entries {
		if i := strings.LastIndexByte(e.Name(), '.'); i > 0 && live(e.Name()[:i]) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("local store: remove partial write: %w", err)
		}
	}
	return nil
}

// Close implements backend.Backend.
func (l *Local) Close() error { return nil }

func wrapNotExist(key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("local store: %s: %w", key, backend.ErrNotFound)
	}
	return fmt.Errorf("local store: %s: %w", key, err)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("local store: sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("local store: sync dir: %w", err)
	}
	return nil
}

// writer is an object being written: a temp file under .partial.
type writer struct {
	l     *Local
	f     *os.File // nil once committed or aborted
	final string
	off   int64 // where the next sequential Write lands
}

var _ backend.RandomWriter = (*writer)(nil)

func (w *writer) Write(p []byte) (int, error) {
	if w.f == nil {
		return 0, os.ErrClosed
	}
	if err := w.l.checkSpace(len(p)); err != nil {
		return 0, err
	}
	n, err := w.f.WriteAt(p, w.off)
	w.off += int64(n)
	return n, err
}

func (w *writer) WriteAt(p []byte, off int64) (int, error) {
	if w.f == nil {
		return 0, os.ErrClosed
	}
	if err := w.l.checkSpace(len(p)); err != nil {
		return 0, err
	}
	return w.f.WriteAt(p, off)
}

func (w *writer) ReadAt(p []byte, off int64) (int, error) {
	if w.f == nil {
		return 0, os.ErrClosed
	}
	return w.f.ReadAt(p, off)
}

func (w *writer) Truncate(size int64) error {
	if w.f == nil {
		return os.ErrClosed
	}
	return w.f.Truncate(size)
}

func (w *writer) Commit(ctx context.Context) error {
	if w.f == nil {
		return os.ErrClosed
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("local store: sync: %w", err)
	}
	if err := os.Rename(w.f.Name(), w.final); err != nil {
		return fmt.Errorf("local store: commit: %w", err)
	}
	err := w.f.Close()
	w.f = nil
	if err != nil {
		return fmt.Errorf("local store: commit: %w", err)
	}
	return syncDir(w.l.dir)
}

func (w *writer) Abort(ctx context.Context) error {
	if w.f == nil {
		return nil
	}
	name := w.f.Name()
	w.f.Close()
	w.f = nil
	if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("local store: abort: %w", err)
	}
	return nil
}

type reader struct {
	*os.File
	size int64
}

func (r *reader) Size() int64 { return r.size }

var _ backend.FileReader = (*reader)(nil)
