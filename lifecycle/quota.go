package lifecycle

import (
	"errors"
	"fmt"
	"sync"

	"github.com/glimpse-project/glimpse/meta"
)

// Quota limits what one project may hold, as Glance's unified limits do
// (image_count_total, image_count_uploading, image_size_total; the last is
// also the older user_storage_quota). Zero means no limit. Admins are not
// exempt: as in Glance, a quota belongs to the project, whoever asks.
type Quota struct {
	Images    int64 // images the project owns, whatever their status
	Uploading int64 // of those, images being written (saving, uploading, importing)
	Bytes     int64 // bytes of content the project stores, uploads in flight included
}

func (q Quota) any() bool { return q.Images > 0 || q.Uploading > 0 || q.Bytes > 0 }

// usage is what a project holds now.
type usage struct {
	images, uploading int64
	stored            int64 // bytes of content in the registry
	live              int64 // bytes written so far by uploads in flight
}

func (u usage) bytes() int64 { return u.stored + u.live }

// contribution is what one image adds to its owner's usage.
func contribution(img *meta.Image) usage {
	u := usage{images: 1}
	if img.Status.InFlight() {
		u.uploading = 1
	}
	if img.Size != nil {
		u.stored = *img.Size // active, deactivated, and staged content
	}
	return u
}

func (u *usage) add(v usage, sign int64) {
	u.images += sign * v.images
	u.uploading += sign * v.uploading
	u.stored += sign * v.stored
}

// ledger keeps every project's usage, so that a quota check costs a map
// lookup instead of a scan of the catalogue: one scan when the service
// starts, then every committed change (the registry's feed, which carries
// every daemon's changes) applied to the image it concerns. Each image's
// share is kept, so an event applied twice changes nothing.
type ledger struct {
	mu        sync.Mutex
	byProject map[string]usage
	byImage   map[string]share
	rev       int64 // the scan's revision: older events are already in it
	err       error // the last scan failed: quota checks fail with it
}

// share is what one image adds to its owner's usage.
type share struct {
	owner string
	usage
}

// openLedger scans the catalogue and follows its changes; events that
// arrive during the scan wait for it.
func openLedger(store *meta.Store) *ledger {
	l := &ledger{}
	l.mu.Lock()
	defer l.mu.Unlock()
	store.Subscribe(func(ev meta.Event) { l.apply(store, ev) })
	l.rescan(store)
	return l
}

// rescan rebuilds the ledger from the catalogue; l.mu is held.
func (l *ledger) rescan(store *meta.Store) {
	l.byProject, l.byImage = map[string]usage{}, map[string]share{}
	l.rev, l.err = store.Snapshot(func(img *meta.Image) error {
		l.set(img.ID, img)
		return nil
	})
}

// set makes img (nil: gone) image id's share; l.mu is held.
func (l *ledger) set(id string, img *meta.Image) {
	if old, ok := l.byImage[id]; ok {
		u := l.byProject[old.owner]
		u.add(old.usage, -1)
		l.byProject[old.owner] = u
		delete(l.byImage, id)
	}
	if img == nil {
		return
	}
	sh := share{owner: img.Owner, usage: contribution(img)}
	l.byImage[id] = sh
	u := l.byProject[sh.owner]
	u.add(sh.usage, 1)
	l.byProject[sh.owner] = u
}

func (l *ledger) apply(store *meta.Store, ev meta.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case ev.Resync:
		l.rescan(store)
	case ev.Rev <= l.rev:
		// already in the scan
	case ev.New != nil:
		l.set(ev.New.ID, ev.New)
	case ev.Old != nil:
		l.set(ev.Old.ID, nil)
	}
}

