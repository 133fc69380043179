package lifecycle

import (
	"context"
	"errors"
	"fmt"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/meta"
)

// Recover settles what a crash left behind. It must run before either face
// serves: every image still saving, uploading or importing is killed (its
// writer died with the old process), incomplete writes in the store are
// aborted, and stored content that no image owns is removed.
func (s *Service) Recover(ctx context.Context) error {
	if err := s.backend.AbortIncomplete(ctx); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	for _, st := range meta.Statuses {
		if !st.InFlight() {
			continue
		}
		ids, err := s.store.InStatus(st)
		if err != nil {
			return fmt.Errorf("recover: %w", err)
		}
		for _, id := range ids {
			_, err := s.store.Update(ctx, id, func(img *meta.Image) error {
				if len(img.Locations) > 0 && img.HashPending {
					return errStale // a location being verified: resumed below
				}
				markKilled(img, "upload interrupted: glimpse stopped before the upload completed")
				return nil
			})
			if errors.Is(err, errStale) {
				continue
			}
			if err != nil {
				return fmt.Errorf("recover image %s: %w", id, err)
			}
			s.log.Warn("killed an upload interrupted by a restart", "image", id, "was", st)
		}
	}
	var orphans []string
	err := s.backend.List(ctx, func(info backend.Info) error {
		img, err := s.store.Get(info.Key)
		if errors.Is(err, meta.ErrNotFound) || err == nil && (!img.Status.HasData() || img.StoreKey != info.Key) {
			orphans = append(orphans, info.Key)
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("recover: list store: %w", err)
	}
	for _, key := range orphans {
		if err := s.backend.Delete(ctx, key); err != nil {
			return fmt.Errorf("recover: remove orphaned content %s: %w", key, err)
		}
		s.log.Warn("removed orphaned content", "key", key)
	}
	// Images whose content stays at a URL own nothing in the store (no
	// StoreKey), so the sweep above never touches them; a hash that a
	// stop interrupted starts again.
	if err := s.resumeHashes(); err != nil {
		return fmt.Errorf("recover: resume hashes of location images: %w", err)
	}
	return nil
}

// Shutdown kills every upload still in progress (their writers will not
// finish) so that nothing is left saving, and stops background hashes of
// location images (they resume at the next start).
func (s *Service) Shutdown(ctx context.Context) {
	s.mu.Lock() // startHash checks bgCtx under mu: no Add after this Wait
	s.bgCancel()
	s.mu.Unlock()
	s.bg.Wait()
	s.mu.Lock()
	live := make([]*Upload, 0, len(s.uploads))
	for _, u := range s.uploads {
		live = append(live, u)
	}
	s.mu.Unlock()
	for _, u := range live {
		u.Abort(ctx, "upload interrupted: glimpse shut down before the upload completed")
	}
}
