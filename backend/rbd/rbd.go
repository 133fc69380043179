//go:build ceph

package rbd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/glimpse-project/glimpse/backend"
)

// Enabled says whether this binary was built with RBD support.
const Enabled = true

// RBD is a backend.Backend on a Ceph pool.
type RBD struct {
	conn  *rados.Conn
	ioctx *rados.IOContext
	cfg   Config

	mu sync.Mutex // guards the fields below
	// writers are this process's writers not yet committed or aborted.
	writers map[*writer]struct{}
	// reaper, if not nil, is removing partial images that a dead client
	// still watched; Close stops it (stop) and waits for it (reaper).
	reaper chan struct{}
	stop   chan struct{}
}

var _ backend.Backend = (*RBD)(nil)

// Open connects to the cluster and opens the pool, creating it if missing.
// librados calls cannot be cancelled: ctx is checked before connecting, and
// Config.OpTimeout bounds the connection instead.
func Open(ctx context.Context, cfg Config) (*RBD, error) {
	if cfg.Pool == "" {
		return nil, errors.New("rbd store: no pool given")
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = DefaultOpTimeout
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var conn *rados.Conn
	var err error
	if cfg.User != "" {
		conn, err = rados.NewConnWithUser(cfg.User)
	} else {
		conn, err = rados.NewConn()
	}
	if err != nil {
		return nil, fmt.Errorf("rbd store: %w", err)
	}
	if cfg.ConfFile != "" {
		err = conn.ReadConfigFile(cfg.ConfFile)
	} else {
		err = conn.ReadDefaultConfigFile()
	}
	if err != nil {
		conn.Shutdown()
		return nil, fmt.Errorf("rbd store: read ceph config %q: %w", cfg.ConfFile, err)
	}
	secs := strconv.Itoa(max(1, int(cfg.OpTimeout.Seconds())))
	for _, opt := range []string{"rados_osd_op_timeout", "rados_mon_op_timeout", "client_mount_timeout"} {
		if err := conn.SetConfigOption(opt, secs); err != nil {
			conn.Shutdown()
			return nil, fmt.Errorf("rbd store: set %s: %w", opt, err)
		}
	}
	if err := conn.Connect(); err != nil {
		conn.Shutdown()
		return nil, fmt.Errorf("rbd store: connect to the cluster of %q: %w", cfg.ConfFile, err)
	}
	ioctx, err := conn.OpenIOContext(cfg.Pool)
	if errors.Is(err, rados.ErrNotFound) {
		ioctx, err = createPool(conn, cfg.Pool)
	}
	if err != nil {
		conn.Shutdown()
		return nil, fmt.Errorf("rbd store: open pool %s: %w", cfg.Pool, err)
	}
	if cfg.Namespace != "" {
		if err := useNamespace(ioctx, cfg.Namespace); err != nil {
			ioctx.Destroy()
			conn.Shutdown()
			return nil, fmt.Errorf("rbd store: namespace %s in pool %s: %w", cfg.Namespace, cfg.Pool, err)
		}
	}
	return &RBD{conn: conn, ioctx: ioctx, cfg: cfg, writers: map[*writer]struct{}{}}, nil
}

// createPool makes the pool and tags it for rbd (what `rbd pool init` does).
func createPool(conn *rados.Conn, pool string) (*rados.IOContext, error) {
	if err := conn.MakePool(pool); err != nil && !errors.Is(err, rados.ErrObjectExists) {
		return nil, fmt.Errorf("create: %w", err)
	}
	cmd := fmt.Sprintf(`{"prefix":"osd pool application enable","pool":%q,"app":"rbd"}`, pool)
	if _, info, err := conn.MonCommand([]byte(cmd)); err != nil {
		return nil, fmt.Errorf("enable rbd on it: %s: %w", info, err)
	}
	return conn.OpenIOContext(pool)
}

// useNamespace creates the namespace if missing and points ioctx at it.
func useNamespace(ioctx *rados.IOContext, ns string) error {
	ok, err := rbd.NamespaceExists(ioctx, ns)
	if err != nil {
		return err
	}
	if !ok {
		if err := rbd.NamespaceCreate(ioctx, ns); err != nil && !errors.Is(err, rados.ErrObjectExists) {
			return err
		}
	}
	ioctx.SetNamespace(ns)
	return nil
}

// IOContext is the pool the store uses (for tests and benchmarks that
// compare with the direct client).
func (s *RBD) IOContext() *rados.IOContext { return s.ioctx }

func checkKey(key string) error {
	if key == "" || strings.ContainsAny(key, "/@\x00") || strings.HasPrefix(key, PartialPrefix) {
		return fmt.Errorf("rbd store: invalid key %q", key)
	}
	return nil
}

func wrap(op, key string, err error) error {
	if errors.Is(err, rbd.ErrNotFound) || errors.Is(err, rados.ErrNotFound) {
		return fmt.Errorf("rbd store: %s %s: %w", op, key, backend.ErrNotFound)
	}
	return fmt.Errorf("rbd store: %s %s: %w", op, key, err)
}

func partialName(key string) (string, error) {
	var id [6]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", err
	}
	return PartialPrefix + key + "." + hex.EncodeToString(id[:]), nil
}

