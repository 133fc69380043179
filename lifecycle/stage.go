package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/glimpse-project/glimpse/lifecycle/policy"
	"github.com/glimpse-project/glimpse/meta"
)

// stageKey names the staged content of image id in the store (Glance's
// node_staging_uri). The staged image records it as its StoreKey, so that
// Delete removes it and Recover treats it as an orphan after a crash.
func stageKey(id string) string { return "staging-" + id }

// Stage is the first half of Glance's glance-direct import: it stores r's
// bytes beside queued image id and moves the image to uploading. The image
// stays without content until Import.
func (s *Service) Stage(ctx context.Context, p Principal, id string, r io.Reader) (*meta.Image, error) {
	begin := func() (*meta.Image, error) {
		return s.modify(ctx, p, id, policy.ModifyImage, func(img *meta.Image) error {
			if img.Status != meta.Queued {
				return fmt.Errorf("%w: image %s is %s; only a queued image can be staged", ErrConflict, id, img.Status)
			}
			img.Status = meta.Uploading
			return nil
		})
	}
	var stored int64 = -1
	var staging *meta.Image
	var err error
	if s.quota.Uploading > 0 || s.quota.Bytes > 0 {
		staging, err = s.withUploadQuota(ctx, p, id, &stored, begin)
	} else {
		_, err = begin()
	}
	if err != nil {
		return nil, err
	}
	allowance := int64(-1)
	if stored >= 0 {
		// Staged bytes are checked against what was free when staging
		// started, and again, with everything, at import.
		allowance = s.quota.Bytes - stored - s.liveBytes(staging.Owner, id)
	}
	size, err := s.writeStaged(ctx, id, r, allowance)
	if err != nil {
		if derr := s.backend.Delete(context.WithoutCancel(ctx), stageKey(id)); derr != nil {
			s.log.Error("remove a failed stage; the next start removes it", "image", id, "err", derr)
		}
		_, uerr := s.store.Update(ctx, id, func(img *meta.Image) error {
			if img.Status == meta.Uploading {
				img.Status = meta.Queued
			}
			return nil
		})
		if uerr != nil && !errors.Is(uerr, meta.ErrNotFound) {
			s.log.Error("return a failed stage to queued; the next start kills it", "image", id, "err", uerr)
		}
		return nil, err
	}
	img, err := s.store.Update(ctx, id, func(img *meta.Image) error {
		if img.Status != meta.Uploading {
			return fmt.Errorf("%w: image %s changed to %s while being staged", ErrConflict, id, img.Status)
		}
		img.StoreKey = stageKey(id)
		img.Size = &size
		return nil
	})
	if err != nil {
		// Deleted (or changed) meanwhile: the staged bytes belong to nobody.
		if derr := s.backend.Delete(context.WithoutCancel(ctx), stageKey(id)); derr != nil {
			s.log.Error("remove an orphaned stage; the next start removes it", "image", id, "err", derr)
		}
	}
	return img, err
}

// writeStaged stores r as the staged content of image id, at most the
// size cap and allowance (the quota's bytes left; -1: none).
func (s *Service) writeStaged(ctx context.Context, id string, r io.Reader, allowance int64) (int64, error) {
	w, err := s.backend.Create(ctx, stageKey(id))
	if err != nil {
		return 0, fmt.Errorf("stage image %s: %w", id, err)
	}
	limit := s.maxSize
	if allowance >= 0 && (limit == 0 || allowance < limit) {
		limit = allowance
	}
	var src io.Reader = r
	if limit > 0 {
		src = io.LimitReader(r, limit+1)
	}
	n, err := io.CopyBuffer(w, src, make([]byte, 1<<20))
	if err != nil {
		// The copy fails on either side: only a full disk is the
		// staging area's fault; anything else is the reader's.
		if isDiskFull(err) {
			err = fmt.Errorf("%w: write staged data: %w", ErrStoreFull, err)
		} else {
			err = fmt.Errorf("write staged data: %w", err)
		}
	} else if s.maxSize > 0 && n > s.maxSize {
		err = fmt.Errorf("%w of %d bytes", ErrTooLarge, s.maxSize)
	} else if allowance >= 0 && n > allowance {
		err = storageFull(n, allowance)
	}
	if err != nil {
		w.Abort(context.WithoutCancel(ctx))
		return 0, fmt.Errorf("stage image %s: %w", id, err)
	}
	if err := w.Commit(ctx); err != nil {
		return 0, fmt.Errorf("stage image %s: %w", id, err)
	}
	return n, nil
}

