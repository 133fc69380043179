package fs

import (
	"context"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
)

// readHandle reads committed content.
type readHandle struct {
	r    backend.Reader
	img  *meta.Image // the image when opened: fstat of a removed image shows it
	tgid uint32      // the process that opened it
	// passthrough: the kernel may read the file itself. Not while a write
	// handle of the image is still open (see Root.writers).
	passthrough bool
}

// PassthroughFd lets the kernel read an active image on the local store
// straight from its file (FUSE passthrough, Linux 6.9+ as root): reads then
// never reach the daemon, and the file's page cache serves every open.
// Where the kernel refuses, go-fuse falls back to ordinary reads.
func (h *readHandle) PassthroughFd() (int, bool) {
	fr, ok := h.r.(backend.FileReader)
	if !ok || !h.passthrough || h.img.Status != meta.Active {
		return 0, false
	}
	return int(fr.Fd()), true
}

func (h *readHandle) read(dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	size := h.r.Size()
	if off >= size {
		return fuse.ReadResultData(nil), 0
	}
	if max := size - off; int64(len(dest)) > max {
		dest = dest[:max]
	}
	if fr, ok := h.r.(backend.FileReader); ok {
		// Local store: the kernel splices straight from the file.
		return fuse.ReadResultFd(fr.Fd(), off, len(dest)), 0
	}
	n, err := h.r.ReadAt(dest, off)
	if err != nil && n < len(dest) {
		return nil, syscall.EIO
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// writeHandle is an open file that uploads an image's content. The upload
// starts at the first write (or at create, in active/), and is committed
// by the first flush (close) from the process that opened the file, once
// data was written; a flush from another process (a child that inherited
// the descriptor) or with nothing written does nothing, and release
// commits what no flush did (mountpoint-s3's rule).
type writeHandle struct {
	root   *Root
	id     string
	opener uint32      // thread group of the process that opened the file
	path   pendingPath // where the file was created; zero when opened

	// creation: the handle writes a file created in active/ whose upload
	// may outlive it (see creation); nil for a queued image opened to write.
	creation *creation

	mu        sync.Mutex        // guards the fields below
	held      bool              // counted in Root.holders for the opener
	up        *lifecycle.Upload // nil before the upload starts
	wrote     bool              // data was written (or truncated)
	committed bool              // the upload was committed or aborted
	commitErr syscall.Errno     // the commit's outcome
}

func (h *writeHandle) begin(ctx context.Context) syscall.Errno {
	if h.up != nil {
		return 0
	}
	up, err := h.root.svc.BeginUpload(ctx, h.root.opts.Principal, h.id)
	if err != nil {
		return toErrno(h.root.log, "write", err)
	}
	h.up = up
	return 0
}

func (h *writeHandle) size() (int64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.up == nil || h.committed {
		return 0, false
	}
	return h.up.Size(), true
}

func (h *writeHandle) write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.committed {
		return 0, syscall.EBADF
	}
	if errno := h.begin(ctx); errno != 0 {
		return 0, errno
	}
	h.markWrote()
	n, err := h.up.WriteAt(data, off)
	if err != nil {
		return uint32(n), toErrno(h.root.log, "write", err)
	}
	return uint32(n), 0
}

func (h *writeHandle) truncate(ctx context.Context, size int64) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.committed {
		return syscall.EBADF
	}
	if h.up == nil && size == 0 {
		return 0 // O_TRUNC on a queued image: nothing to do
	}
	if errno := h.begin(ctx); errno != 0 {
		return errno
	}
	if size == h.up.Size() {
		return 0 // qemu-img truncates the file it just created: no data
	}
	h.markWrote()
	return toErrno(h.root.log, "truncate", h.up.Truncate(size))
}

