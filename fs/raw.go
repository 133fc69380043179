package fs

import (
	"context"
	"errors"
	"hash/fnv"
	"io"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/glimpse-project/glimpse/convert"
	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
)

// rawDirIno follows the status directories' inode numbers.
var rawDirIno = uint64(3 + len(meta.Statuses))

// rawIno is the inode of an image's raw view: not the image's own inode,
// since the two files hold different bytes.
func rawIno(id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte("raw/"))
	h.Write([]byte(id))
	return h.Sum64() | imageInoBit
}

// rawDir is raw/: every active image, under the name it has in active/,
// as its virtual disk. Nothing in it can be created, renamed or removed.
//
// Its operations never wait for uploads in active/ to settle, as those of
// active/ do: an upload still settling has no disk to show yet, and a
// change made through the mount invalidates raw/'s entries inside the
// operation making it (see invalidateRaw), which must not wait for a
// raw/ lookup that waits for it.
type rawDir struct {
	gofs.Inode
	fixedDir
	// active names the entries: the listing and name resolution of
	// active/, so raw/ shows the same names (NAME@ID on collisions).
	active *statusDir
}

func (d *rawDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	id, err := d.active.resolveSettled(ctx, name)
	if err != nil {
		return nil, toErrno(d.root.log, "lookup", err)
	}
	img, err := d.root.svc.Get(ctx, d.root.opts.Principal, id)
	if err != nil {
		return nil, toErrno(d.root.log, "lookup", err)
	}
	if img.Status != meta.Active {
		return nil, syscall.ENOENT // a file being written in active/
	}
	// The inode of an image's view is the node the kernel already
	// knows, if it does: it keeps what the extent map said.
	ino := d.NewInode(ctx, &rawNode{root: d.root, id: id}, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: rawIno(id)})
	n, ok := ino.Operations().(*rawNode)
	if !ok {
		return nil, syscall.EIO
	}
	if errno := n.fillAttr(ctx, img, nil, &out.Attr); errno != 0 {
		return nil, errno
	}
	return ino, 0
}

func (d *rawDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	entries, ids, errno := d.active.listSettled(ctx)
	if errno != 0 {
		return nil, errno
	}
	// The listing of active/ may hold a file still being written under
	// the path it was created at: it is saving, with no virtual disk yet.
	recs, err := d.root.svc.GetMany(ctx, d.root.opts.Principal, ids)
	if err != nil {
		return nil, toErrno(d.root.log, "readdir", err)
	}
	kept := entries[:0]
	for i, e := range entries {
		if i < len(recs) && recs[i] != nil && recs[i].Status == meta.Active {
			e.Ino = rawIno(ids[i])
			kept = append(kept, e)
		}
	}
	return gofs.NewListDirStream(append(dotEntries(d.ino, rootIno), kept...)), 0
}

func (d *rawDir) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

func (d *rawDir) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }

func (d *rawDir) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EROFS
}

// rawNode is one image's virtual disk, read-only.
type rawNode struct {
	gofs.Inode
	noProperties
	root *Root
	id   string

	// size and allocated (the bytes that hold data, not holes) are
	// found once, from the format's header and by walking the extent
	// map: an active image's content never changes, so they are facts of
	// the content, not catalogue state. (The record's virtual_size is
	// what upload inspection saw, which for a fixed VHD declared as vhd
	// counts the footer.)
	mu        sync.Mutex
	counted   bool
	size      int64
	allocated int64
}

// rawHandle is one open virtual disk.
type rawHandle struct {
	disk *lifecycle.VirtualDisk
	img  *meta.Image

	mu    sync.Mutex
	next  int64 // where a sequential reader reads next
	ahead int64 // how far prefetching has been started
	// prefetching counts the prefetches in flight, which read through
	// disk: Release waits for them before closing it.
	prefetching sync.WaitGroup
}

