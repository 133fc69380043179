// Package fs is the FUSE face of glimpse: it mounts the catalogue as
//
//	MOUNT/images/<id>          every image, by id
//	MOUNT/<status>/<name>      one directory per Glance status
//
// with every property as a user.* extended attribute. It holds no state of
// its own beyond what the kernel protocol needs (open handles, the paths of
// files being written): every operation is a call into the lifecycle, and
// every change to the catalogue, from either face, comes back as an event
// that invalidates the kernel's caches.
package fs

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
)

// Options configure a mount.
type Options struct {
	// Principal is who the mount acts as (the --fs-project); admin by
	// default in the daemon.
	Principal lifecycle.Principal
	// UID and GID own every file; the daemon's by default.
	UID, GID uint32
	// AllowOther lets other users use the mount (with default_permissions).
	AllowOther bool
	// StatfsDir is a directory whose filesystem df reports for the mount.
	StatfsDir string
	Logger    *slog.Logger
	// Debug logs every FUSE request.
	Debug bool
	// Metrics counts FUSE requests; nil: unregistered metrics.
	Metrics *Metrics
}

// Root is the mount's root directory. It holds the mount's dependencies.
type Root struct {
	gofs.Inode
	svc  *lifecycle.Service
	opts Options
	log  *slog.Logger

	started time.Time // directories show it as their times

	ids    *gofs.Inode                 // images/
	status map[meta.Status]*gofs.Inode // one directory per status; set in OnAdd, then read-only
	busy   *dirBusy                    // requests in flight under a directory's kernel lock

	mu      sync.Mutex             // guards pending, live and writers
	pending map[pendingPath]string // image id created at a path and still being written
	live    map[string]*imageNode  // image nodes the kernel knows, by id
	// writers counts each image's write handles the kernel has not
	// released yet. Release is asynchronous to close(2), and while the
	// kernel holds a file open in cached mode it fails a passthrough open
	// of the same inode with EIO, so reads then go through the daemon.
	writers map[string]int
}

// addWriter and dropWriter count the write handles of image id.
func (r *Root) addWriter(id string) {
	r.mu.Lock()
	r.writers[id]++
	r.mu.Unlock()
}

func (r *Root) dropWriter(id string) {
	r.mu.Lock()
	if r.writers[id]--; r.writers[id] <= 0 {
		delete(r.writers, id)
	}
	r.mu.Unlock()
}

func (r *Root) hasWriter(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writers[id] > 0
}

// pendingPath is where a writer created an image it is still writing: the
// image is listed in saving/, but the path it was created under keeps
// working for the writer (rsync renames its temp file after close).
type pendingPath struct {
	dir  meta.Status
	name string
}

const (
	rootIno = 1
	idsIno  = 2
	// status directories take 3 and up, images a hash with the top bit set.
	imageInoBit = 1 << 63
)

func imageIno(id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return h.Sum64() | imageInoBit
}

// NewRoot returns the root of a mount of svc's catalogue.
func NewRoot(svc *lifecycle.Service, opts Options) *Root {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Root{
		started: time.Now(),
		svc:     svc,
		opts:    opts,
		log:     opts.Logger,
		status:  map[meta.Status]*gofs.Inode{},
		busy:    newDirBusy(),
		pending: map[pendingPath]string{},
		live:    map[string]*imageNode{},
		writers: map[string]int{},
	}
}

// OnAdd builds the fixed directories.
func (r *Root) OnAdd(ctx context.Context) {
	r.ids = r.NewPersistentInode(ctx, &idsDir{root: r}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: idsIno})
	r.AddChild("images", r.ids, false)
	for i, st := range meta.Statuses {
		d := r.NewPersistentInode(ctx, &statusDir{root: r, status: st}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: uint64(3 + i)})
		r.AddChild(string(st), d, false)
		r.status[st] = d
	}
}

// Getattr implements gofs.NodeGetattrer for the root directory.
func (r *Root) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	r.dirAttr(&out.Attr)
	return 0
}

// Statfs reports the filesystem holding the data directory.
func (r *Root) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	if r.opts.StatfsDir == "" {
		return 0
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(r.opts.StatfsDir, &st); err != nil {
		return gofs.ToErrno(err)
	}
	out.FromStatfsT(&st)
	return 0
}

func (r *Root) dirAttr(a *fuse.Attr) {
	a.Mode = syscall.S_IFDIR | 0o755
	a.Uid, a.Gid = r.opts.UID, r.opts.GID
	a.SetTimes(&r.started, &r.started, &r.started)
}

// Server is a live mount.
type Server struct {
	server *fuse.Server
	root   *Root
	stop   func()
	settle func()
	dir    string
}

// Mount mounts svc's catalogue on dir and serves it until Unmount. A stale
// mount left on dir by a crashed daemon is detached first.
func Mount(dir string, svc *lifecycle.Service, opts Options) (*Server, error) {
	root := NewRoot(svc, opts)
	if _, err := AbortDeadConnection(dir, root.log); err != nil {
		return nil, err
	}
	if err := recoverStaleMount(dir, root.log); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	second := time.Second
	var zero time.Duration
	mopts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			FsName:     "glimpse",
			Name:       "glimpse",
			AllowOther: opts.AllowOther,
			Debug:      opts.Debug,
			// As root (the daemon, the tests) mount directly; elsewhere fall
			// back to fusermount.
			DirectMount: true,
			// Large writes for writers that use them (dd bs=1M, qemu-img);
			// 1 MiB is the kernel's default max_pages_limit.
			MaxWrite:                1 << 20,
			MaxBackground:           64,
			MaxInflightRequestBytes: 64 << 20,
			// With HANDLE_KILLPRIV_V2 the kernel stops asking for
			// security.capability before every write; the security.*
			// reads that remain (ls -l) reach imageNode.Getxattr.
			ExtraCapabilities: fuse.CAP_HANDLE_KILLPRIV_V2,
		},
		EntryTimeout:    &second,
		AttrTimeout:     &second,
		NegativeTimeout: &zero,
		UID:             opts.UID,
		GID:             opts.GID,
		Logger:          nil,
	}
	if opts.AllowOther {
		mopts.MountOptions.Options = append(mopts.MountOptions.Options, "default_permissions")
	}
	metrics := opts.Metrics
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	// gofs.Mount, with the node bridge wrapped for the metrics.
	raw := &meteredFS{RawFileSystem: gofs.NewNodeFS(root, mopts), m: metrics}
	server, err := fuse.NewServer(raw, dir, &mopts.MountOptions)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	if err := recordConnection(dir); err != nil {
		root.log.Warn("the mount's FUSE connection is not recorded: after a crash, abort it by hand", "dir", dir, "err", err)
	}
	stop, settle := root.startInvalidator()
	return &Server{server: server, root: root, stop: stop, settle: settle, dir: dir}, nil
}

// Unmount detaches the mount, lazily if it is busy, and waits until the
// server has stopped.
func (m *Server) Unmount() error {
	err := m.server.Unmount()
	if err != nil {
		// Busy (a shell sits in it): detach now, the kernel finishes later.
		if derr := syscall.Unmount(m.dir, syscall.MNT_DETACH); derr == nil {
			err = nil
		}
	}
	m.server.Wait()
	m.stop()
	forgetConnection(m.dir)
	return err
}

// Settle waits until the kernel has been told of every catalogue change
// made so far, those made through the mount included.
func (m *Server) Settle() { m.settle() }

// Wait blocks until the mount is gone (unmounted from outside too).
func (m *Server) Wait() { m.server.Wait() }
