package fs

import (
	"context"
	"errors"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
)

// idsDir is images/: every image by id. Entries can be opened, read,
// written (queued images), removed and have attributes, but not renamed or
// created: ids are assigned.
type idsDir struct {
	gofs.Inode
	fixedDir
}

func (d *idsDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	defer d.root.busy.enter(&d.Inode)()
	d.root.settleGone(ctx, imageIs(name))
	if !lifecycle.ValidID(name) {
		return nil, syscall.ENOENT
	}
	img, err := d.root.svc.Get(ctx, d.root.opts.Principal, name)
	if err != nil {
		return nil, toErrno(d.root.log, "lookup", err)
	}
	return d.root.imageInode(ctx, &d.Inode, img, &out.Attr), 0
}

func (d *idsDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	defer d.root.busy.enter(&d.Inode)()
	d.root.settleGone(ctx, nil)
	entries := dotEntries(idsIno, rootIno)
	err := d.root.svc.All(ctx, d.root.opts.Principal, func(img *meta.Image) error {
		entries = append(entries, fuse.DirEntry{Name: img.ID, Mode: syscall.S_IFREG, Ino: imageIno(img.ID)})
		return nil
	})
	if err != nil {
		return nil, toErrno(d.root.log, "readdir", err)
	}
	return gofs.NewListDirStream(entries), 0
}

func (d *idsDir) Unlink(ctx context.Context, name string) syscall.Errno {
	defer d.root.busy.enter(&d.Inode)()
	return toErrno(d.root.log, "unlink", d.root.svc.Delete(ctx, d.root.opts.Principal, name))
}

func (d *idsDir) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EPERM
}

func (d *idsDir) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EPERM
}

// maxNameBytes is NAME_MAX: a longer name cannot be a file name.
const maxNameBytes = 255

// renameNoReplace is rename(2)'s RENAME_NOREPLACE flag, as FUSE passes it.
const renameNoReplace = 1

// statusDir is one directory per Glance status, its images by name. A name
// held by several images in the directory is shown, for each, as NAME@ID.
type statusDir struct {
	gofs.Inode
	fixedDir
	status meta.Status
}

// resolve finds the image a name in this directory stands for: a path being
// written, a name held by one image, or NAME@ID for a shared name.
func (d *statusDir) resolve(ctx context.Context, name string) (string, error) {
	d.root.settleGone(ctx, nameIs(name))
	return d.resolveSettled(ctx, name)
}

// resolveSettled is resolve without first waiting for the creations the
// name concerns to settle.
func (d *statusDir) resolveSettled(ctx context.Context, name string) (string, error) {
	d.root.mu.Lock()
	id, ok := d.root.pending[pendingPath{d.status, name}]
	d.root.mu.Unlock()
	if ok {
		return id, nil
	}
	p := d.root.opts.Principal
	ids, err := d.root.svc.Named(ctx, p, d.status, name)
	if err != nil {
		return "", err
	}
	if len(ids) == 1 {
		return ids[0], nil
	}
	// NAME@ID keeps naming that image for as long as it is here under
	// NAME, shared or not: `rm twin@*` removes the first twin, which
	// makes the second name unique, and must still find the second.
	if at := strings.LastIndexByte(name, '@'); at >= 0 && lifecycle.ValidID(name[at+1:]) {
		base, id := name[:at], name[at+1:]
		img, err := d.root.svc.Get(ctx, p, id)
		if err == nil && img.Status == d.status && img.Name == base {
			return id, nil
		}
		if err != nil && !errors.Is(err, lifecycle.ErrNotFound) {
			return "", err
		}
	}
	return "", lifecycle.ErrNotFound
}

func (d *statusDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	defer d.root.busy.enter(&d.Inode)()
	id, err := d.resolve(ctx, name)
	if err != nil {
		return nil, toErrno(d.root.log, "lookup", err)
	}
	img, err := d.root.svc.Get(ctx, d.root.opts.Principal, id)
	if err != nil {
		return nil, toErrno(d.root.log, "lookup", err)
	}
	return d.root.imageInode(ctx, &d.Inode, img, &out.Attr), 0
}

func (d *statusDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	entries, _, errno := d.list(ctx)
	if errno != 0 {
		return nil, errno
	}
	return gofs.NewListDirStream(append(dotEntries(d.ino, rootIno), entries...)), 0
}

// list returns the directory's entries and, beside each, the image it
// stands for.
func (d *statusDir) list(ctx context.Context) ([]fuse.DirEntry, []string, syscall.Errno) {
	d.root.settleGone(ctx, listedIn(d.status))
	return d.listSettled(ctx)
}

