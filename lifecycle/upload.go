package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/convert"
	"github.com/glimpse-project/glimpse/lifecycle/policy"
	"github.com/glimpse-project/glimpse/meta"
)

// HashAlgo is the os_hash_algo of every image glimpse stores (Glance's
// default, hashing_algorithm = sha512).
const HashAlgo = "sha512"

// Upload is the content of one image being written. Writes may come in any
// order when the store offers random writes (local disk); the hashes are
// computed as the bytes stream in, in order, and only a part written out of
// order is read back at Commit. Its methods are safe for concurrent use.
type Upload struct {
	s     *Service
	id    string
	start time.Time
	owner string // the project whose quota the bytes count against

	// quotaStored is what the owner stored when the upload started, for
	// the byte quota (-1: no byte quota); live mirrors size for other
	// uploads' quota checks, which must not take this upload's lock.
	quotaStored int64
	live        atomic.Int64

	mu     sync.Mutex           // guards every field below
	w      backend.Writer       // nil once finished
	rw     backend.RandomWriter // w, when it takes random writes; else nil
	size   int64                // bytes the content holds so far
	hashed int64                // the prefix [0, hashed) went to hash
	hash   *streamHasher
	failed error         // a write error that dooms the upload
	done   bool          // committed or aborted
	result *meta.Image   // the image after a successful commit
	doneCh chan struct{} // closed when done
}

// BeginUpload moves queued image id to saving and opens its content for
// writing. Only one upload per image runs at a time.
func (s *Service) BeginUpload(ctx context.Context, p Principal, id string) (*Upload, error) {
	var stored int64 = -1
	begin := func(img *meta.Image) error {
		if img.Status != meta.Queued {
			return fmt.Errorf("%w: image %s is %s; only a queued image takes data", ErrConflict, id, img.Status)
		}
		img.Status = meta.Saving
		return nil
	}
	var img *meta.Image
	var err error
	if s.quota.Uploading > 0 || s.quota.Bytes > 0 {
		// Checked before the image leaves queued: an upload refused for
		// quota changes nothing, as in Glance.
		img, err = s.withUploadQuota(ctx, p, id, &stored, func() (*meta.Image, error) { return s.modify(ctx, p, id, policy.UploadImage, begin) })
	} else {
		img, err = s.modify(ctx, p, id, policy.UploadImage, begin)
	}
	if err != nil {
		return nil, err
	}
	return s.startUpload(ctx, img, "upload", stored)
}

// withUploadQuota runs begin (which moves image id to an in-flight status)
// once the owner's quota allows another upload, and sets *stored to the
// bytes the owner stores (-1 without a byte quota).
func (s *Service) withUploadQuota(ctx context.Context, p Principal, id string, stored *int64, begin func() (*meta.Image, error)) (*meta.Image, error) {
	img, err := s.Get(ctx, p, id)
	if err != nil {
		return nil, err
	}
	s.quotaMu.Lock()
	defer s.quotaMu.Unlock()
	if *stored, err = s.uploadAllowance(img.Owner, id); err != nil {
		return nil, err
	}
	return begin()
}

// startUpload opens the store for the content of image id, which the
// caller has just moved to an in-flight status, and registers the upload.
// what names the operation in errors ("upload", "import").
func (s *Service) startUpload(ctx context.Context, img *meta.Image, what string, quotaStored int64) (*Upload, error) {
	id := img.ID
	u := &Upload{s: s, id: id, start: time.Now(), owner: img.Owner, quotaStored: quotaStored, hash: newStreamHasher(&s.chunks), doneCh: make(chan struct{})}
	// Registered before the store is asked, so that Shutdown finds it;
	// locked until its writer is set, so that an Abort meanwhile waits for
	// the writer and removes what it made.
	u.mu.Lock()
	s.mu.Lock()
	s.uploads[id] = u
	s.mu.Unlock()
	w, err := s.backend.Create(ctx, id)
	if err != nil {
		err = storeError(err)
		if !u.done {
			u.abortLocked(ctx, fmt.Sprintf("store refused the %s: %v", what, err), true)
		}
		u.mu.Unlock()
		return nil, fmt.Errorf("%s image %s: %w", what, id, err)
	}
	u.w = w
	u.rw, _ = w.(backend.RandomWriter)
	u.mu.Unlock()
	return u, nil
}

// ID is the image being written.
func (u *Upload) ID() string { return u.id }

// Size is the number of bytes written so far.
func (u *Upload) Size() int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.size
}

// Write appends p.
func (u *Upload) Write(p []byte) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.writeAt(p, u.size)
}

// WriteAt writes p at off.
func (u *Upload) WriteAt(p []byte, off int64) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.writeAt(p, off)
}

