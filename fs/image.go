package fs

import (
	"context"
	"errors"
	"strings"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
)

// imageNode is one image, wherever it shows (images/<id> and its status
// directory): the same inode under two names.
type imageNode struct {
	gofs.Inode
	root *Root
	id   string

	mu     sync.Mutex  // guards reads and opened
	reads  int         // read handles the kernel holds
	opened *meta.Image // the image as the last read handle opened it
}

// copying reports whether the caller is the process that created the
// image through the mount, whose attribute changes copy those of the file
// it copies (cp -a, rsync -aX).
func (n *imageNode) copying(ctx context.Context) bool {
	tgid := callerTgid(ctx)
	n.root.mu.Lock()
	creator, created := n.root.creators[n.id]
	holding := n.root.holders[holder{n.id, tgid}] > 0
	n.root.mu.Unlock()
	return created && holding && processOf(tgid) == creator
}

// holder is a process holding an image open through the mount.
type holder struct {
	id   string
	tgid uint32
}

// hold and letGo count the handles of image id that process tgid holds:
// a write handle until its opener closes it (the FLUSH, which close(2)
// waits for; the RELEASE comes later), a read handle until its release.
func (r *Root) hold(id string, tgid uint32) {
	r.mu.Lock()
	r.holders[holder{id, tgid}]++
	r.mu.Unlock()
}

func (r *Root) letGo(id string, tgid uint32) {
	r.mu.Lock()
	k := holder{id, tgid}
	if r.holders[k]--; r.holders[k] <= 0 {
		delete(r.holders, k)
	}
	r.mu.Unlock()
}

// addCreator records that process p created image id. Records of
// processes that are gone are dropped now and then, each time the map has
// doubled, so that checking costs nothing per create on average.
func (r *Root) addCreator(id string, p process) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.creators[id] = p
	if len(r.creators) < r.prunePoint {
		return
	}
	alive := map[process]bool{}
	for id, p := range r.creators {
		live, seen := alive[p]
		if !seen {
			live = processOf(p.tgid) == p
			alive[p] = live
		}
		if !live {
			delete(r.creators, id)
		}
	}
	r.prunePoint = 2*len(r.creators) + 64
}

// imageInode returns the inode of img under parent, filling attr.
func (r *Root) imageInode(ctx context.Context, parent *gofs.Inode, img *meta.Image, attr *fuse.Attr) *gofs.Inode {
	r.imageAttr(img, attr)
	n := &imageNode{root: r, id: img.ID}
	ino := parent.NewInode(ctx, n, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: imageIno(img.ID)})
	if node, ok := ino.Operations().(*imageNode); ok {
		r.mu.Lock()
		r.live[img.ID] = node
		r.mu.Unlock()
	}
	return ino
}

// OnForget drops the node from the live set once the kernel forgets it.
func (n *imageNode) OnForget() {
	n.root.mu.Lock()
	if n.root.live[n.id] == n {
		delete(n.root.live, n.id)
	}
	n.root.mu.Unlock()
}

// imageAttr fills a from the record: st_size is the image size, st_mtime
// its updated_at, and the mode says whether data may be written (queued
// and saving images) or not (0444).
func (r *Root) imageAttr(img *meta.Image, a *fuse.Attr) {
	a.Ino = imageIno(img.ID)
	a.Mode = syscall.S_IFREG | 0o444
	if img.Status == meta.Queued || img.Status == meta.Saving {
		a.Mode = syscall.S_IFREG | 0o644
	}
	a.Nlink = 1
	a.Size = 0
	if img.Size != nil {
		a.Size = uint64(*img.Size)
	}
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = 1 << 20
	t := img.UpdatedAt
	a.SetTimes(&t, &t, &t)
	a.Uid, a.Gid = r.opts.UID, r.opts.GID
}

func (n *imageNode) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.root.settleGone(ctx, imageIs(n.id))
	img, err := n.root.svc.Get(ctx, n.root.opts.Principal, n.id)
	if errors.Is(err, lifecycle.ErrNotFound) || errors.Is(err, lifecycle.ErrRegistryUnavailable) {
		// Removed while open, or the registry cannot be asked now (etcd
		// without a quorum): the open file still is what it was, and
		// its reads, which the kernel may precede with this, go on from
		// the store. The kernel sends fstat(2) without the handle, so
		// the node keeps it.
		opened := n.openedImage()
		if rh, ok := f.(*readHandle); ok {
			opened = rh.img
		}
		if opened != nil {
			n.root.imageAttr(opened, &out.Attr)
			if errors.Is(err, lifecycle.ErrNotFound) {
				out.Attr.Nlink = 0
			}
			return 0
		}
	}
	if err != nil {
		return toErrno(n.root.log, "getattr", err)
	}
	n.root.imageAttr(img, &out.Attr)
	if h, ok := f.(*writeHandle); ok {
		if size, writing := h.size(); writing {
			out.Attr.Size = uint64(size)
			out.Attr.Blocks = (out.Attr.Size + 511) / 512
		}
	} else if up := n.root.creationUpload(ctx, n.id); up != nil {
		out.Attr.Size = uint64(up.Size())
		out.Attr.Blocks = (out.Attr.Size + 511) / 512
	}
	return 0
}

