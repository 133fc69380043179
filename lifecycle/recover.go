package lifecycle

import (
	"context"
	"errors"
	"fmt"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/meta"
)

// Recover settles what a crash left behind. It must run before either face
// serves, once the Store has joined the catalogue (meta.Store.Join): every
// image saving, uploading or importing whose daemon is gone is killed (its
// writer died with that process; on badger, that is every one), the
// incomplete writes in the store that no live upload owns are aborted, and
// stored content that no image owns is removed. The work of other live
// daemons sharing the catalogue is left alone.
func (s *Service) Recover(ctx context.Context) error {
	if _, err := s.settleOrphans(ctx, true, "upload interrupted: glimpse stopped before the upload completed"); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	if err := s.backend.AbortStale(ctx, s.liveWrite(ctx)); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	var orphans []string
	err := s.backend.List(ctx, func(info backend.Info) error {
		img, err := s.store.Get(info.Key)
		if errors.Is(err, meta.ErrNotFound) {
			orphans = append(orphans, info.Key)
			return nil
		}
		if err != nil {
			return err
		}
		if img.Status.HasData() && img.StoreKey == info.Key {
			return nil
		}
		// Content committed by a live daemon's upload a moment before
		// its record is: that daemon's.
		if orphaned, err := s.orphanedWork(ctx, img); err != nil || img.Status.InFlight() && !orphaned {
			return err
		}
		orphans = append(orphans, info.Key)
		return nil
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
