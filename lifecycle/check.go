package lifecycle

import (
	"context"
	"crypto/md5"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/meta"
)

// The kinds of Problem that Check finds.
const (
	// ProblemStatus: the record holds a status outside Glance's machine.
	ProblemStatus = "status"
	// ProblemStuck: the image is saving, uploading or importing, but no
	// writer is putting data into it: none in this process, and the
	// daemon whose lease it records (on a shared catalogue) is gone.
	ProblemStuck = "stuck"
	// ProblemRecord: the record contradicts its status (content facts on an
	// image without content, or none on one with content).
	ProblemRecord = "record"
	// ProblemMissing: the image's content is not in the store.
	ProblemMissing = "missing"
	// ProblemSize: the stored content's length is not the image's size.
	ProblemSize = "size"
	// ProblemHash: the stored content's md5 or sha512 is not the image's.
	ProblemHash = "hash"
	// ProblemOrphan: a stored object that no image owns.
	ProblemOrphan = "orphan"
)

// ScrubErrorProperty is the custom property that Scrub's mark sets on an
// image whose content is damaged or missing; the operator removes it once
// the image is repaired (or deletes the image).
const ScrubErrorProperty = "glimpse_scrub_error"

// Problem is one broken invariant.
type Problem struct {
	Image  string `json:"image,omitempty"` // the image, empty for an orphan
	Key    string `json:"key,omitempty"`   // the store key involved
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
	// Marked: Scrub deactivated the image and set ScrubErrorProperty.
	Marked bool `json:"marked,omitempty"`
}

// CheckReport is what Check (and Scrub) found.
type CheckReport struct {
	Images      int       `json:"images"`       // records walked
	Objects     int       `json:"objects"`      // stored objects listed
	BytesHashed int64     `json:"bytes_hashed"` // content re-read to hash
	Problems    []Problem `json:"problems"`
}

// CheckOptions say how deep Check goes.
type CheckOptions struct {
	// Rehash reads the content of every active and deactivated image and
	// compares its md5 and sha512 with the record; otherwise only sizes
	// are compared.
	Rehash bool
}

