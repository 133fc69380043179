package fs

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
)

// creation is a file created in active/ whose upload is not settled yet.
// A writer that writes and closes (cp, rsync, dd, a shell's redirection)
// settles it at that close. One that closes it with nothing in it (touch,
// cp of an empty file, cp --reflink=always that could not clone, qemu-img,
// which creates, truncates, closes and reopens) leaves it `saving` under
// its path; the creator's later opens for writing adopt the same upload,
// and the creator's exit settles it: committed when the creator
// succeeded, removed when it failed. Fields are guarded by Root.mu.
type creation struct {
	id      string
	up      *lifecycle.Upload
	creator process
	path    pendingPath
	// emptyClose: the creator closed the create handle (a FLUSH) with
	// nothing written yet; a write through a duplicate of it (a shell's
	// redirection) clears it again. reopening: the create handle is gone
	// with nothing written (its RELEASE), or the creator reopened the
	// file to write: closes no longer settle, the creator's exit does.
	emptyClose, reopening bool
	exited                chan struct{} // closed when the creator's exit status is known
	exitOK                bool
	settled               bool          // settling or settled: nothing more to decide
	done                  chan struct{} // closed once settled
}

// waitsForExit: the creator's exit settles c.
func (c *creation) waitsForExit() bool { return (c.emptyClose || c.reopening) && !c.settled }

// creatorGoneWait bounds the wait for the exit event of a creator found
// gone: the kernel sends it as the process dies, microseconds before or
// after its parent can reap it.
const creatorGoneWait = time.Second

func (r *Root) newCreation(id string, up *lifecycle.Upload, creator process, path pendingPath) *creation {
	c := &creation{id: id, up: up, creator: creator, path: path, exited: make(chan struct{}), done: make(chan struct{})}
	r.mu.Lock()
	r.creations[id] = c
	r.mu.Unlock()
	return c
}

// adopt gives the creator of image id, reopening it for writing, a handle
// on the upload it closed with nothing in it; nil when there is none to
// adopt (the image is being written by someone else).
func (r *Root) adopt(ctx context.Context, id string) *writeHandle {
	tgid := callerTgid(ctx)
	if !alive(processOf(tgid)) {
		return nil
	}
	r.mu.Lock()
	c := r.creations[id]
	ok := c != nil && c.waitsForExit() && c.creator == processOf(tgid)
	if ok {
		c.reopening = true
	}
	r.mu.Unlock()
	if !ok {
		return nil
	}
	h := newWriteHandle(r, id, tgid)
	h.up, h.creation, h.path = c.up, c, c.path
	return h
}

// wroteTo notes data written through the create handle of c.
func (r *Root) wroteTo(c *creation) {
	r.mu.Lock()
	c.emptyClose = false
	r.mu.Unlock()
}

func (r *Root) isReopening(c *creation) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return c.reopening
}