// listSettled is list without first waiting for the creations listed in
// the directory to settle.
func (d *statusDir) listSettled(ctx context.Context) ([]fuse.DirEntry, []string, syscall.Errno) {
	var entries []fuse.DirEntry
	var ids []string
	var prev meta.Entry
	run := 0 // how many entries so far share prev.Name
	add := func(name, id string) {
		entries = append(entries, fuse.DirEntry{Name: name, Mode: syscall.S_IFREG, Ino: imageIno(id)})
		ids = append(ids, id)
	}
	err := d.root.svc.Entries(ctx, d.root.opts.Principal, d.status, func(e meta.Entry) error {
		switch {
		case run > 0 && e.Name == prev.Name:
			if run == 1 { // the name turns out to be shared: show the first as NAME@ID too
				entries[len(entries)-1].Name = prev.Name + "@" + prev.ID
			}
			add(e.Name+"@"+e.ID, e.ID)
			run++
		default:
			add(e.Name, e.ID)
			run = 1
		}
		prev = e
		return nil
	})
	if err != nil {
		return nil, nil, toErrno(d.root.log, "readdir", err)
	}
	// A Glance name may be 255 characters, up to 1020 bytes, and NAME@ID
	// adds 37: what cannot be a file name is shown only under images/.
	kept := 0
	for i, e := range entries {
		if len(e.Name) <= maxNameBytes {
			entries[kept], ids[kept] = e, ids[i]
			kept++
		}
	}
	return entries[:kept], ids[:kept], 0
}

// OpendirHandle gives each opendir its own listing handle, so that the
// lookups READDIRPLUS makes for every entry (ls -l) are answered from the
// listing: the image behind each name is already known, and the name index
// need not be searched again.
func (d *statusDir) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return &statusDirHandle{dir: d}, 0, 0
}

// statusDirHandle is one open status directory. The listing is taken at
// the first read (and again after a rewind), as a plain readdir would.
type statusDirHandle struct {
	dir     *statusDir
	listed  bool
	entries []fuse.DirEntry
	ids     []string // ids[i] is the image entries[i] names
	next    int      // index of the next entry to return

	// Records read ahead for READDIRPLUS: recs[j] is the record of
	// entries[recFrom+j]. One read transaction per batch instead of one
	// per entry; a batch is no more than one READDIRPLUS reply holds, so
	// the records are as fresh as a plain lookup's.
	recFrom int
	recs    []*meta.Image
}

// readAhead is how many records one batch reads: fewer than the entries
// one READDIRPLUS reply holds (32 KiB, about 190 of ours).
const readAhead = 128

func (h *statusDirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	defer h.dir.root.busy.enter(&h.dir.Inode)()
	if !h.listed {
		entries, ids, errno := h.dir.list(ctx)
		if errno != 0 {
			return nil, errno
		}
		h.entries = append(dotEntries(h.dir.ino, rootIno), entries...)
		h.ids = append([]string{"", ""}, ids...) // . and .. stand for no image
		h.listed = true
	}
	if h.next >= len(h.entries) {
		return nil, 0
	}
	e := h.entries[h.next]
	h.next++
	e.Off = uint64(h.next)
	return &e, 0
}

// Seekdir moves to an offset Readdirent gave out; 0 (rewinddir) lists the
// directory afresh.
func (h *statusDirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if off == 0 {
		h.listed, h.entries, h.ids, h.next = false, nil, nil, 0
		h.recFrom, h.recs = 0, nil
		return 0
	}
	if off > uint64(len(h.entries)) {
		return syscall.EINVAL
	}
	h.next = int(off)
	return 0
}

func (h *statusDirHandle) Releasedir(ctx context.Context, releaseFlags uint32) {}

// Lookup answers READDIRPLUS for the entry just returned (go-fuse passes
// its name). A name being written (a pending path) or an image that has
// left the directory since the listing is resolved as a plain lookup would.
func (h *statusDirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	defer h.dir.root.busy.enter(&h.dir.Inode)()
	d := h.dir
	i := h.next - 1
	if i < 0 || i >= len(h.entries) || h.entries[i].Name != name {
		return d.Lookup(ctx, name, out)
	}
	d.root.mu.Lock()
	_, pending := d.root.pending[pendingPath{d.status, name}]
	d.root.mu.Unlock()
	if pending {
		return d.Lookup(ctx, name, out)
	}
	img := h.record(ctx, i)
	if img == nil || img.Status != d.status {
		return d.Lookup(ctx, name, out)
	}
	return d.root.imageInode(ctx, &d.Inode, img, &out.Attr), 0
}

// record returns the record of entries[i], reading the next batch when i
// is past the one held; nil when it cannot be read (the caller then looks
// the name up as usual, which reports the error).
func (h *statusDirHandle) record(ctx context.Context, i int) *meta.Image {
	if i < h.recFrom || i >= h.recFrom+len(h.recs) {
		ids := h.ids[i:min(i+readAhead, len(h.ids))]
		recs, err := h.dir.root.svc.GetMany(ctx, h.dir.root.opts.Principal, ids)
		if err != nil {
			h.recFrom, h.recs = 0, nil
			return nil
		}
		h.recFrom, h.recs = i, recs
	}
	return h.recs[i-h.recFrom]
}