// Check walks the registry and the store and reports every broken
// invariant: records in an illegal status or contradicting it, in-flight
// images without a live writer, images whose content is missing or differs
// from their size (and, with Rehash, their hashes), and stored objects no
// image owns. It changes nothing and is safe while serving: a problem that
// a concurrent change explains (the image was deleted or changed while it
// was looked at) is not reported. One image's content is read at a time,
// in 1 MiB pieces.
func (s *Service) Check(ctx context.Context, opts CheckOptions) (CheckReport, error) {
	rep := CheckReport{Problems: []Problem{}}
	var images []*meta.Image
	err := s.store.All(func(img *meta.Image) error {
		images = append(images, img)
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("check: walk registry: %w", err)
	}
	rep.Images = len(images)
	var stuck []*meta.Image
	for _, img := range images {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		p, hashed := s.checkImage(ctx, img, opts)
		rep.BytesHashed += hashed
		switch {
		case p == nil:
		case p.Kind == ProblemStuck:
			stuck = append(stuck, img)
		case s.stillSame(img):
			rep.Problems = append(rep.Problems, *p)
		}
	}
	// An upload registers itself a moment after its image turns saving:
	// an image is stuck only if, looked at again after the whole walk, it
	// is unchanged and still has no writer.
	// On a shared catalogue, another daemon's upload has its writer there:
	// stuck only once that daemon's lease is gone (this daemon's own
	// lease vouches for nothing that this process is not writing).
	for _, img := range stuck {
		if !s.stillSame(img) || s.live(img.ID) {
			continue
		}
		if img.WriterLease != s.store.Lease() {
			orphaned, err := s.orphanedWork(ctx, img)
			if err != nil {
				return rep, fmt.Errorf("check: %w", err)
			}
			if !orphaned {
				continue
			}
		}
		rep.Problems = append(rep.Problems, Problem{Image: img.ID, Kind: ProblemStuck,
			Detail: fmt.Sprintf("image is %s but nothing is writing it", img.Status)})
	}
	orphans, n, err := s.orphans(ctx)
	if err != nil {
		return rep, err
	}
	rep.Objects = n
	for _, info := range orphans {
		rep.Problems = append(rep.Problems, Problem{Key: info.Key, Kind: ProblemOrphan,
			Detail: fmt.Sprintf("stored object of %d bytes that no image owns", info.Size)})
	}
	return rep, nil
}

// stillSame reports whether img is still the current record (not deleted
// or changed since it was read).
func (s *Service) stillSame(img *meta.Image) bool {
	cur, err := s.store.Get(img.ID)
	return err == nil && cur.UpdatedAt.Equal(img.UpdatedAt) && cur.Status == img.Status
}

func (s *Service) live(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.uploads[id] != nil
}

// checkImage returns img's problem, if any, and the bytes it hashed.
func (s *Service) checkImage(ctx context.Context, img *meta.Image, opts CheckOptions) (*Problem, int64) {
	problem := func(kind, format string, a ...any) *Problem {
		return &Problem{Image: img.ID, Key: img.StoreKey, Kind: kind, Detail: fmt.Sprintf(format, a...)}
	}
	switch {
	case !img.Status.Valid():
		return problem(ProblemStatus, "status %q is not a Glance image status", img.Status), 0
	case len(img.Locations) > 0:
		// The content stays at an HTTP location, not in the store: nothing
		// here to re-hash (scrub does not fetch remote content).
		return nil, 0
	case img.Status.InFlight():
		// A staged image waits in uploading for its import without a
		// writer: it owns its staged content.
		staged := img.Status == meta.Uploading && img.StoreKey == stageKey(img.ID)
		if !staged && !s.live(img.ID) {
			return problem(ProblemStuck, "image is %s but nothing is writing it", img.Status), 0
		}
		return nil, 0
	case !img.Status.HasData():
		if img.StoreKey != "" || img.Size != nil || img.Checksum != "" || img.OSHashValue != "" {
			return problem(ProblemRecord, "a %s image has content facts (store key %q)", img.Status, img.StoreKey), 0
		}
		return nil, 0
	}
	if img.StoreKey == "" || img.Size == nil || img.Checksum == "" || img.OSHashValue == "" || img.OSHashAlgo != HashAlgo {
		return problem(ProblemRecord, "a %s image lacks its store key, size or hashes", img.Status), 0
	}
	r, err := s.backend.Open(ctx, img.StoreKey)
	if errors.Is(err, backend.ErrNotFound) {
		return problem(ProblemMissing, "content %s is not in the store", img.StoreKey), 0
	}
	if err != nil {
		return problem(ProblemMissing, "content %s cannot be opened: %v", img.StoreKey, err), 0
	}
	defer r.Close()
	if r.Size() != *img.Size {
		return problem(ProblemSize, "stored content has %d bytes, the image says %d", r.Size(), *img.Size), 0
	}
	if !opts.Rehash {
		return nil, 0
	}
	md5sum, shasum := md5.New(), sha512.New()
	buf := make([]byte, 1<<20)
	n, err := io.CopyBuffer(io.MultiWriter(md5sum, shasum), io.NewSectionReader(r, 0, r.Size()), buf)
	if err != nil {
		return problem(ProblemMissing, "content %s cannot be read: %v", img.StoreKey, err), n
	}
	gotMD5, gotSHA := hex.EncodeToString(md5sum.Sum(nil)), hex.EncodeToString(shasum.Sum(nil))
	switch {
	case gotMD5 != img.Checksum:
		return problem(ProblemHash, "stored content has md5 %s, the image says %s", gotMD5, img.Checksum), n
	case gotSHA != img.OSHashValue:
		return problem(ProblemHash, "stored content has sha512 %s, the image says %s", gotSHA, img.OSHashValue), n
	}
	return nil, n
}

// orphans lists the stored objects that no image owns, and how many
// objects the store holds. An object is owned by the image whose StoreKey
// names it, by an in-flight image of that id (its content is committed to
// the store a moment before the image becomes active), and staged content
// by its image while it is uploading or importing. An object under the id
// of a queued image is counted as owned too: it cannot arise, and if it
// did, GC must not race the upload that may be about to replace it.
func (s *Service) orphans(ctx context.Context) ([]backend.Info, int, error) {
	var objects []backend.Info
	err := s.backend.List(ctx, func(info backend.Info) error {
		objects = append(objects, info)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list store: %w", err)
	}
	var orphans []backend.Info
	for _, info := range objects {
		owned, err := s.owned(info.Key)
		if err != nil {
			return nil, 0, err
		}
		if !owned {
			orphans = append(orphans, info)
		}
	}
	return orphans, len(objects), nil
}

func (s *Service) owned(key string) (bool, error) {
	id, staged := strings.CutPrefix(key, "staging-")
	img, err := s.store.Get(id)
	if errors.Is(err, meta.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("owner of stored object %s: %w", key, err)
	}
	switch {
	case img.StoreKey == key:
		return true, nil
	case staged:
		return img.Status == meta.Uploading || img.Status == meta.Importing, nil
	default:
		return img.Status.InFlight() || img.Status == meta.Queued, nil
	}
}

// Scrub re-hashes the content of every image that has some against its
// record and reports what Check finds. With mark, each image whose content
// is missing, of the wrong size or hashes differently is deactivated (so
// nobody consumes it; admins can still download it to look) and gets the
// property glimpse_scrub_error saying why. Nothing is deleted: the operator
// decides. Only admins may scrub.
func (s *Service) Scrub(ctx context.Context, p Principal, mark bool) (CheckReport, error) {
	if !s.auth.IsAdmin(p) {
		return CheckReport{}, fmt.Errorf("%w: only admins (context_is_admin) may scrub the store", ErrForbidden)
	}
	rep, err := s.Check(ctx, CheckOptions{Rehash: true})
	if err != nil || !mark {
		return rep, err
	}
	for i, p := range rep.Problems {
		switch p.Kind {
		case ProblemMissing, ProblemSize, ProblemHash:
		default:
			continue
		}
		_, err := s.store.Update(ctx, p.Image, func(img *meta.Image) error {
			if img.StoreKey != p.Key || !img.Status.HasData() {
				return errChanged // replaced or deleted since: not ours to mark
			}
			if img.Status == meta.Active {
				img.Status = meta.Deactivated
			}
			if img.Properties == nil {
				img.Properties = map[string]string{}
			}
			img.Properties[ScrubErrorProperty] = p.Detail
			return nil
		})
		if errors.Is(err, errChanged) || errors.Is(err, meta.ErrNotFound) {
			continue
		}
		if err != nil {
			return rep, fmt.Errorf("scrub: mark image %s: %w", p.Image, err)
		}
		rep.Problems[i].Marked = true
		s.log.Warn("scrub deactivated an image with damaged content", "image", p.Image, "problem", p.Detail)
	}
	return rep, nil
}

var errChanged = errors.New("image changed meanwhile")

// GCReport is what GC removed (or, in a dry run, would remove).
type GCReport struct {
	DryRun bool `json:"dry_run"`
	// Orphans are the stored objects no image owned.
	Orphans []string `json:"orphans"`
	// IncompleteAborted: incomplete writes without a live upload (a crashed
	// process's, or ones this process failed to abort) were removed.
	IncompleteAborted bool `json:"incomplete_aborted"`
}

// GC removes the stored objects that no image owns and the incomplete
// writes (S3 multipart uploads, Swift segments, partial files) that no
// upload in flight owns. It is safe while serving: an object is removed
// only if, looked up again just before, it is still unowned and was stored
// before GC began, and the writes of live uploads are spared. A dry run
// only reports the orphans. Only admins may collect garbage.
func (s *Service) GC(ctx context.Context, p Principal, dryRun bool) (GCReport, error) {
	if !s.auth.IsAdmin(p) {
		return GCReport{}, fmt.Errorf("%w: only admins (context_is_admin) may collect garbage in the store", ErrForbidden)
	}
	rep := GCReport{DryRun: dryRun, Orphans: []string{}}
	began := time.Now()
	orphans, _, err := s.orphans(ctx)
	if err != nil {
		return rep, fmt.Errorf("gc: %w", err)
	}
	for _, info := range orphans {
		if dryRun {
			rep.Orphans = append(rep.Orphans, info.Key)
			continue
		}
		removed, err := s.removeOrphan(ctx, info.Key, began)
		if err != nil {
			return rep, fmt.Errorf("gc: %w", err)
		}
		if removed {
			rep.Orphans = append(rep.Orphans, info.Key)
		}
	}
	if dryRun {
		return rep, nil
	}
	if err := s.backend.AbortStale(ctx, s.live); err != nil {
		return rep, fmt.Errorf("gc: abort incomplete writes: %w", err)
	}
	rep.IncompleteAborted = true
	return rep, nil
}

// removeOrphan deletes key if it is still unowned and older than began (an
// object stored since may belong to an image created with a reused id).
func (s *Service) removeOrphan(ctx context.Context, key string, began time.Time) (bool, error) {
	owned, err := s.owned(key)
	if err != nil || owned {
		return false, err
	}
	info, err := s.backend.Stat(ctx, key)
	if errors.Is(err, backend.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat orphan %s: %w", key, err)
	}
	if !info.ModTime.IsZero() && info.ModTime.After(began) {
		return false, nil
	}
	if err := s.backend.Delete(ctx, key); err != nil {
		return false, fmt.Errorf("remove orphan %s: %w", key, err)
	}
	s.log.Info("gc removed an object no image owns", "key", key, "bytes", info.Size)
	return true, nil
}
