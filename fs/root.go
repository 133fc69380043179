// Package fs is the FUSE face of glimpse: it mounts the catalogue as
//
//	MOUNT/images/<id>          every image, by id
//	MOUNT/<status>/<name>      one directory per Glance status
//	MOUNT/raw/<name>           every active image as its virtual disk, read-only
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
	"runtime"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/glimpse-project/glimpse/convert"
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
	// StatfsDir is the local store's directory, whose filesystem's size
	// and use df reports for the mount; "" for stores that do not say.
	StatfsDir string
	Logger    *slog.Logger
	// Debug logs every FUSE request.
	Debug bool
	// Metrics counts FUSE requests; nil: unregistered metrics.
	Metrics *Metrics
	// RawCacheBytes bounds the memory raw/ keeps of decompressed
	// clusters and format tables, for all images together; 0:
	// DefaultRawCacheBytes, negative: none kept.
	RawCacheBytes int64
}

// DefaultRawCacheBytes is raw/'s cache when none is set: enough for the
// L2 tables of 2 TiB of qcow2 at 64 KiB clusters, or 4096 clusters.
const DefaultRawCacheBytes = 256 << 20

// Root is the mount's root directory. It holds the mount's dependencies.
type Root struct {
	gofs.Inode
	fixedDir
	svc  *lifecycle.Service
	opts Options
	log  *slog.Logger

	started time.Time // directories show it as their times

	rawCache    *convert.BlockCache // what raw/ keeps decoded, shared by every open disk
	prefetchers chan struct{}       // raw/'s readahead workers: a token each

	ids    *gofs.Inode                 // images/
	status map[meta.Status]*gofs.Inode // one directory per status; set in OnAdd, then read-only
	busy   *dirBusy                    // requests in flight under a directory's kernel lock
	raw    *gofs.Inode                 // raw/; set in OnAdd

	mu      sync.Mutex             // guards pending, live, writers, creators and holders
	pending map[pendingPath]string // image id created at a path and still being written
	live    map[string]*imageNode  // image nodes the kernel knows, by id
	// writers counts each image's write handles the kernel has not
	// released yet. Release is asynchronous to close(2), and while the
	// kernel holds a file open in cached mode it fails a passthrough open
	// of the same inode with EIO, so reads then go through the daemon.
	writers map[string]int
	// creators is the process that created each image through the mount,
	// for as long as it lives: attributes it sets are a copy's (see
	// imageNode.copying). It is the kernel's view of who made a file, not
	// catalogue state.
	creators   map[string]process
	prunePoint int // prune creators of dead processes past this size
	// holders counts the handles each process holds on each image.
	holders map[holder]int
	// creations are the files created in active/ not settled yet, by
	// image id; reopenings counts those waiting for their creator's exit.
	creations  map[string]*creation
	reopenings int
	exits      *exitWatcher // nil: the kernel gives no exit events
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
	cacheBytes := opts.RawCacheBytes
	if cacheBytes == 0 {
		cacheBytes = DefaultRawCacheBytes
	}
	r := &Root{
		started: time.Now(),
		svc:     svc,
		opts:    opts,
		log:     opts.Logger,
		status:  map[meta.Status]*gofs.Inode{},
		busy:    newDirBusy(),
		pending: map[pendingPath]string{},
		live:    map[string]*imageNode{},
		writers: map[string]int{},

		creators:   map[string]process{},
		holders:    map[holder]int{},
		creations:  map[string]*creation{},
		prunePoint: 64,
	}
	r.fixedDir = fixedDir{root: r, ino: rootIno, nlink: uint32(2 + 1 + len(meta.Statuses) + 1)}
	r.rawCache = convert.NewBlockCache(cacheBytes)
	r.prefetchers = make(chan struct{}, runtime.GOMAXPROCS(0))
	return r
}

