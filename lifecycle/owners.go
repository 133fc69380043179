package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/meta"
)

// Several daemons may share one catalogue (an etcd registry). Each image in
// flight records the lease of the daemon doing its work (meta.Image's
// WriterLease); only that daemon touches the work while its lease lives.
// Once the lease is gone (the daemon died, or lost the registry for longer
// than its ttl), any survivor settles the work: it kills an upload (the
// reason in glimpse.error) and removes what the upload left in the store,
// and it takes over the background hash of a location image. Recover does
// this once at startup; the reaper does it while serving.

// orphanedWork says whether img's work in flight belongs to no live daemon.
func (s *Service) orphanedWork(ctx context.Context, img *meta.Image) (bool, error) {
	if !img.Status.InFlight() && !img.HashPending {
		return false, nil
	}
	alive, err := s.store.Alive(ctx, img.WriterLease)
	if err != nil {
		return false, fmt.Errorf("owner of image %s: %w", img.ID, err)
	}
	return !alive, nil
}

// workInFlight returns the images with work in flight (uploads, imports,
// background hashes): with all, every one, found by status (Recover, once:
// work from before leases has none); else those a lease owns, from their
// index (the reaper, often, whatever the catalogue's size).
func (s *Service) workInFlight(all bool) ([]*meta.Image, error) {
	var ids []string
	if all {
		for _, st := range []meta.Status{meta.Saving, meta.Uploading, meta.Importing, meta.Active, meta.Deactivated} {
			got, err := s.store.InStatus(st)
			if err != nil {
				return nil, err
			}
			ids = append(ids, got...)
		}
	} else {
		var err error
		if ids, err = s.store.Working(); err != nil {
			return nil, err
		}
	}
	imgs, err := s.store.GetMany(ids)
	if err != nil {
		return nil, err
	}
	var out []*meta.Image
	for _, img := range imgs {
		if img != nil && (img.Status.InFlight() || img.HashPending) {
			out = append(out, img)
		}
	}
	return out, nil
}

// settleOrphans kills the uploads and takes over the hashes whose daemon is
// gone (looking at all of them, or only those a lease owns: see
// workInFlight), and returns how many uploads it killed.
func (s *Service) settleOrphans(ctx context.Context, all bool, reason string) (int, error) {
	imgs, err := s.workInFlight(all)
	if err != nil {
		return 0, err
	}
	killed := 0
	for _, img := range imgs {
		orphaned, err := s.orphanedWork(ctx, img)
		if err != nil {
			return killed, err
		}
		if !orphaned {
			continue
		}
		lease := img.WriterLease
		settled, err := s.store.Update(ctx, img.ID, func(cur *meta.Image) error {
			if cur.WriterLease != lease || !cur.Status.InFlight() && !cur.HashPending {
				return errStale // someone settled it first
			}
			if len(cur.Locations) > 0 && cur.HashPending {
				cur.WriterLease = s.store.Lease() // ours now: hashed below
				return nil
			}
			markKilled(cur, reason)
			return nil
		})
		if errors.Is(err, errStale) || errors.Is(err, meta.ErrNotFound) {
			continue
		}
		if err != nil {
			return killed, fmt.Errorf("settle image %s: %w", img.ID, err)
		}
		if settled.HashPending {
			s.log.Warn("took over the background hash of a location image whose daemon is gone", "image", img.ID, "lease", fmt.Sprintf("%x", lease))
			s.startHash(settled)
			continue
		}
		killed++
		s.log.Warn("killed an upload whose daemon is gone", "image", img.ID, "was", img.Status, "lease", fmt.Sprintf("%x", lease))
		// The content may have been committed a moment before the daemon
		// died, between the store's commit and the record's.
		for _, key := range []string{img.ID, stageKey(img.ID)} {
			if err := s.backend.Delete(ctx, key); err != nil && !errors.Is(err, backend.ErrNotFound) {
				return killed, fmt.Errorf("remove the content of killed image %s: %w", img.ID, err)
			}
		}
	}
	return killed, nil
}

// liveWrite reports whether an incomplete write under key belongs to an
// upload that a live daemon is doing, so the store's clean-up spares it.
func (s *Service) liveWrite(ctx context.Context) func(key string) bool {
	return func(key string) bool {
		id, _ := strings.CutPrefix(key, "staging-")
		if s.live(id) {
			return true
		}
		img, err := s.store.Get(id)
		if err != nil {
			// Unknown (or unreadable): spared, as a write whose owner
			// cannot be told is not ours to remove.
			return !errors.Is(err, meta.ErrNotFound)
		}
		orphaned, err := s.orphanedWork(ctx, img)
		return err != nil || img.Status.InFlight() && !orphaned
	}
}

// RunReaper settles, every interval until ctx ends, the work of daemons
// whose lease is gone, and removes what their uploads left in the store.
// With one daemon on badger nothing is ever orphaned while it runs.
func (s *Service) RunReaper(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		killed, err := s.settleOrphans(ctx, false, "upload interrupted: the glimpse daemon writing it stopped (its registry lease expired)")
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("settling the work of gone daemons", "err", err)
			}
			continue
		}
		if killed > 0 {
			if err := s.backend.AbortStale(ctx, s.liveWrite(ctx)); err != nil && ctx.Err() == nil {
				s.log.Error("removing the incomplete writes of killed uploads", "err", err)
			}
		}
	}
}