// Readahead for sequential readers of compressed disks: the next
// prefetchWindow bytes are decompressed into the shared cache by other
// goroutines while the reader copies what it has, in chunks of
// prefetchChunk, one worker each, on at most one worker per CPU for the
// whole mount (a chunk that finds no worker free is left to the reads,
// never queued). The kernel's own readahead asks for 128 KiB at a time,
// two qcow2 clusters: too little to keep a second core busy. One worker
// decoding the whole window kept one: the reads caught up with it and
// waited on the clusters it was decoding.
const (
	prefetchWindow = 4 << 20
	prefetchChunk  = 512 << 10
	// sequentialSlack: the kernel's readahead requests arrive out of
	// order, a little ahead of or behind where the last one ended.
	sequentialSlack = 512 << 10
)

// readahead starts prefetching past a read of [off, end) if the handle
// reads sequentially, and says whether it does.
func (h *rawHandle) readahead(workers chan struct{}, off, end int64) bool {
	p, ok := h.disk.Image.(convert.Prefetcher)
	if !ok {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	sequential := off >= h.next-sequentialSlack && off <= h.next+sequentialSlack
	h.next = max(h.next, end)
	if !sequential {
		return false
	}
	h.ahead = max(h.ahead, end)
	limit := min(end+prefetchWindow, h.disk.Size())
	for h.ahead < limit {
		select {
		case workers <- struct{}{}:
		default:
			return true // every worker is busy: the reads will decode for themselves
		}
		// Chunks end on multiples of prefetchChunk, so that two of them
		// share at most one block (which the cache decodes once).
		from := h.ahead
		h.ahead = min((from/prefetchChunk+1)*prefetchChunk, limit)
		n := h.ahead - from
		h.prefetching.Add(1)
		go func() {
			defer h.prefetching.Done()
			defer func() { <-workers }()
			p.Prefetch(from, n)
		}()
	}
	return true
}

// fillAttr fills a for img's virtual disk: owner, mode and times as in
// active/, st_size the virtual size, st_blocks what the extent map says
// is allocated. disk, if not nil, is an open view of it.
func (n *rawNode) fillAttr(ctx context.Context, img *meta.Image, disk *lifecycle.VirtualDisk, a *fuse.Attr) syscall.Errno {
	n.root.imageAttr(img, a)
	a.Ino = rawIno(img.ID)
	a.Mode = syscall.S_IFREG | 0o444
	// Times are created_at, not updated_at: the disk never changes, and
	// the kernel drops a file's page cache when its mtime moves, as it
	// would with every property set.
	t := img.CreatedAt
	a.SetTimes(&t, &t, &t)
	n.mu.Lock()
	counted, size, allocated := n.counted, n.size, n.allocated
	n.mu.Unlock()
	if !counted {
		if disk == nil {
			d, _, err := lifecycle.OpenVirtualDisk(ctx, n.root.svc, n.root.opts.Principal, img.ID, n.root.rawCache)
			if err != nil {
				return n.openErrno(err)
			}
			defer d.Close()
			disk = d
		}
		var err error
		if allocated, err = allocatedBytes(disk); err != nil {
			return toErrno(n.root.log, "getattr", err)
		}
		size = disk.Size()
		n.mu.Lock()
		n.size, n.allocated, n.counted = size, allocated, true
		n.mu.Unlock()
	}
	a.Size = uint64(size)
	a.Blocks = (uint64(allocated) + 511) / 512
	return 0
}

// allocatedBytes sums the data extents of disk.
func allocatedBytes(disk *lifecycle.VirtualDisk) (int64, error) {
	var total int64
	size := disk.Size()
	for off := int64(0); off < size; {
		ext, err := disk.Extent(off, size-off)
		if err != nil {
			return 0, err
		}
		if ext.Length <= 0 {
			return 0, errors.New("extent map made no progress")
		}
		if !ext.Zero {
			total += ext.Length
		}
		off += ext.Length
	}
	return total, nil
}

// openErrno: deactivated content is EACCES to open, as in active/.
func (n *rawNode) openErrno(err error) syscall.Errno {
	if isForbidden(err) {
		return syscall.EACCES
	}
	return toErrno(n.root.log, "open", err)
}

func (n *rawNode) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	img, err := n.root.svc.Get(ctx, n.root.opts.Principal, n.id)
	h, open := f.(*rawHandle)
	if err != nil || img.Status != meta.Active {
		if !open {
			if err == nil {
				err = lifecycle.ErrNotFound // it left active/, and raw/ with it
			}
			return toErrno(n.root.log, "getattr", err)
		}
		// Gone or deactivated while open: the open file still is what it was.
		errno := n.fillAttr(ctx, h.img, h.disk, &out.Attr)
		out.Attr.Nlink = 0
		return errno
	}
	var disk *lifecycle.VirtualDisk
	if open {
		disk = h.disk
	}
	return n.fillAttr(ctx, img, disk, &out.Attr)
}

