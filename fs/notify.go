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

// notifyIdleWait bounds how long the invalidator waits for a directory to
// have no request in flight before notifying its entries (see dirBusy):
// short, so that a change made elsewhere still shows at once whenever the
// directory is not kept busy.
const notifyIdleWait = 500 * time.Millisecond

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
		if ev.Resync {
			// Changes were missed: the names and attributes they made
			// stale leave the kernel's caches when their timeouts expire.
			r.log.Warn("the registry feed resynchronised; the mount may show old entries for a second")
			return
		}
		// raw/ is never locked by an operation of the mount, so its names
		// go at once, before the change's writer (a mv out of active/)
		// returns; the status directories wait for the invalidator.
		r.invalidateRaw(ev, r.lookupSharing([]*meta.Event{&ev}))
		enqueue(item{ev: &ev})
	})
	var settleFor func(timeout time.Duration) bool
	// A change made elsewhere in this daemon (the REST listener) waits
	// until its notifications are done; one made through the mount, or by
	// another daemon, does not.
	cancelHook := r.svc.AfterCommit(func(ctx context.Context) {
		if _, fromMount := fuse.FromContext(ctx); fromMount {
			return
		}
		if !settleFor(syncInvalidateTimeout) {
			r.log.Warn("kernel cache invalidation is slow; the mount may show the old state for a second")
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
			events := make([]*meta.Event, 0, len(batch))
			for _, it := range batch {
				if it.ev != nil {
					events = append(events, it.ev)
				}
			}
			sharing := r.lookupSharing(events)
			for _, it := range batch {
				if it.ev != nil {
					r.invalidate(*it.ev, sharing)
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
		cancelHook()
		mu.Lock()
		closed = true
		mu.Unlock()
		select {
		case wake <- struct{}{}:
		default:
		}
		<-exited
	}
	settleFor = func(timeout time.Duration) bool {
		it := item{done: make(chan struct{})}
		if !enqueue(it) {
			return true
		}
		if timeout <= 0 {
			<-it.done
			return true
		}
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-it.done:
			return true
		case <-t.C:
			return false
		}
	}
	return stop, func() { settleFor(0) }
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

// nameIn is a name in a status directory.
type nameIn struct {
	status meta.Status
	name   string
}

// maxSharingLookups bounds the registry reads lookupSharing runs at once.
const maxSharingLookups = 8

// lookupSharing finds, for every name the batch's events touch, the images
// holding it now, with the registry reads run side by side: with a shared
// registry every daemon's mount sees every daemon's changes, and one read
// after another would make the busiest catalogue wait on the round trips.
func (r *Root) lookupSharing(events []*meta.Event) map[nameIn][]string {
	want := map[nameIn]bool{}
	for _, ev := range events {
		for _, img := range []*meta.Image{ev.Old, ev.New} {
			if img != nil && r.status[img.Status] != nil && meta.Listable(img.Name) {
				want[nameIn{img.Status, img.Name}] = true
			}
		}
	}
	out := make(map[nameIn][]string, len(want))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxSharingLookups)
	for n := range want {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ids, err := r.svc.Named(context.Background(), r.opts.Principal, n.status, n.name)
			if err != nil {
				return // the NAME@ID entries expire on their own
			}
			mu.Lock()
			out[n] = ids
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// invalidate drops every kernel cache entry that ev may have made wrong:
// the image's names before and after (bare and NAME@ID, and those of the
// images sharing them, whose display names change with a collision, from
// sharing), its id entry, and its attributes.
func (r *Root) invalidate(ev meta.Event, sharing map[nameIn][]string) {
	for _, img := range []*meta.Image{ev.Old, ev.New} {
		if img == nil {
			continue
		}
		if r.busy.waitIdle(r.ids, notifyIdleWait) {
			r.ids.NotifyEntry(img.ID)
		}
		dir := r.status[img.Status]
		if dir == nil || !meta.Listable(img.Name) {
			continue
		}
		if !r.busy.waitIdle(dir, notifyIdleWait) {
			// Its entries expire on their own within the entry timeout.
			r.log.Debug("directory busy: its entries are left to expire", "dir", img.Status)
			continue
		}
		r.invalidateNames(dir, img, sharing[nameIn{img.Status, img.Name}])
	}
	r.mu.Lock()
	node := r.live[imageID(ev)]
	r.mu.Unlock()
	if node != nil {
		node.NotifyContent(-1, 0) // attributes only: content never changes once written
	}
}

// invalidateNames drops the names img has in dir: bare and NAME@ID, and
// those of the images sharing its name (others), whose display names
// change with a collision.
func (r *Root) invalidateNames(dir *gofs.Inode, img *meta.Image, others []string) {
	dir.NotifyEntry(img.Name)
	dir.NotifyEntry(img.Name + "@" + img.ID)
	for _, id := range others {
		dir.NotifyEntry(img.Name + "@" + id)
	}
}

// invalidateRaw drops the names in raw/ that ev may have made wrong: those
// active/ had or has (raw/ shows active/'s names). raw/ is never locked by
// an operation of the mount (nothing in it can be changed), so it needs no
// wait for an idle directory.
func (r *Root) invalidateRaw(ev meta.Event, sharing map[nameIn][]string) {
	for _, img := range []*meta.Image{ev.Old, ev.New} {
		if img != nil && img.Status == meta.Active && meta.Listable(img.Name) {
			r.invalidateNames(r.raw, img, sharing[nameIn{img.Status, img.Name}])
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