func (u *Upload) writeAt(p []byte, off int64) (int, error) {
	if u.done {
		return 0, ErrUploadClosed
	}
	if u.failed != nil {
		return 0, u.failed
	}
	end := off + int64(len(p))
	if u.s.maxSize > 0 && end > u.s.maxSize {
		u.failed = fmt.Errorf("%w of %d bytes", ErrTooLarge, u.s.maxSize)
		return 0, u.failed
	}
	if u.quotaStored >= 0 && end > u.size {
		if err := u.s.checkWrite(u.owner, u.id, u.quotaStored, end); err != nil {
			u.failed = err
			return 0, u.failed
		}
	}
	if u.rw == nil && off != u.size {
		// Streaming stores take bytes in order only.
		u.failed = fmt.Errorf("%w: this store takes writes in order only (write at %d, expected %d)", ErrInvalid, off, u.size)
		return 0, u.failed
	}
	if off < u.hashed {
		u.resetHashes() // rewriting hashed bytes: hash again at Commit
	}
	n, werr := u.store(p, off)
	if werr == nil && off == u.hashed {
		u.hash.write(p) // in order: hashed while the writer goes on
		u.hashed = end
	}
	if werr != nil {
		u.failed = fmt.Errorf("store write failed: %w", storeError(werr))
		return n, u.failed
	}
	if end > u.size {
		u.size = end
		u.live.Store(end)
	}
	return n, nil
}

func (u *Upload) store(p []byte, off int64) (int, error) {
	if u.rw != nil {
		return u.rw.WriteAt(p, off)
	}
	return u.w.Write(p)
}

func (u *Upload) resetHashes() {
	u.hash.stop()
	u.hash = newStreamHasher(&u.s.chunks)
	u.hashed = 0
}

// ReadAt reads back written content (a writer reading its own file).
func (u *Upload) ReadAt(p []byte, off int64) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done || u.rw == nil {
		return 0, fmt.Errorf("%w: content being uploaded cannot be read back", ErrConflict)
	}
	if off >= u.size {
		return 0, nil
	}
	if max := u.size - off; int64(len(p)) > max {
		p = p[:max]
	}
	return u.rw.ReadAt(p, off)
}

// Truncate sets the content's size, as ftruncate does.
func (u *Upload) Truncate(size int64) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return ErrUploadClosed
	}
	if size == u.size {
		return nil
	}
	if u.rw == nil {
		return fmt.Errorf("%w: this store cannot truncate content being uploaded", ErrInvalid)
	}
	if u.s.maxSize > 0 && size > u.s.maxSize {
		return fmt.Errorf("%w of %d bytes", ErrTooLarge, u.s.maxSize)
	}
	if u.quotaStored >= 0 && size > u.size {
		if err := u.s.checkWrite(u.owner, u.id, u.quotaStored, size); err != nil {
			return err
		}
	}
	if err := u.rw.Truncate(size); err != nil {
		return fmt.Errorf("truncate upload: %w", storeError(err))
	}
	if size < u.hashed {
		u.resetHashes()
	}
	u.size = size
	u.live.Store(size)
	return nil
}

// liveSize is the size so far, for other uploads' quota checks.
func (u *Upload) liveSize() int64 { return u.live.Load() }

// Done is closed once the upload is committed or aborted.
func (u *Upload) Done() <-chan struct{} { return u.doneCh }

// Commit finishes the upload: it completes the hashes, makes the content
// durable in the store, inspects it, and activates the image; or, when
// anything fails, kills the image with the reason and removes the content.
// The image is settled when Commit returns. A second Commit returns the
// first one's outcome.
func (u *Upload) Commit(ctx context.Context) (*meta.Image, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		if u.result != nil {
			return u.result, nil
		}
		return nil, ErrUploadClosed
	}
	if u.failed != nil {
		u.abortLocked(ctx, u.failed.Error(), true)
		return nil, u.failed
	}
	img, err := u.commitLocked(ctx)
	if err != nil {
		u.abortLocked(ctx, err.Error(), true)
		return nil, err
	}
	u.result = img
	u.finishLocked()
	return img, nil
}

func (u *Upload) commitLocked(ctx context.Context) (*meta.Image, error) {
	if u.hashed < u.size {
		// Only what arrived out of order is read back.
		buf := make([]byte, 1<<20)
		for u.hashed < u.size {
			n := int64(len(buf))
			if rest := u.size - u.hashed; rest < n {
				n = rest
			}
			if _, err := u.rw.ReadAt(buf[:n], u.hashed); err != nil {
				return nil, fmt.Errorf("read back upload: %w", storeError(err))
			}
			u.hash.write(buf[:n])
			u.hashed += n
		}
	}
	if err := u.w.Commit(ctx); err != nil {
		return nil, fmt.Errorf("store could not commit the upload: %w", storeError(err))
	}
	report, err := u.inspectCommitted(ctx)
	if err != nil {
		return nil, err
	}
	size := u.size
	checksum, osHash := u.hash.sums()
	if u.quotaStored >= 0 {
		u.s.quotaMu.Lock()
		defer u.s.quotaMu.Unlock()
		if err := u.s.checkCommit(u.owner, u.id, size); err != nil {
			return nil, err
		}
	}
	return u.s.store.Update(ctx, u.id, func(img *meta.Image) error {
		if err := u.s.acceptFormat(img, report, "content"); err != nil {
			return err
		}
		if img.ContainerFormat == "" {
			img.ContainerFormat = "bare"
		}
		img.Status = meta.Active
		img.Size = &size
		img.Checksum = checksum
		img.OSHashAlgo = HashAlgo
		img.OSHashValue = osHash
		img.StoreKey = u.id
		img.Error = ""
		return nil
	})
}

