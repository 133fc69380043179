package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/convert"
	"github.com/glimpse-project/glimpse/lifecycle/policy"
	"github.com/glimpse-project/glimpse/meta"
)

// HTTP locations: an image whose bytes stay at a URL (Glance's http store).
// Adding the location to a queued image first probes it: a HEAD for the
// size and the same bounded inspection an upload gets, over ranged reads.
// Then the content is hashed in the background, in one streaming pass:
//
//   - without validation data the image is active at once (as with
//     Glance's http store) and checksum and os_hash_value fill in when
//     the pass ends;
//   - with validation data the image stays importing, unreadable, until
//     the pass has verified it: then active, or killed with the reason on
//     a mismatch or when the URL cannot be read through.
//
// Reads go to the URL; deleting the image leaves the URL alone.
//
// glimpse keeps one location per image: locations are added only to queued
// images, so the content behind an active image's hashes can never be
// swapped by adding or replacing a location (OSSN-0065).

// MaxLocationURLLength is the image schema's bound on a location's url.
const MaxLocationURLLength = 255

// ValidationData are the hashes a caller vouches for when adding a
// location (Glance's validation_data); empty fields are not given.
type ValidationData struct {
	Checksum    string // md5, hex
	OSHashAlgo  string
	OSHashValue string
}

var (
	md5Hex    = regexp.MustCompile(`^[0-9a-f]{32}$`)
	sha512Hex = regexp.MustCompile(`^[0-9a-f]{128}$`)
)

func (vd *ValidationData) check() error {
	if vd == nil {
		return nil
	}
	if vd.Checksum != "" && !md5Hex.MatchString(vd.Checksum) {
		return fmt.Errorf("%w: checksum (%s) is not a valid md5 in hex", ErrInvalid, vd.Checksum)
	}
	if (vd.OSHashAlgo == "") != (vd.OSHashValue == "") {
		return fmt.Errorf("%w: validation_data needs both os_hash_algo and os_hash_value", ErrInvalid)
	}
	if vd.OSHashAlgo != "" && vd.OSHashAlgo != HashAlgo {
		return fmt.Errorf("%w: os_hash_algo must be %s, not %s", ErrInvalid, HashAlgo, vd.OSHashAlgo)
	}
	if vd.OSHashValue != "" && !sha512Hex.MatchString(vd.OSHashValue) {
		return fmt.Errorf("%w: validation_data os_hash_value is not a %s in hex", ErrInvalid, HashAlgo)
	}
	return nil
}

// CheckLocationURL refuses a URL that can never be a location: not
// http(s), no host, credentials in it, longer than the schema allows.
func CheckLocationURL(raw string) error {
	if len(raw) > MaxLocationURLLength {
		return fmt.Errorf("%w: location URL longer than %d characters", ErrInvalid, MaxLocationURLLength)
	}
	if !strings.HasPrefix(raw, "http://") && !strings.HasPrefix(raw, "https://") {
		return fmt.Errorf("%w: the Store URI was malformed: %s (only http and https URLs are taken)", ErrInvalid, raw)
	}
	return nil
}

