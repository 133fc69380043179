package fs

import (
	"sync"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// dirBusy counts, per directory, the requests this daemon is answering
// while the kernel holds that directory's lock: lookups, creates,
// unlinks, renames (both directories) and readdirs.
//
// Why: the kernel's entry invalidation (fuse_reverse_inval_entry) takes
// the directory's lock too. Sent while such a request waits for this
// daemon's answer, it blocks until the answer is given; if the daemon is
// SIGKILLed then, nobody answers, the notifying thread waits for the lock
// for ever, unkillable, and keeps /dev/fuse open, so the kernel never
// aborts the connection: the process stays a zombie and every client of
// the mount hangs. So the invalidator waits until a directory is idle
// before it sends an entry notification for it; what remains is the
// instant between that check and the kernel taking the lock.
type dirBusy struct {
	mu      sync.Mutex
	n       map[*gofs.Inode]int
	changed chan struct{} // closed and replaced whenever a directory goes idle
}

func newDirBusy() *dirBusy {
	return &dirBusy{n: map[*gofs.Inode]int{}, changed: make(chan struct{})}
}

// enter marks a request in flight on dirs; the returned func ends it.
func (b *dirBusy) enter(dirs ...*gofs.Inode) (leave func()) {
	b.mu.Lock()
	for _, d := range dirs {
		b.n[d]++
	}
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		idle := false
		for _, d := range dirs {
			if b.n[d]--; b.n[d] == 0 {
				delete(b.n, d)
				idle = true
			}
		}
		if idle {
			close(b.changed)
			b.changed = make(chan struct{})
		}
		b.mu.Unlock()
	}
}

// waitIdle waits until no request is in flight on dir, at most timeout,
// and reports whether it is idle.
func (b *dirBusy) waitIdle(dir *gofs.Inode, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		busy, changed := b.n[dir] > 0, b.changed
		b.mu.Unlock()
		if !busy {
			return true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return false
		}
	}
}