// Setattr: the view is read-only, its mode and times included.
func (n *rawNode) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// Open opens the virtual disk for reading; any write access is EROFS. The
// content stays in the kernel's page cache across opens: an active
// image's disk never changes (a new upload is a new image, a new inode).
func (n *rawNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	disk, img, err := lifecycle.OpenVirtualDisk(ctx, n.root.svc, n.root.opts.Principal, n.id, n.root.rawCache)
	if err != nil {
		return nil, 0, n.openErrno(err)
	}
	return &rawHandle{disk: disk, img: img}, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
}

func (n *rawNode) Read(ctx context.Context, f gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h, ok := f.(*rawHandle)
	if !ok {
		return nil, syscall.EBADF
	}
	size := h.disk.Size()
	if off >= size {
		return fuse.ReadResultData(nil), 0
	}
	dest = dest[:min(int64(len(dest)), size-off)]
	// A sequential reader keeps what it decodes: the prefetching around
	// it wants the same clusters.
	read := h.disk.ReadAt
	if h.readahead(n.root.prefetchers, off, off+int64(len(dest))) {
		read = h.disk.Image.(convert.Prefetcher).ReadAtKeep
	}
	got, err := read(dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, toErrno(n.root.log, "read", err)
	}
	return fuse.ReadResultData(dest[:got]), 0
}

func (n *rawNode) Write(ctx context.Context, f gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	return 0, syscall.EROFS
}

func (n *rawNode) Release(ctx context.Context, f gofs.FileHandle) syscall.Errno {
	if h, ok := f.(*rawHandle); ok {
		h.prefetching.Wait()
		if err := h.disk.Close(); err != nil {
			n.root.log.Warn("close virtual disk", "image", n.id, "err", err)
		}
	}
	return 0
}

// Lseek answers SEEK_DATA and SEEK_HOLE from the disk's extent map, so
// cp --sparse, qemu-img and fallocate -d skip the holes without reading
// them. (The kernel answers the other whences itself.)
func (n *rawNode) Lseek(ctx context.Context, f gofs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	h, ok := f.(*rawHandle)
	if !ok {
		return 0, syscall.EBADF
	}
	if whence != seekData && whence != seekHole {
		return 0, syscall.EINVAL
	}
	size := h.disk.Size()
	pos := int64(off)
	if off > uint64(size) || pos >= size {
		return 0, syscall.ENXIO
	}
	for pos < size {
		ext, err := h.disk.Extent(pos, size-pos)
		if err != nil {
			return 0, toErrno(n.root.log, "lseek", err)
		}
		if ext.Length <= 0 {
			return 0, syscall.EIO
		}
		if ext.Zero == (whence == seekHole) {
			return uint64(pos), 0
		}
		pos += ext.Length
	}
	if whence == seekHole {
		return uint64(size), 0 // the implicit hole at the end
	}
	return 0, syscall.ENXIO
}

// lseek(2)'s whences that FUSE passes on.
const (
	seekData = 3
	seekHole = 4
)

// The view has no properties of its own: those are on the image in
// active/. Reading one says there is none; setting or removing one is
// refused, as on a read-only filesystem.

func (n *rawNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.EROFS
}

func (n *rawNode) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return syscall.EROFS
}