// Setattr accepts and ignores mode, owner and time changes (cp -p, rsync
// -a and touch must not fail on an image), and changes the size only of an
// image being written through the handle f.
func (n *imageNode) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if size, ok := in.GetSize(); ok {
		h, writing := f.(*writeHandle)
		if !writing {
			img, err := n.root.svc.Get(ctx, n.root.opts.Principal, n.id)
			if err != nil {
				return toErrno(n.root.log, "setattr", err)
			}
			if img.Size == nil && size == 0 || img.Size != nil && uint64(*img.Size) == size {
				return n.Getattr(ctx, f, out)
			}
			return syscall.EACCES
		}
		if errno := h.truncate(ctx, int64(size)); errno != 0 {
			return errno
		}
	}
	return n.Getattr(ctx, f, out)
}

// Open opens content for reading, or a queued image for writing. Active
// images are immutable (EACCES for writing) and their content may stay in
// the kernel's page cache across opens; deactivated content is unreadable.
func (n *imageNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	n.root.settleGone(ctx, imageIs(n.id))
	p := n.root.opts.Principal
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		img, err := n.root.svc.Get(ctx, p, n.id)
		if err != nil {
			return nil, 0, toErrno(n.root.log, "open", err)
		}
		switch img.Status {
		case meta.Queued:
			return newWriteHandle(n.root, n.id, callerTgid(ctx)), 0, 0
		case meta.Saving:
			if h := n.root.adopt(ctx, n.id); h != nil {
				return h, 0, 0 // its creator, writing it again (qemu-img)
			}
			return nil, 0, syscall.EBUSY // another writer has it
		default:
			return nil, 0, syscall.EACCES
		}
	}
	if up := n.root.creationUpload(ctx, n.id); up != nil {
		// Its creator reads back what it wrote so far (qemu-img reopens
		// the image it is making to read its header).
		n.mu.Lock()
		n.reads++ // Release counts every read handle down
		n.mu.Unlock()
		n.root.hold(n.id, callerTgid(ctx))
		return &readHandle{r: uploadView{up}, tgid: callerTgid(ctx)}, fuse.FOPEN_DIRECT_IO, 0
	}
	r, img, err := n.root.svc.Open(ctx, p, n.id, lifecycle.OpenOptions{})
	if err != nil {
		if isForbidden(err) {
			return nil, 0, syscall.EACCES
		}
		return nil, 0, toErrno(n.root.log, "open", err)
	}
	var fl uint32 = fuse.FOPEN_NOFLUSH
	if img.Status == meta.Active {
		fl |= fuse.FOPEN_KEEP_CACHE // immutable: the page cache stays valid
	}
	n.mu.Lock()
	n.reads++
	n.opened = img
	n.mu.Unlock()
	tgid := callerTgid(ctx)
	n.root.hold(n.id, tgid)
	return &readHandle{r: r, img: img, tgid: tgid, passthrough: !n.root.hasWriter(n.id)}, fl, 0
}

// openedImage is the image as a read handle still open saw it, or nil.
func (n *imageNode) openedImage() *meta.Image {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.reads == 0 {
		return nil
	}
	return n.opened
}

func (n *imageNode) Read(ctx context.Context, f gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	switch h := f.(type) {
	case *readHandle:
		return h.read(dest, off)
	case *writeHandle:
		return h.read(ctx, dest, off)
	}
	return nil, syscall.EBADF
}

func (n *imageNode) Write(ctx context.Context, f gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	h, ok := f.(*writeHandle)
	if !ok {
		return 0, syscall.EBADF
	}
	return h.write(ctx, data, off)
}

func (n *imageNode) Flush(ctx context.Context, f gofs.FileHandle) syscall.Errno {
	if h, ok := f.(*writeHandle); ok {
		return h.flush(ctx)
	}
	return 0
}

