package lifecycle

import (
	"errors"
	"fmt"

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
	u := meta.UsageOf(img)
	return usage{images: u.Images, uploading: u.Uploading, stored: u.Stored}
}

func (u *usage) add(v usage, sign int64) {
	u.images += sign * v.images
	u.uploading += sign * v.uploading
	u.stored += sign * v.stored
}

// limit is the quota as the registry enforces it, inside the transaction
// of every change that makes a project hold more (meta.Limit), so that
// the limits are exact across daemons sharing the catalogue; the checks
// below, before a change, give the refusals Glance's messages and count
// this daemon's uploads in flight.
func (s *Service) limit(project string, before, after meta.Usage) error {
	q := s.quota
	switch {
	case q.Images > 0 && after.Images > before.Images && after.Images > q.Images:
		return overLimit(project, "image_count_total", q.Images, before.Images, after.Images-before.Images)
	case q.Uploading > 0 && after.Uploading > before.Uploading && after.Uploading > q.Uploading:
		return overLimit(project, "image_count_uploading", q.Uploading, before.Uploading, after.Uploading-before.Uploading)
	case q.Bytes > 0 && after.Uploading > before.Uploading && before.Stored >= q.Bytes:
		return overLimit(project, "image_size_total", q.Bytes, before.Stored, 0)
	case q.Bytes > 0 && after.Stored > before.Stored && after.Stored > q.Bytes:
		return storageFull(after.Stored-before.Stored, q.Bytes-before.Stored)
	}
	return nil
}

// usageOf is what project holds, leaving out image skip (the one whose
// upload is being checked), with the bytes written so far by its uploads
// in flight.
func (s *Service) usageOf(project, skip string) (usage, error) {
	held, err := s.store.Usage(project)
	if err != nil {
		return usage{}, fmt.Errorf("quota: %w", err)
	}
	u := usage{images: held.Images, uploading: held.Uploading, stored: held.Stored}
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