func (h *writeHandle) read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.up == nil || h.committed {
		return fuse.ReadResultData(nil), 0
	}
	n, err := h.up.ReadAt(dest, off)
	if err != nil {
		return nil, toErrno(h.root.log, "read", err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// flush answers a close(2) of a descriptor of the handle, or the kernel
// closing it for a process that exits without closing it. The opener's
// close settles the upload once data was written; the opener dying of a
// signal before it closed the file kills it (a cp interrupted with Ctrl-C
// must not leave a good-looking image of what it copied so far). Either
// way the outcome shows in the mount by the time close returns.
func (h *writeHandle) flush(ctx context.Context) syscall.Errno {
	who := callerOf(ctx)
	h.mu.Lock()
	errno, settled := h.flushLocked(ctx, who)
	h.mu.Unlock()
	if settled {
		h.root.showSettled(h.id, h.path, errno != 0)
	}
	return errno
}

func (h *writeHandle) flushLocked(ctx context.Context, who caller) (errno syscall.Errno, settled bool) {
	if h.committed {
		return h.commitErr, false
	}
	if who.tgid != h.opener {
		return 0, false // a child that inherited the descriptor
	}
	h.letGoLocked()
	if who.killedBy != 0 {
		h.root.log.Info("writer killed before it closed the file", "image", h.id, "pid", who.tgid, "signal", who.killedBy)
		h.committed = true
		if h.creation != nil {
			h.root.dropCreation(h.creation)
		}
		if h.up == nil {
			return 0, false // nothing was written: the image stays as it was
		}
		h.commitErr = toErrno(h.root.log, "flush", h.up.WriterKilled(ctx, who.killedBy))
		return h.commitErr, true
	}
	return h.closeLocked(ctx, false)
}

// closeLocked is the opener's close of the handle (final: its release,
// when no close of the opener settled it). A handle that wrote commits,
// unless it writes a file its creator closed empty and reopened, which
// the creator's exit settles; one that wrote nothing settles nothing (a
// shell's close after dup2 in `cmd > active/x` must not).
func (h *writeHandle) closeLocked(ctx context.Context, final bool) (errno syscall.Errno, settled bool) {
	c := h.creation
	switch {
	case c == nil && !h.wrote:
		return 0, false
	case c == nil:
		return h.commitLocked(ctx), true
	case h.root.isReopening(c):
		if final {
			h.committed = true // this handle's part is done; the upload goes on
		}
		return 0, false
	case h.wrote:
		h.root.dropCreation(c)
		return h.commitLocked(ctx), true
	}
	h.root.closedEmpty(ctx, c, final)
	if final {
		h.committed = true
	}
	return 0, false
}

// markWrote notes that the handle wrote data.
func (h *writeHandle) markWrote() {
	if !h.wrote && h.creation != nil {
		h.root.wroteTo(h.creation)
	}
	h.wrote = true
}

func newWriteHandle(r *Root, id string, opener uint32) *writeHandle {
	r.addWriter(id)
	r.hold(id, opener)
	return &writeHandle{root: r, id: id, opener: opener, held: true}
}

// letGoLocked ends the opener's hold on the image, once.
func (h *writeHandle) letGoLocked() {
	if h.held {
		h.held = false
		h.root.letGo(h.id, h.opener)
	}
}

func (h *writeHandle) release(ctx context.Context) {
	defer h.root.dropWriter(h.id)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.letGoLocked()
	if !h.committed {
		// No close of the opener settled it (a child that inherited it
		// closed it last, or it wrote nothing): settle as its close would.
		// The outcome is in the image's status and user.glimpse.error.
		h.closeLocked(ctx, true)
	}
	if h.path != (pendingPath{}) && (h.creation == nil || h.creation.isSettled(h.root)) {
		h.root.mu.Lock()
		if h.root.pending[h.path] == h.id {
			delete(h.root.pending, h.path)
		}
		h.root.mu.Unlock()
	}
}

// commitLocked settles the upload. A refused or failed upload leaves the
// image killed, and close(2) fails with EIO (EFBIG when over the cap,
// ENOSPC when the store is full).
func (h *writeHandle) commitLocked(ctx context.Context) syscall.Errno {
	h.committed = true
	if errno := h.begin(ctx); errno != 0 {
		h.commitErr = errno
		return errno
	}
	if _, err := h.up.Commit(ctx); err != nil {
		h.commitErr = syscall.EIO
		switch {
		case isTooLarge(err):
			h.commitErr = syscall.EFBIG
		case isStoreFull(err):
			h.commitErr = syscall.ENOSPC
		}
		if isOutOfSpace(err) {
			h.commitErr = syscall.ENOSPC
		}
	}
	return h.commitErr
}