// Create implements backend.Backend: an empty image under a temporary name.
func (s *RBD) Create(ctx context.Context, key string) (backend.Writer, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	tmp, err := partialName(key)
	if err != nil {
		return nil, fmt.Errorf("rbd store: create %s: %w", key, err)
	}
	opts := rbd.NewRbdImageOptions()
	defer opts.Destroy()
	if err := rbd.CreateImage(s.ioctx, tmp, 0, opts); err != nil {
		return nil, wrap("create", key, err)
	}
	img, err := rbd.OpenImage(s.ioctx, tmp, rbd.NoSnapshot)
	if err != nil {
		rbd.RemoveImage(s.ioctx, tmp)
		return nil, wrap("create", key, err)
	}
	w := &writer{s: s, key: key, tmp: tmp, img: img}
	s.mu.Lock()
	s.writers[w] = struct{}{}
	s.mu.Unlock()
	return w, nil
}

// openRead opens key read-only at its snapshot, or at its head if it has
// none (an image that glimpse did not write).
func (s *RBD) openRead(key string) (*rbd.Image, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	img, err := rbd.OpenImageReadOnly(s.ioctx, key, SnapName)
	if errors.Is(err, rbd.ErrNotFound) {
		img, err = rbd.OpenImageReadOnly(s.ioctx, key, rbd.NoSnapshot)
	}
	if err != nil {
		return nil, wrap("open", key, err)
	}
	return img, nil
}

// Open implements backend.Backend: random access to the image's snapshot.
func (s *RBD) Open(ctx context.Context, key string) (backend.Reader, error) {
	img, err := s.openRead(key)
	if err != nil {
		return nil, err
	}
	size, err := img.GetSize()
	if err != nil {
		img.Close()
		return nil, wrap("size of", key, err)
	}
	return &reader{img: img, key: key, size: int64(size)}, nil
}

// Stat implements backend.Backend.
func (s *RBD) Stat(ctx context.Context, key string) (backend.Info, error) {
	img, err := s.openRead(key)
	if err != nil {
		return backend.Info{}, err
	}
	defer img.Close()
	size, err := img.GetSize()
	if err != nil {
		return backend.Info{}, wrap("size of", key, err)
	}
	info := backend.Info{Key: key, Size: int64(size)}
	if ts, err := img.GetModifyTimestamp(); err == nil {
		info.ModTime = time.Unix(int64(ts.Sec), int64(ts.Nsec))
	}
	return info, nil
}

// Delete implements backend.Backend: the snapshot is unprotected and
// removed, then the image. An image that Ceph clones still use cannot be
// deleted (its snapshot stays protected); the error says so.
func (s *RBD) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := s.remove(key); err != nil {
		return fmt.Errorf("rbd store: delete %s: %w", key, err)
	}
	return nil
}

