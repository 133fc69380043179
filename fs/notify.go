package fs

import (
	"context"
	"sync"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/glimpse-project/glimpse/meta"
)

// syncInvalidateTimeout bounds how long a change made outside the mount
// waits for the kernel to drop its stale entries. The wait only blocks if a
// FUSE operation on the same directory is stuck; past the bound, the
// entries expire on their own (after the 1 s entry timeout).
const syncInvalidateTimeout = 2 * time.Second

// startInvalidator subscribes to the catalogue's changes and tells the
// kernel which of its cached names and attributes went stale. The kernel
// calls go out from one goroutine, never from inside a FUSE handler: a
// notification about a directory blocks while an operation on it is in
// flight, and that operation may be the one whose change we announce. A
// change made elsewhere (the REST listener) waits until its notifications
// are done, so it shows in the mount by the time that call returns.
//
// A change made through the mount cannot wait that way, and some of its
// notifications land only after the kernel finished the operation: after a
// rename onto a taken name, the kernel's d_move leaves the bare name pointing
// at the moved image until the queued notification drops it. settle waits
// until everything queued so far has reached the kernel.
func (r *Root) startInvalidator() (stop, settle func()) {
	type item struct {
		ev   *meta.Event   // nil for a settle barrier
		done chan struct{} // closed once ev is handled; nil if nobody waits
	}
	var (
		mu     sync.Mutex // guards queue and closed
		queue  []item
		closed bool
		wake   = make(chan struct{}, 1)
		exited = make(chan struct{})
	)
	enqueue := func(it item) bool {
		mu.Lock()
		if closed {
			mu.Unlock()
			return false
		}
		queue = append(queue, it)
		mu.Unlock()
		select {
		case wake <- struct{}{}:
		default:
		}
		return true
	}
	cancel := r.svc.Subscribe(func(ev meta.Event) {
		it := item{ev: &ev}
		_, fromMount := fuse.FromContext(ev.Context)
		if fromMount {
			r.invalidateRaw(ev)
		} else {
			it.done = make(chan struct{})
		}
		if !enqueue(it) {
			return
		}
		if it.done != nil {
			select {
			case <-it.done:
			case <-time.After(syncInvalidateTimeout):
				r.log.Warn("kernel cache invalidation is slow; the mount may show the old state for a second", "image", imageID(ev))
			}
		}
	})
	go func() {
		defer close(exited)
		for range wake {
			mu.Lock()
			batch := queue
			queue = nil
			stopping := closed
			mu.Unlock()
			for _, it := range batch {
				if it.ev != nil {
					r.invalidate(*it.ev)
				}
				if it.done != nil {
					close(it.done)
				}
			}
			if stopping {
				return
			}
		}
	}()
	stop = func() {
		cancel()
		mu.Lock()
		closed = true
		mu.Unlock()
		select {
		case wake <- struct{}{}:
		default:
		}
		<-exited
	}
	settle = func() {
		it := item{done: make(chan struct{})}
		if enqueue(it) {
			<-it.done
		}
	}
	return stop, settle
}

func imageID(ev meta.Event) string {
	if ev.New != nil {
		return ev.New.ID
	}
	if ev.Old != nil {
		return ev.Old.ID
	}
	return ""
}

// invalidate drops every kernel cache entry that ev may have made wrong:
// the image's names before and after (bare and NAME@ID, and those of the
// images sharing them, whose display names change with a collision), its
// id entry, and its attributes.
func (r *Root) invalidate(ev meta.Event) {
	for _, img := range []*meta.Image{ev.Old, ev.New} {
		if img == nil {
			continue
		}
		r.ids.NotifyEntry(img.ID)
		dir := r.status[img.Status]
		if dir == nil || !meta.Listable(img.Name) {
			continue
		}
		r.invalidateNames(dir, img)
	}
	if _, fromMount := fuse.FromContext(ev.Context); !fromMount {
		r.invalidateRaw(ev) // a change from the mount did it already
	}
	r.mu.Lock()
	node := r.live[imageID(ev)]
	r.mu.Unlock()
	if node != nil {
		node.NotifyContent(-1, 0) // attributes only: content never changes once written
	}
}

// invalidateNames drops the names img has in dir: bare and NAME@ID, and
// those of the images sharing its name, whose display names change with a
// collision.
func (r *Root) invalidateNames(dir *gofs.Inode, img *meta.Image) {
	dir.NotifyEntry(img.Name)
	dir.NotifyEntry(img.Name + "@" + img.ID)
	others, err := r.svc.Named(context.Background(), r.opts.Principal, img.Status, img.Name)
	if err != nil {
		return
	}
	for _, id := range others {
		dir.NotifyEntry(img.Name + "@" + id)
	}
}

// invalidateRaw drops the names in raw/ that ev may have made wrong: those
// active/ had or has. Unlike the status directories, raw/ is never locked
// by the operation that made a change through the mount (nothing in it
// can be changed), so this may run inside that operation, before the
// change is seen: an image moved out of active/ leaves raw/ by the time
// mv returns.
func (r *Root) invalidateRaw(ev meta.Event) {
	for _, img := range []*meta.Image{ev.Old, ev.New} {
		if img != nil && img.Status == meta.Active && meta.Listable(img.Name) {
			r.invalidateNames(r.raw, img)
		}
	}
}

// showSettled tells the kernel, before the writer's close returns, what
// the settling of image id changed: its attributes (size, mode), and, when
// the upload failed, that the names it was written under (the path it was
// created at, its entry in saving/) no longer stand for it. Safe inside a
// FLUSH handler: closing a file holds no directory lock, and the caller
// holds none of ours.
func (r *Root) showSettled(id string, path pendingPath, failed bool) {
	r.mu.Lock()
	node := r.live[id]
	if failed && r.pending[path] == id {
		delete(r.pending, path) // the path no longer leads to it
	}
	r.mu.Unlock()
	if failed && path != (pendingPath{}) {
		if dir := r.status[path.dir]; dir != nil {
			dir.NotifyEntry(path.name)
		}
		r.status[meta.Saving].NotifyEntry(path.name)
	}
	if node != nil {
		node.NotifyContent(-1, 0)
	}
}