// OnAdd builds the fixed directories.
func (r *Root) OnAdd(ctx context.Context) {
	r.ids = r.NewPersistentInode(ctx, &idsDir{fixedDir: fixedDir{root: r, ino: idsIno, nlink: 2}}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: idsIno})
	r.AddChild("images", r.ids, false)
	for i, st := range meta.Statuses {
		ino := uint64(3 + i)
		d := r.NewPersistentInode(ctx, &statusDir{fixedDir: fixedDir{root: r, ino: ino, nlink: 2}, status: st}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino})
		r.AddChild(string(st), d, false)
		r.status[st] = d
	}
	active := &statusDir{fixedDir: fixedDir{root: r, ino: 3}, status: meta.Active}
	for i, st := range meta.Statuses {
		if st == meta.Active {
			active.ino = uint64(3 + i)
		}
	}
	r.raw = r.NewPersistentInode(ctx, &rawDir{fixedDir: fixedDir{root: r, ino: rawDirIno, nlink: 2}, active: active}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: rawDirIno})
	r.AddChild("raw", r.raw, false)
}

// Readdir lists the fixed directories, with `.` and `..` (the root is its
// own parent inside the mount).
func (r *Root) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	entries := dotEntries(rootIno, rootIno)
	entries = append(entries, fuse.DirEntry{Name: "images", Mode: syscall.S_IFDIR, Ino: idsIno})
	for i, st := range meta.Statuses {
		entries = append(entries, fuse.DirEntry{Name: string(st), Mode: syscall.S_IFDIR, Ino: uint64(3 + i)})
	}
	entries = append(entries, fuse.DirEntry{Name: "raw", Mode: syscall.S_IFDIR, Ino: rawDirIno})
	return gofs.NewListDirStream(entries), 0
}

// Create, Unlink and Rename at the top: the layout is fixed.
func (r *Root) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EPERM
}

func (r *Root) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EPERM }

func (r *Root) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EPERM
}

// nominalRoom is the size df shows for a store that does not say how big
// it is (S3, Swift, RBD): large, as s3fs shows, so that tools checking for
// room go ahead; the store's own limits answer at write (ENOSPC).
const nominalRoom = 1 << 50

// statfsBlock is the block size statfs counts in.
const statfsBlock = 4096

// Statfs reports what can be stored: the local store's filesystem (its
// size and use), or a nominal 1 PiB for stores that do not tell; within
// the fs project's byte quota, when one is set (size: the quota; used:
// what the project holds, uploads in flight included).
func (r *Root) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	total, free := uint64(nominalRoom), uint64(nominalRoom)
	if r.opts.StatfsDir != "" {
		var st syscall.Statfs_t
		if err := syscall.Statfs(r.opts.StatfsDir, &st); err != nil {
			return toErrno(r.log, "statfs", err)
		}
		total, free = st.Blocks*uint64(st.Bsize), st.Bavail*uint64(st.Bsize)
	}
	limit, used, ok, err := lifecycle.ByteRoom(r.svc, r.opts.Principal.Project)
	if err != nil {
		return toErrno(r.log, "statfs", err)
	}
	if ok {
		room := uint64(max(limit-used, 0))
		total, free = min(total, uint64(limit)), min(free, room)
	}
	out.Bsize, out.Frsize = statfsBlock, statfsBlock
	out.Blocks = total / statfsBlock
	out.Bfree = free / statfsBlock
	out.Bavail = out.Bfree
	out.NameLen = maxNameBytes
	return 0
}

func (r *Root) dirAttr(a *fuse.Attr, ino uint64, nlink uint32) {
	a.Ino = ino
	a.Nlink = nlink
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
		// The root is inode 1, as on most filesystems (go-fuse says 0).
		RootStableAttr:  &gofs.StableAttr{Ino: rootIno},
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
	if root.exits = watchExits(root.log); root.exits != nil {
		go root.exits.run(root.creatorExited, root.lostExits)
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
	if m.root.exits != nil {
		if cerr := m.root.exits.close(); cerr != nil {
			m.root.log.Warn("stop watching exits", "err", cerr)
		}
	}
	forgetConnection(m.dir)
	return err
}

// Settle waits until the kernel has been told of every catalogue change
// made so far, those made through the mount included.
func (m *Server) Settle() { m.settle() }

// Wait blocks until the mount is gone (unmounted from outside too).
func (m *Server) Wait() { m.server.Wait() }