// AddLocation registers loc as where queued image id's content stays. The
// URL is probed (HEAD, then the inspector's ranged reads); on any failure
// the image stays queued and nothing changes. On success the image is
// active and its content is hashed, or vd verified, in the background.
// via says which request asks, for its rule.
func (s *Service) AddLocation(ctx context.Context, p Principal, id string, loc meta.Location, vd *ValidationData, via LocationRequest) (*meta.Image, error) {
	if s.locations == nil {
		return nil, fmt.Errorf("%w: this glimpse takes no locations", ErrForbidden)
	}
	if err := CheckLocationURL(loc.URL); err != nil {
		return nil, err
	}
	if err := vd.check(); err != nil {
		return nil, err
	}
	img, err := s.Get(ctx, p, id)
	if err != nil {
		return nil, err
	}
	if err := s.canAddLocation(p, img, via); err != nil {
		return nil, err
	}
	size, report, err := s.probeLocation(ctx, loc.URL)
	if err != nil {
		return nil, err
	}
	if loc.Metadata == nil {
		loc.Metadata = map[string]any{}
	}
	img, err = s.store.Update(ctx, id, func(img *meta.Image) error {
		if !s.sees(p, img) {
			return ErrNotFound
		}
		if err := s.canAddLocation(p, img, via); err != nil {
			return err
		}
		if err := s.acceptFormat(img, report, "content at "+loc.URL); err != nil {
			return err
		}
		if img.ContainerFormat == "" {
			img.ContainerFormat = "bare"
		}
		img.Status = meta.Active
		if vd != nil {
			img.Status = meta.Importing // until verified
		}
		img.Size = &size
		img.Locations = []meta.Location{loc}
		img.StoreKey = ""
		img.Checksum, img.OSHashAlgo, img.OSHashValue = "", "", ""
		if vd != nil {
			img.Checksum, img.OSHashAlgo, img.OSHashValue = vd.Checksum, vd.OSHashAlgo, vd.OSHashValue
		}
		img.HashPending = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("location added", "image", id, "url", loc.URL, "size", size, "disk_format", img.DiskFormat)
	s.startHash(img)
	return img, nil
}

// LocationRequest is the request that adds a location: each has its rule.
type LocationRequest string

const (
	// LocationByPatch: a JSON patch "add /locations/-" (glance
	// location-add), under set_image_location.
	LocationByPatch LocationRequest = policy.SetImageLocation
	// LocationByPost: POST /v2/images/{id}/locations (Glance 2024.1),
	// under add_image_location (the service role or the owner's members).
	LocationByPost LocationRequest = policy.AddImageLocation
)

func (s *Service) canAddLocation(p Principal, img *meta.Image, via LocationRequest) error {
	if err := s.auth.mayDo(p, string(via), img); err != nil {
		return err
	}
	if img.Status != meta.Queued {
		return fmt.Errorf("%w: image %s is %s; a location can only be added to a queued image", ErrForbidden, img.ID, img.Status)
	}
	return nil
}

// probeLocation learns the size of the content at url and inspects it,
// reading only what the inspector asks for.
func (s *Service) probeLocation(ctx context.Context, url string) (int64, convert.Report, error) {
	r, err := s.locations.Open(ctx, url)
	if err != nil {
		return 0, convert.Report{}, fmt.Errorf("%w: location %s: %v", ErrInvalid, url, err)
	}
	defer r.Close()
	size := r.Size()
	if s.maxSize > 0 && size > s.maxSize {
		return 0, convert.Report{}, fmt.Errorf("%w of %d bytes: location %s holds %d", ErrTooLarge, s.maxSize, url, size)
	}
	report, err := s.inspect(r, size)
	if err != nil {
		if errors.Is(err, convert.ErrUnsafe) || errors.Is(err, convert.ErrCorrupt) {
			return 0, convert.Report{}, fmt.Errorf("location %s refused: %w", url, err)
		}
		return 0, convert.Report{}, fmt.Errorf("%w: location %s: %v", ErrInvalid, url, err)
	}
	return size, report, nil
}

// RemoveLocation removes location i of image id. The last location of an
// image that has content cannot be removed (Glance: 403), and glimpse
// keeps one per image, so this only ever refuses; it exists so that the
// refusal is the lifecycle's and the faces tell it the same way.
func (s *Service) RemoveLocation(ctx context.Context, p Principal, id string, i int) (*meta.Image, error) {
	return s.modify(ctx, p, id, policy.DeleteImageLocation, func(img *meta.Image) error {
		if i < 0 || i >= len(img.Locations) {
			return fmt.Errorf("%w: image %s has no location %d", ErrInvalid, id, i)
		}
		if len(img.Locations) == 1 {
			return fmt.Errorf("%w: cannot remove the last location of image %s", ErrForbidden, id)
		}
		img.Locations = append(img.Locations[:i:i], img.Locations[i+1:]...)
		return nil
	})
}

// ReplaceLocations sets the locations of image id to locs. Only the
// metadata of existing locations may change (what glance location-update
// sends); a new URL, or none, is refused.
func (s *Service) ReplaceLocations(ctx context.Context, p Principal, id string, locs []meta.Location) (*meta.Image, error) {
	return s.modify(ctx, p, id, policy.SetImageLocation, func(img *meta.Image) error {
		if len(locs) == 0 {
			return fmt.Errorf("%w: cannot set the locations of image %s to an empty list", ErrForbidden, id)
		}
		if len(locs) != len(img.Locations) {
			return fmt.Errorf("%w: the locations of image %s can only have their metadata changed", ErrForbidden, id)
		}
		have := map[string]bool{}
		for _, l := range img.Locations {
			have[l.URL] = true
		}
		for i := range locs {
			if !have[locs[i].URL] {
				return fmt.Errorf("%w: the locations of image %s can only have their metadata changed (%s is new)", ErrForbidden, id, locs[i].URL)
			}
			delete(have, locs[i].URL)
			if locs[i].Metadata == nil {
				locs[i].Metadata = map[string]any{}
			}
		}
		img.Locations = append([]meta.Location(nil), locs...)
		return nil
	})
}

// openLocation opens the content of img at the first of its locations
// that answers with the image's size.
func (s *Service) openLocation(ctx context.Context, img *meta.Image) (backend.Reader, error) {
	if s.locations == nil {
		return nil, fmt.Errorf("%w: image %s has a location, and this glimpse takes none", ErrStoreUnavailable, img.ID)
	}
	var errs []error
	for _, loc := range img.Locations {
		r, err := s.locations.Open(ctx, loc.URL)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if img.Size != nil && r.Size() != *img.Size {
			r.Close()
			errs = append(errs, fmt.Errorf("%s now holds %d bytes, not the image's %d", loc.URL, r.Size(), *img.Size))
			continue
		}
		return r, nil
	}
	return nil, fmt.Errorf("%w: image %s: %w", ErrStoreUnavailable, img.ID, errors.Join(errs...))
}

// startHash hashes (or verifies) the content of img at its location in
// the background, unless the service is shutting down.
func (s *Service) startHash(img *meta.Image) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bgCtx.Err() != nil || s.hashing[img.ID] != nil {
		return
	}
	ctx, cancel := context.WithCancel(s.bgCtx)
	s.hashing[img.ID] = cancel
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.hashing, img.ID)
			s.mu.Unlock()
			cancel()
		}()
		s.hashLocation(ctx, img)
	}()
}