// ImportStaged is the second half of glance-direct: the staged content
// goes through the same upload pipeline as a direct upload (hashes,
// inspection) and the image becomes active, or killed with the reason.
func (s *Service) ImportStaged(ctx context.Context, p Principal, id string) (*meta.Image, error) {
	up, err := s.beginImport(ctx, p, id, meta.Uploading)
	if err != nil {
		return nil, err
	}
	key := stageKey(id)
	defer s.backend.Delete(context.WithoutCancel(ctx), key)
	rd, err := s.backend.Open(ctx, key)
	if err != nil {
		up.Abort(ctx, fmt.Sprintf("staged data is gone: %v", err))
		return nil, fmt.Errorf("import image %s: %w", id, err)
	}
	defer rd.Close()
	if _, err := io.CopyBuffer(up, io.NewSectionReader(rd, 0, rd.Size()), make([]byte, 1<<20)); err != nil {
		up.Abort(ctx, fmt.Sprintf("import of staged data failed: %v", err))
		return nil, err
	}
	return up.Commit(ctx)
}

// BeginImport moves queued image id to importing (web-download) and opens
// its content for writing, as BeginUpload does for direct uploads.
func (s *Service) BeginImport(ctx context.Context, p Principal, id string) (*Upload, error) {
	return s.beginImport(ctx, p, id, meta.Queued)
}

// CheckImport reports whether image id may be imported from status from:
// it must exist for p, be modifiable, be in status from, and have both
// formats set.
func (s *Service) CheckImport(ctx context.Context, p Principal, id string, from meta.Status) error {
	img, err := s.Get(ctx, p, id)
	if err != nil {
		return err
	}
	return s.checkImport(p, img, from)
}

// checkImport: Glance's import asks modify_image (copy-image, which
// glimpse does not offer, would ask copy_image).
func (s *Service) checkImport(p Principal, img *meta.Image, from meta.Status) error {
	if err := s.auth.mayDo(p, policy.ModifyImage, img); err != nil {
		return err
	}
	if img.Status != from {
		if from == meta.Uploading {
			return fmt.Errorf("%w: image %s needs to be staged before 'glance-direct' method can be used", ErrConflict, img.ID)
		}
		return fmt.Errorf("%w: image %s is %s, not %s", ErrConflict, img.ID, img.Status, from)
	}
	if img.DiskFormat == "" || img.ContainerFormat == "" {
		return fmt.Errorf("%w: image %s needs disk_format and container_format before import", ErrConflict, img.ID)
	}
	return nil
}

func (s *Service) beginImport(ctx context.Context, p Principal, id string, from meta.Status) (*Upload, error) {
	var stored int64 = -1
	begin := func() (*meta.Image, error) { return s.moveToImporting(ctx, p, id, from) }
	var img *meta.Image
	var err error
	if s.quota.Uploading > 0 || s.quota.Bytes > 0 {
		img, err = s.withUploadQuota(ctx, p, id, &stored, begin)
	} else {
		img, err = begin()
	}
	if err != nil {
		return nil, err
	}
	return s.startUpload(ctx, img, "import", stored)
}

func (s *Service) moveToImporting(ctx context.Context, p Principal, id string, from meta.Status) (*meta.Image, error) {
	return s.store.Update(ctx, id, func(img *meta.Image) error {
		if !s.sees(p, img) {
			return ErrNotFound
		}
		if err := s.checkImport(p, img, from); err != nil {
			return err
		}
		img.Status = meta.Importing
		img.StoreKey = ""
		img.Size = nil
		return nil
	})
}