// closedEmpty notes the create handle of c closed by its opener with
// nothing written (final: its release); the creator's exit settles c, at
// once if it has exited already.
func (r *Root) closedEmpty(ctx context.Context, c *creation, final bool) {
	r.mu.Lock()
	c.emptyClose = true
	if final {
		c.reopening = true
	}
	ready := c.waitsForExit() && isClosed(c.exited)
	r.mu.Unlock()
	if ready {
		r.settleCreation(ctx, c)
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// dropCreation forgets c once its upload was settled at a close (or
// killed).
func (r *Root) dropCreation(c *creation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !c.settled {
		c.settled = true
		delete(r.creations, c.id)
		close(c.done)
	}
}

// settleCreation settles c by its creator's exit status.
func (r *Root) settleCreation(ctx context.Context, c *creation) {
	r.mu.Lock()
	if c.settled {
		r.mu.Unlock()
		return
	}
	c.settled = true
	ok := c.exitOK
	r.mu.Unlock()
	if err := c.up.CreatorExited(context.WithoutCancel(ctx), r.opts.Principal, ok); err != nil {
		r.log.Warn("settle an upload at its creator's exit", "image", c.id, "err", err)
	}
	// Only now does it leave: whoever looks meanwhile waits (settleGone).
	r.mu.Lock()
	delete(r.creations, c.id)
	if r.pending[c.path] == c.id {
		delete(r.pending, c.path)
	}
	r.mu.Unlock()
	close(c.done)
}

// creatorExited is the exit watcher's report: the creations of process
// tgid learn its status, and those waiting for it settle now.
func (r *Root) creatorExited(tgid uint32, status syscall.WaitStatus) {
	var ready []*creation
	r.mu.Lock()
	for _, c := range r.creations {
		if c.creator.tgid != tgid || isClosed(c.exited) {
			continue
		}
		c.exitOK = status.Exited() && status.ExitStatus() == 0
		close(c.exited)
		if c.waitsForExit() {
			ready = append(ready, c)
		}
	}
	r.mu.Unlock()
	// Settled as the mount's own change: its notifications go out
	// asynchronously, so a FUSE request that waits for this settling
	// (settleGone) never waits behind a notification that waits for it.
	ctx := fuse.NewContext(context.Background(), &fuse.Caller{})
	for _, c := range ready {
		r.settleCreation(ctx, c)
	}
}

// settleGone settles, before the mount answers about them, the creations
// that concern the request (concerns; nil: all) whose creator is gone but
// whose exit was not handled yet (its event is on its way, or there is no
// exit watcher: then the creator is taken to have succeeded), and waits
// for those being settled. So once a qemu-img or a touch has exited,
// whoever looks at its image, its name or its directory sees the outcome;
// other requests do not wait for it (settling a large image written out
// of order reads it back to hash it).
func (r *Root) settleGone(ctx context.Context, concerns func(*creation) bool) {
	r.mu.Lock()
	if len(r.creations) == 0 {
		r.mu.Unlock()
		return
	}
	var gone, settling []*creation
	for _, c := range r.creations {
		if concerns != nil && !concerns(c) {
			continue
		}
		switch {
		case c.settled:
			settling = append(settling, c)
		case c.waitsForExit():
			gone = append(gone, c) // maybe: asked below, without the lock
		}
	}
	r.mu.Unlock()
	for _, c := range settling {
		<-c.done
	}
	for _, c := range gone {
		if alive(c.creator) {
			continue
		}
		if r.exits != nil {
			select {
			case <-c.exited:
			case <-time.After(creatorGoneWait):
				r.log.Warn("no exit event for a creator that is gone; settling its upload as a success", "image", c.id, "pid", c.creator.tgid)
			}
		}
		r.mu.Lock()
		if !isClosed(c.exited) {
			c.exitOK = true // unknown: taken as a success
			close(c.exited)
		}
		r.mu.Unlock()
		r.settleCreation(ctx, c)
		<-c.done // settled here, or by the exit watcher meanwhile
	}
}

// lostExits: exit events were dropped; every creation whose creator is
// gone is settled as settleGone would.
func (r *Root) lostExits() { r.settleGone(fuse.NewContext(context.Background(), &fuse.Caller{}), nil) }

// Which creations a request concerns (see settleGone).

func imageIs(id string) func(*creation) bool { return func(c *creation) bool { return c.id == id } }

// nameIs: a name looked up in a status directory (the path a creation was
// made at, or its name in saving/).
func nameIs(name string) func(*creation) bool {
	return func(c *creation) bool { return c.path.name == name }
}

// listedIn: the creations a listing of dir would show, in saving/, or
// once settled.
func listedIn(dir meta.Status) func(*creation) bool {
	return func(c *creation) bool { return dir == meta.Saving || c.path.dir == dir }
}

// alive reports whether p still runs (a zombie has exited).
func alive(p process) bool {
	if processOf(p.tgid) != p {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(p.tgid), 10) + "/stat")
	if err != nil {
		return false
	}
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 || end+2 >= len(stat) {
		return false
	}
	state := stat[end+2]
	return state != 'Z' && state != 'X'
}

func (c *creation) isSettled(r *Root) bool { // for the release of a handle
	r.mu.Lock()
	defer r.mu.Unlock()
	return c.settled
}

// creationUpload is the upload of image id when the caller is the creator
// of a creation not settled yet: what it reads and stats is what it wrote.
func (r *Root) creationUpload(ctx context.Context, id string) *lifecycle.Upload {
	r.mu.Lock()
	c := r.creations[id]
	r.mu.Unlock()
	if c == nil || processOf(callerTgid(ctx)) != c.creator {
		return nil
	}
	return c.up
}

// uploadView reads an upload in progress as committed content is read.
type uploadView struct{ up *lifecycle.Upload }

func (v uploadView) ReadAt(p []byte, off int64) (int, error) { return v.up.ReadAt(p, off) }
func (v uploadView) Size() int64                             { return v.up.Size() }
func (v uploadView) Close() error                            { return nil }