// remove removes an image and its snapshots; a missing image is no error.
func (s *RBD) remove(name string) error {
	img, err := rbd.OpenImage(s.ioctx, name, rbd.NoSnapshot)
	if errors.Is(err, rbd.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	snaps, err := img.GetSnapshotNames()
	if err != nil {
		img.Close()
		return fmt.Errorf("list snapshots: %w", err)
	}
	for _, si := range snaps {
		snap := img.GetSnapshot(si.Name)
		if prot, err := snap.IsProtected(); err == nil && prot {
			if err := snap.Unprotect(); err != nil {
				img.Close()
				if isBusy(err) {
					return fmt.Errorf("snapshot %s@%s has clones (in use by Ceph consumers): %w", name, si.Name, err)
				}
				return fmt.Errorf("unprotect %s@%s: %w", name, si.Name, err)
			}
		}
		if err := snap.Remove(); err != nil && !errors.Is(err, rbd.ErrNotFound) {
			img.Close()
			return fmt.Errorf("remove snapshot %s@%s: %w", name, si.Name, err)
		}
	}
	if err := img.Close(); err != nil {
		return err
	}
	if err := rbd.RemoveImage(s.ioctx, name); err != nil && !errors.Is(err, rbd.ErrNotFound) {
		return err
	}
	return nil
}

// List implements backend.Backend: every image but the partial ones.
func (s *RBD) List(ctx context.Context, fn func(backend.Info) error) error {
	names, err := rbd.GetImageNames(s.ioctx)
	if err != nil {
		return fmt.Errorf("rbd store: list pool %s: %w", s.cfg.Pool, err)
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if checkKey(name) != nil {
			continue
		}
		info, err := s.Stat(ctx, name)
		if errors.Is(err, backend.ErrNotFound) {
			continue // deleted while we listed
		}
		if err != nil {
			return fmt.Errorf("rbd store: list: %w", err)
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// AbortIncomplete implements backend.Backend: it removes every image whose
// name starts with PartialPrefix. Writers of this process still open are
// treated as crashed: their images are closed and removed.
//
// An image that a killed process had open stays locked and watched by its
// dead client until the OSDs time the watch out (osd_client_watch_timeout,
// 30 s by default). With the exclusive-lock feature (in Ceph's default
// features) removing it waits for that: AbortIncomplete then takes up to
// that long (measured: 4.7 s with the test cluster's 5 s timeout). Where
// Ceph refuses instead (EBUSY: still watched), the image is left to a
// background goroutine that retries every 5 s for up to two minutes or until
// Close. List never reports partial images either way.
func (s *RBD) AbortIncomplete(ctx context.Context) error {
	s.mu.Lock()
	abandoned := s.writers
	s.writers = map[*writer]struct{}{}
	s.mu.Unlock()
	for w := range abandoned {
		w.abandon()
	}
	names, err := rbd.GetImageNames(s.ioctx)
	if err != nil {
		return fmt.Errorf("rbd store: list pool %s: %w", s.cfg.Pool, err)
	}
	return s.removePartial(names, func(string) bool { return false })
}

// AbortStale implements backend.Backend: it removes the partial images
// except those of live keys and those of writers of this process still
// open (a partial image is named PartialPrefix + key + "." + random).
func (s *RBD) AbortStale(ctx context.Context, live func(key string) bool) error {
	names, err := rbd.GetImageNames(s.ioctx)
	if err != nil {
		return fmt.Errorf("rbd store: list pool %s: %w", s.cfg.Pool, err)
	}
	s.mu.Lock()
	open := make(map[string]bool, len(s.writers))
	for w := range s.writers {
		open[w.tmp] = true
	}
	s.mu.Unlock()
	return s.removePartial(names, func(name string) bool {
		key := strings.TrimPrefix(name, PartialPrefix)
		if i := strings.LastIndexByte(key, '.'); i > 0 {
			key = key[:i]
		}
		return open[name] || live(key)
	})
}

// removePartial removes the partial images among names except those
// spared; images Ceph still reports busy go to the background reaper.
func (s *RBD) removePartial(names []string, spare func(name string) bool) error {
	var busy []string
	for _, name := range names {
		if !strings.HasPrefix(name, PartialPrefix) || spare(name) {
			continue
		}
		err := s.remove(name)
		if isBusy(err) {
			busy = append(busy, name)
			continue
		}
		if err != nil {
			return fmt.Errorf("rbd store: remove incomplete image %s: %w", name, err)
		}
	}
	if len(busy) > 0 {
		s.mu.Lock()
		if s.reaper == nil {
			s.reaper, s.stop = make(chan struct{}), make(chan struct{})
			go s.reap(busy, s.reaper, s.stop)
		}
		s.mu.Unlock()
	}
	return nil
}

// reap retries removing the images in names until they are gone, two
// minutes have passed, or stop is closed.
func (s *RBD) reap(names []string, done, stop chan struct{}) {
	defer close(done)
	deadline := time.Now().Add(2 * time.Minute)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for len(names) > 0 && time.Now().Before(deadline) {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		left := names[:0]
		for _, name := range names {
			if err := s.remove(name); err != nil {
				left = append(left, name)
			}
		}
		names = left
	}
}

// isBusy: Ceph refused because the image is open (watched) elsewhere.
func isBusy(err error) bool {
	var ce interface{ ErrorCode() int }
	return errors.As(err, &ce) && ce.ErrorCode() == -int(syscall.EBUSY)
}

// Close implements backend.Backend.
func (s *RBD) Close() error {
	s.mu.Lock()
	reaper, stop := s.reaper, s.stop
	s.reaper = nil
	s.mu.Unlock()
	if reaper != nil {
		close(stop)
		<-reaper
	}
	if s.ioctx != nil {
		s.ioctx.Destroy()
		s.ioctx = nil
		s.conn.Shutdown()
	}
	return nil
}

// reader is an image opened read-only at its snapshot. librbd handles are
// safe for concurrent reads.
type reader struct {
	img  *rbd.Image
	key  string
	size int64
}

var _ backend.Reader = (*reader)(nil)

func (r *reader) Size() int64 { return r.size }

func (r *reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("rbd store: read %s: negative offset", r.key)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	want := p
	if rest := r.size - off; int64(len(want)) > rest {
		want = want[:rest]
	}
	n, err := r.img.ReadAt(want, off)
	if err != nil && err != io.EOF {
		return n, fmt.Errorf("rbd store: read %s at %d: %w", r.key, off, err)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (r *reader) Close() error { return r.img.Close() }
