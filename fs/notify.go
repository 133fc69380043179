package fs

import (
	"context"
	"sync"

	"github.com/glimpse-project/glimpse/meta"
)

// startInvalidator subscribes to the catalogue's changes and tells the
// kernel which of its cached names and attributes went stale, so that a
// change made through REST shows in the mount at once. The kernel calls go
// out from one goroutine, never from inside a FUSE handler: a notification
// about a directory blocks while an operation on it is in flight, and that
// operation may be the one whose change we are announcing.
func (r *Root) startInvalidator() (stop func()) {
	var (
		mu     sync.Mutex // guards queue and closed
		queue  []meta.Event
		closed bool
		wake   = make(chan struct{}, 1)
		done   = make(chan struct{})
	)
	cancel := r.svc.Subscribe(func(ev meta.Event) {
		mu.Lock()
		queue = append(queue, ev)
		mu.Unlock()
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	go func() {
		defer close(done)
		for range wake {
			mu.Lock()
			batch := queue
			queue = nil
			stopping := closed
			mu.Unlock()
			for _, ev := range batch {
				r.invalidate(ev)
			}
			if stopping {
				return
			}
		}
	}()
	return func() {
		cancel()
		mu.Lock()
		closed = true
		mu.Unlock()
		select {
		case wake <- struct{}{}:
		default:
		}
		<-done
	}
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
		dir.NotifyEntry(img.Name)
		dir.NotifyEntry(img.Name + "@" + img.ID)
		others, err := r.svc.Named(context.Background(), r.opts.Principal, img.Status, img.Name)
		if err != nil {
			continue
		}
		for _, id := range others {
			dir.NotifyEntry(img.Name + "@" + id)
		}
	}
	id := ""
	if ev.New != nil {
		id = ev.New.ID
	} else if ev.Old != nil {
		id = ev.Old.ID
	}
	r.mu.Lock()
	node := r.live[id]
	r.mu.Unlock()
	if node != nil {
		node.NotifyContent(-1, 0) // attributes only: content never changes once written
	}
}