// Create registers a new image named name. In active/ the data written is
// uploaded at once (the image is saving until close, then active or
// killed); in queued/ the image stays queued until data is written.
func (d *statusDir) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	defer d.root.busy.enter(&d.Inode)()
	if d.status != meta.Active && d.status != meta.Queued {
		return nil, nil, 0, syscall.EPERM
	}
	if len(name) > maxNameBytes {
		return nil, nil, 0, syscall.ENAMETOOLONG
	}
	p := d.root.opts.Principal
	img, err := d.root.svc.Create(ctx, p, lifecycle.CreateSpec{Name: name})
	if err != nil {
		return nil, nil, 0, toErrno(d.root.log, "create", err)
	}
	h := newWriteHandle(d.root, img.ID, callerTgid(ctx))
	h.path = pendingPath{d.status, name}
	if d.status == meta.Active {
		if errno := h.begin(ctx); errno != 0 {
			d.root.dropWriter(img.ID) // the kernel never gets the handle
			return nil, nil, 0, errno
		}
		if img, err = d.root.svc.Get(ctx, p, img.ID); err != nil {
			d.root.dropWriter(img.ID)
			return nil, nil, 0, toErrno(d.root.log, "create", err)
		}
	}
	d.root.mu.Lock()
	d.root.pending[h.path] = img.ID
	d.root.mu.Unlock()
	node := d.root.imageInode(ctx, &d.Inode, img, &out.Attr)
	creator := processOf(h.opener)
	d.root.addCreator(img.ID, creator)
	if h.up != nil {
		h.creation = d.root.newCreation(img.ID, h.up, creator, h.path)
	}
	return node, h, 0, 0
}

func (d *statusDir) Unlink(ctx context.Context, name string) syscall.Errno {
	defer d.root.busy.enter(&d.Inode)()
	id, err := d.resolve(ctx, name)
	if err != nil {
		return toErrno(d.root.log, "unlink", err)
	}
	return toErrno(d.root.log, "unlink", d.root.svc.Delete(ctx, d.root.opts.Principal, id))
}

// Rename renames within a status directory, deactivates (active/ to
// deactivated/) and reactivates (back); every other move is EPERM.
// Renaming onto a name another image holds replaces nothing: both images
// keep the name and show as NAME@ID.
func (d *statusDir) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	defer d.root.busy.enter(&d.Inode, newParent.EmbeddedInode())()
	to, ok := newParent.(*statusDir)
	if !ok {
		return syscall.EPERM
	}
	if flags&^renameNoReplace != 0 {
		return syscall.EINVAL // RENAME_EXCHANGE and friends make no sense for images
	}
	if len(newName) > maxNameBytes {
		return syscall.ENAMETOOLONG
	}
	id, err := d.resolve(ctx, name)
	if err != nil {
		return toErrno(d.root.log, "rename", err)
	}
	img, err := d.root.svc.Get(ctx, d.root.opts.Principal, id)
	if err != nil {
		return toErrno(d.root.log, "rename", err)
	}
	if newName == img.Name+"@"+img.ID {
		newName = img.Name // NAME@ID names the image, it is not a new name
	}
	if flags&renameNoReplace != 0 {
		if other, err := to.resolve(ctx, newName); err == nil && other != id {
			return syscall.EEXIST
		}
	}
	target := to.status
	if to == d && img.Status == meta.Saving {
		target = meta.Saving // a file still being written, renamed in place
	}
	// On the path's name and directory, not on the record read after the
	// lookup: another daemon sharing the catalogue may have renamed or
	// moved the image in between, and then this rename must fail.
	wasName, wasStatus := name, d.status
	if base, ok := strings.CutSuffix(name, "@"+id); ok && img.Name != name {
		wasName = base
	}
	d.root.mu.Lock()
	_, pending := d.root.pending[pendingPath{d.status, name}]
	d.root.mu.Unlock()
	if pending {
		// A file this mount is writing, under the path it was created
		// with: only this mount renames it.
		wasName, wasStatus = img.Name, img.Status
	}
	if _, err := d.root.svc.MoveFrom(ctx, d.root.opts.Principal, id, wasName, wasStatus, newName, target); err != nil {
		return toErrno(d.root.log, "rename", err)
	}
	d.root.mu.Lock()
	if d.root.pending[pendingPath{d.status, name}] == id {
		delete(d.root.pending, pendingPath{d.status, name})
		d.root.pending[pendingPath{to.status, newName}] = id
		if c := d.root.creations[id]; c != nil {
			c.path = pendingPath{to.status, newName} // rsync's temp file, renamed before its exit
		}
	}
	d.root.mu.Unlock()
	return 0
}