// usageOf is what project holds, leaving out image skip (the one whose
// upload is being checked), with the bytes written so far by its uploads
// in flight.
func (s *Service) usageOf(project, skip string) (usage, error) {
	s.ledger.mu.Lock()
	u, err := s.ledger.byProject[project], s.ledger.err
	s.ledger.mu.Unlock()
	if err != nil {
		return usage{}, fmt.Errorf("quota: reading the catalogue: %w", err)
	}
	if skip != "" {
		img, err := s.store.Get(skip)
		if err != nil && !errors.Is(err, meta.ErrNotFound) {
			return usage{}, fmt.Errorf("quota: %w", err)
		}
		if err == nil && img.Owner == project {
			u.add(contribution(img), -1)
		}
	}
	u.live = s.liveBytes(project, skip)
	return u, nil
}

// liveBytes adds up what project's uploads in flight, except image skip's,
// have written so far.
func (s *Service) liveBytes(project, skip string) int64 {
	var n int64
	s.mu.Lock()
	for id, up := range s.uploads {
		if up.owner == project && id != skip {
			n += up.liveSize()
		}
	}
	s.mu.Unlock()
	return n
}

// overLimit is the message of oslo.limit's ProjectOverLimit, which Glance
// returns with 413.
func overLimit(project, resource string, limit, current, delta int64) error {
	return fmt.Errorf("%w: Project %s is over a limit for [Resource %s is over limit of %d due to current usage %d and delta %d]",
		ErrOverQuota, project, resource, limit, current, delta)
}

// storageFull is Glance's StorageQuotaFull message.
func storageFull(size, remaining int64) error {
	if remaining < 0 {
		remaining = 0
	}
	return fmt.Errorf("%w: The size of the data %d will exceed the limit. %d bytes remaining.", ErrOverQuota, size, remaining)
}

// checkCreate refuses a new image for project over image_count_total. The
// caller holds quotaMu until the image is created, so that two creates
// cannot both take the last slot.
func (s *Service) checkCreate(project string) error {
	if s.quota.Images == 0 {
		return nil
	}
	u, err := s.usageOf(project, "")
	if err != nil {
		return err
	}
	if u.images+1 > s.quota.Images {
		return overLimit(project, "image_count_total", s.quota.Images, u.images, 1)
	}
	return nil
}

// uploadAllowance checks that project may start writing image id
// (image_count_uploading, and some of image_size_total left) and returns
// the bytes the project stores in the registry, which the upload's writes
// are checked against (with the uploads in flight), or -1 for no byte
// limit.
func (s *Service) uploadAllowance(project, id string) (int64, error) {
	if s.quota.Uploading == 0 && s.quota.Bytes == 0 {
		return -1, nil
	}
	u, err := s.usageOf(project, id)
	if err != nil {
		return 0, err
	}
	if s.quota.Uploading > 0 && u.uploading+1 > s.quota.Uploading {
		return 0, overLimit(project, "image_count_uploading", s.quota.Uploading, u.uploading, 1)
	}
	if s.quota.Bytes == 0 {
		return -1, nil
	}
	if u.bytes() >= s.quota.Bytes {
		return 0, overLimit(project, "image_size_total", s.quota.Bytes, u.bytes(), 0)
	}
	return u.stored, nil
}

// checkWrite is the byte check of each write: the upload of image id
// would hold end bytes, next to stored bytes in the registry (as of the
// upload's start) and what the project's other uploads hold now. The
// upload that crosses the limit is the one refused.
func (s *Service) checkWrite(project, id string, stored, end int64) error {
	used := stored + s.liveBytes(project, id)
	if used+end > s.quota.Bytes {
		return storageFull(end, s.quota.Bytes-used)
	}
	return nil
}

// checkCommit is the exact byte check before an upload of size bytes
// becomes active: the allowance taken at the start does not know about
// uploads of the same project that finished meanwhile. The caller holds
// quotaMu until the image is activated.
func (s *Service) checkCommit(project, id string, size int64) error {
	if s.quota.Bytes == 0 {
		return nil
	}
	u, err := s.usageOf(project, id)
	if err != nil {
		return err
	}
	if u.bytes()+size > s.quota.Bytes {
		return storageFull(size, s.quota.Bytes-u.bytes())
	}
	return nil
}