// stopHash cancels the background hash of image id, if any.
func (s *Service) stopHash(id string) {
	s.mu.Lock()
	cancel := s.hashing[id]
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// hashLocation streams the content at img's location once. A read error
// leaves the image as it is (HashPending, retried at the next start); a
// mismatch with validation data kills it.
func (s *Service) hashLocation(ctx context.Context, img *meta.Image) {
	url := img.Locations[0].URL
	md5sum, shasum, err := s.hashContent(ctx, img)
	if err != nil {
		if ctx.Err() != nil {
			return // stopping or deleted: resumed at the next start, if any
		}
		if img.Status != meta.Importing {
			s.log.Warn("hash of a location image failed; retried at the next start", "image", img.ID, "err", err)
			return
		}
	}
	_, err = s.store.Update(context.WithoutCancel(ctx), img.ID, func(cur *meta.Image) error {
		if !cur.HashPending || len(cur.Locations) == 0 || cur.Locations[0].URL != url {
			return errStale
		}
		if err != nil {
			markKilled(cur, fmt.Sprintf("could not verify the content at %s: %v", url, err))
			return nil
		}
		cur.HashPending = false
		if bad := mismatch(cur, md5sum, shasum); bad != "" {
			markKilled(cur, fmt.Sprintf("content at %s does not match validation_data: %s", url, bad))
			return nil
		}
		cur.Checksum, cur.OSHashAlgo, cur.OSHashValue = md5sum, HashAlgo, shasum
		if cur.Status == meta.Importing {
			cur.Status = meta.Active
		}
		return nil
	})
	switch {
	case err == nil:
		s.log.Info("location image hashed", "image", img.ID, "url", url)
	case errors.Is(err, errStale), errors.Is(err, meta.ErrNotFound):
	default:
		s.log.Error("record the hashes of a location image", "image", img.ID, "err", err)
	}
}

var errStale = errors.New("image changed while its location was hashed")

// hashContent reads the content at img's location once and returns its
// md5 and sha512 in hex.
func (s *Service) hashContent(ctx context.Context, img *meta.Image) (md5sum, shasum string, err error) {
	r, err := s.openLocation(ctx, img)
	if err != nil {
		return "", "", err
	}
	defer r.Close()
	h := newStreamHasher(&s.chunks)
	defer h.stop()
	buf := make([]byte, 1<<20)
	sr := io.NewSectionReader(r, 0, r.Size())
	for {
		n, err := io.ReadFull(sr, buf)
		if n > 0 {
			h.write(buf[:n])
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			return "", "", err
		}
	}
	md5sum, shasum = h.sums()
	return md5sum, shasum, nil
}

// mismatch compares the hashes of the content with those the image was
// given (validation data), and describes the difference.
func mismatch(img *meta.Image, md5sum, shasum string) string {
	var bad []string
	if img.Checksum != "" && img.Checksum != md5sum {
		bad = append(bad, fmt.Sprintf("checksum is %s, expected %s", md5sum, img.Checksum))
	}
	if img.OSHashValue != "" && img.OSHashValue != shasum {
		bad = append(bad, fmt.Sprintf("os_hash_value is %s..., expected %s...", shasum[:16], img.OSHashValue[:min(16, len(img.OSHashValue))]))
	}
	return strings.Join(bad, "; ")
}

// Locations returns the locations of image id for GET
// /v2/images/{id}/locations, if fetch_image_location allows (Glance: the
// service role and admins; others see locations, where get_image_location
// lets them, in the image itself).
func (s *Service) Locations(ctx context.Context, p Principal, id string) ([]meta.Location, error) {
	img, err := s.Get(ctx, p, id)
	if err != nil {
		return nil, err
	}
	if err := s.auth.mayDo(p, policy.FetchImageLocation, img); err != nil {
		return nil, err
	}
	return img.Locations, nil
}
