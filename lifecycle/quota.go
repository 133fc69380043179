package lifecycle

import (
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
	images, uploading, bytes int64
}

// usageOf adds up project's images, leaving out image skip (the one whose
// upload is being checked), and the bytes written so far by its uploads in
// flight. It scans the catalogue: quotas cost one scan per create, upload
// start and commit, and nothing when no quota is set.
func (s *Service) usageOf(project, skip string) (usage, error) {
	var u usage
	err := s.store.All(func(img *meta.Image) error {
		if img.Owner != project || img.ID == skip {
			return nil
		}
		u.images++
		if img.Status.InFlight() {
			u.uploading++
		}
		if img.Size != nil {
			u.bytes += *img.Size // active, deactivated, and staged content
		}
		return nil
	})
	if err != nil {
		return usage{}, fmt.Errorf("quota: %w", err)
	}
	s.mu.Lock()
	for id, up := range s.uploads {
		if up.owner == project && id != skip {
			u.bytes += up.liveSize()
		}
	}
	s.mu.Unlock()
	return u, nil
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
// how many bytes the upload may hold, or -1 for no limit.
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
	left := s.quota.Bytes - u.bytes
	if left <= 0 {
		return 0, overLimit(project, "image_size_total", s.quota.Bytes, u.bytes, 0)
	}
	return left, nil
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
	if u.bytes+size > s.quota.Bytes {
		return storageFull(size, s.quota.Bytes-u.bytes)
	}
	return nil
}