// inspectCommitted inspects the committed content through the store, reading
// only the metadata the inspector asks for.
func (u *Upload) inspectCommitted(ctx context.Context) (convert.Report, error) {
	r, err := u.s.backend.Open(ctx, u.id)
	if err != nil {
		return convert.Report{}, fmt.Errorf("reopen upload for inspection: %w", storeError(err))
	}
	defer r.Close()
	report, err := u.s.inspect(r, r.Size())
	if err != nil {
		return convert.Report{}, fmt.Errorf("image refused: %w", err)
	}
	return report, nil
}

// Abort kills the image with reason and removes whatever content was
// written. It is a no-op after Commit or Abort.
func (u *Upload) Abort(ctx context.Context, reason string) {
	u.abort(ctx, reason, true)
}

func (u *Upload) abort(ctx context.Context, reason string, kill bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.done {
		u.abortLocked(ctx, reason, kill)
	}
}

func (u *Upload) abortLocked(ctx context.Context, reason string, kill bool) {
	defer u.finishLocked()
	if u.w != nil {
		if err := u.w.Abort(ctx); err != nil {
			u.s.log.Error("abort upload", "image", u.id, "err", err)
		}
		// Commit may have reached the store before a later step failed.
		if err := u.s.backend.Delete(ctx, u.id); err != nil {
			u.s.log.Error("remove content of killed image; the next start removes it", "image", u.id, "err", err)
		}
	}
	if !kill {
		return
	}
	_, err := u.s.store.Update(ctx, u.id, func(img *meta.Image) error {
		markKilled(img, reason)
		return nil
	})
	if err != nil && !errors.Is(err, meta.ErrNotFound) {
		u.s.log.Error("mark image killed", "image", u.id, "reason", reason, "err", err)
	}
	u.s.log.Warn("upload killed", "image", u.id, "reason", reason)
}

func (u *Upload) finishLocked() {
	u.hash.stop()
	u.s.metrics.uploadSettled(u.result != nil, u.size, time.Since(u.start))
	u.done = true
	u.w, u.rw = nil, nil
	close(u.doneCh)
	u.s.mu.Lock()
	if u.s.uploads[u.id] == u {
		delete(u.s.uploads, u.id)
	}
	u.s.mu.Unlock()
}

// markKilled turns img into a killed image: the reason is kept, and nothing
// that described content (which is gone) survives.
func markKilled(img *meta.Image, reason string) {
	img.Status = meta.Killed
	img.Error = reason
	img.Size, img.VirtualSize = nil, nil
	img.Checksum, img.OSHashAlgo, img.OSHashValue, img.StoreKey = "", "", "", ""
	img.Locations, img.HashPending = nil, false
	img.DetectedFormat = ""
}

// acceptFormat records what inspection found in img: the detected
// disk_format when none was declared, and the virtual size. Content that
// contradicts the declared disk_format is refused (ErrUnsafe), unless the
// Service allows mismatches (Glance's require_image_format_match =
// false): then the detected format is kept in DetectedFormat and, as in
// Glance, the virtual size stays unknown, since the content is no disk of
// the declared format. Unsafe content never gets here: inspection refused
// it whatever was declared. what names the content in the error.
func (s *Service) acceptFormat(img *meta.Image, report convert.Report, what string) error {
	img.DetectedFormat = ""
	if !report.Matches(img.DiskFormat) {
		if !s.allowFormatMismatch {
			return fmt.Errorf("%w: %s is %s, but the image declares disk_format %s", convert.ErrUnsafe, what, report.DiskFormat(), img.DiskFormat)
		}
		img.DetectedFormat = report.DiskFormat()
		img.VirtualSize = nil
		s.log.Info("content accepted though it is not its declared format", "image", img.ID, "disk_format", img.DiskFormat, "detected", img.DetectedFormat)
		return nil
	}
	if img.DiskFormat == "" {
		img.DiskFormat = report.DiskFormat()
	}
	vsize := report.VirtualSize
	img.VirtualSize = &vsize
	return nil
}