func (n *imageNode) Release(ctx context.Context, f gofs.FileHandle) syscall.Errno {
	switch h := f.(type) {
	case *writeHandle:
		h.release(ctx)
	case *readHandle:
		h.r.Close()
		n.root.letGo(n.id, h.tgid)
		n.mu.Lock()
		n.reads--
		n.mu.Unlock()
	}
	return 0
}

// Fsync succeeds: an upload becomes durable, all at once, when it is
// committed at close.
func (n *imageNode) Fsync(ctx context.Context, f gofs.FileHandle, flags uint32) syscall.Errno {
	return 0
}

// Extended attributes: user.KEY for every property, as Glance shows it.

const userPrefix = "user."

func (n *imageNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	n.root.settleGone(ctx, imageIs(n.id))
	key, ok := strings.CutPrefix(attr, userPrefix)
	if !ok {
		// Images have no security labels, ACLs or capabilities: the
		// answer of a filesystem without them, which ls -l remembers for
		// the whole mount instead of asking twice per entry.
		return 0, syscall.EOPNOTSUPP
	}
	img, err := n.root.svc.Get(ctx, n.root.opts.Principal, n.id)
	if err != nil {
		return 0, toErrno(n.root.log, "getxattr", err)
	}
	v, ok := lifecycle.Lookup(img, key)
	if !ok {
		return 0, syscall.ENODATA
	}
	return copyOut(dest, v)
}

func (n *imageNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	n.root.settleGone(ctx, imageIs(n.id))
	img, err := n.root.svc.Get(ctx, n.root.opts.Principal, n.id)
	if err != nil {
		return 0, toErrno(n.root.log, "listxattr", err)
	}
	var b strings.Builder
	for _, p := range lifecycle.Properties(img) {
		b.WriteString(userPrefix)
		b.WriteString(p.Key)
		b.WriteByte(0)
	}
	return copyOut(dest, b.String())
}

// copyOut answers the xattr size protocol: an empty dest asks for the size;
// a short one gets ERANGE.
func copyOut(dest []byte, v string) (uint32, syscall.Errno) {
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// Linux's setxattr flags.
const (
	xattrCreate  = 1
	xattrReplace = 2
)

func (n *imageNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	key, ok := strings.CutPrefix(attr, userPrefix)
	if !ok {
		return syscall.EOPNOTSUPP
	}
	if len(data) > lifecycle.MaxValueLength {
		// As the kernel answers for values past XATTR_SIZE_MAX.
		return syscall.E2BIG
	}
	p := n.root.opts.Principal
	if n.copying(ctx) {
		// A copy tool: the copy keeps its name and what its content
		// says, and takes the source's other properties.
		op, err := lifecycle.CopiedOp(key, string(data))
		if err != nil || op == nil {
			return toErrno(n.root.log, "setxattr", err)
		}
		_, err = n.root.svc.Update(ctx, p, n.id, []lifecycle.Op{*op})
		if isTooLarge(err) {
			return syscall.ENOSPC
		}
		return toErrno(n.root.log, "setxattr", err)
	}
	img, err := n.root.svc.Get(ctx, p, n.id)
	if err != nil {
		return toErrno(n.root.log, "setxattr", err)
	}
	value := string(data)
	current, exists := lifecycle.Lookup(img, key)
	switch {
	case flags&xattrCreate != 0 && exists:
		return syscall.EEXIST
	case flags&xattrReplace != 0 && !exists:
		return syscall.ENODATA
	case exists && current == value && lifecycle.IsBaseKey(key):
		// Setting a base key to the value it has changes nothing, so
		// copying attributes between images (cp --preserve=xattr) works.
		return 0
	}
	v, err := lifecycle.ParseText(key, value)
	if err != nil {
		return toErrno(n.root.log, "setxattr", err)
	}
	_, err = n.root.svc.Update(ctx, p, n.id, []lifecycle.Op{{Op: "replace", Key: key, Value: v}})
	if isTooLarge(err) {
		return syscall.ENOSPC // xattr space exhausted, as Linux says it
	}
	return toErrno(n.root.log, "setxattr", err)
}

func (n *imageNode) Removexattr(ctx context.Context, attr string) syscall.Errno {
	key, ok := strings.CutPrefix(attr, userPrefix)
	if !ok {
		return syscall.EOPNOTSUPP // no ACLs or labels to remove, as for reading them
	}
	op := &lifecycle.Op{Op: "remove", Key: key}
	if n.copying(ctx) {
		// rsync -aX removes what its source lacks: base properties stay.
		if op = lifecycle.UncopiedOp(key); op == nil {
			return 0
		}
	}
	_, err := n.root.svc.Update(ctx, n.root.opts.Principal, n.id, []lifecycle.Op{*op})
	return toErrno(n.root.log, "removexattr", err)
}
