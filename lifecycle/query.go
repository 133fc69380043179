package lifecycle

import (
	"context"
	"fmt"

	"github.com/glimpse-project/glimpse/meta"
)

// Move renames image id and moves it to status to in one step, as a rename
// between the mount's status directories does: staying in the same status
// only renames; active to deactivated deactivates and back reactivates
// (admins only, as in Glance); any other move is refused with an error
// wrapping meta.ErrIllegalMove and changes nothing.
func (s *Service) Move(ctx context.Context, p Principal, id, name string, to meta.Status) (*meta.Image, error) {
	return s.modify(ctx, p, id, func(img *meta.Image) error {
		from := img.Status
		switch {
		case from == to:
		case from == meta.Active && to == meta.Deactivated, from == meta.Deactivated && to == meta.Active:
			if !p.Admin {
				return fmt.Errorf("%w: only admins may move image %s to %s", ErrForbidden, id, to)
			}
			img.Status = to
		default:
			return fmt.Errorf("%w: %s to %s", meta.ErrIllegalMove, from, to)
		}
		if name != img.Name {
			return apply(img, Op{Op: "replace", Key: "name", Value: name}, p.Admin)
		}
		return nil
	})
}

// Entries calls fn for every image p may see in status st that has a
// listable name, sorted by name; images sharing a name are adjacent. As in
// p's image list, the images shared with p are there once p accepted them.
func (s *Service) Entries(ctx context.Context, p Principal, st meta.Status, fn func(meta.Entry) error) error {
	l, err := s.listing(p, "")
	if err != nil {
		return err
	}
	return s.store.Names(st, func(e meta.Entry) error {
		if !p.Admin && !s.listed(l, e.ID) {
			return nil
		}
		return fn(e)
	})
}

// Named returns the ids of the images p may see in status st named name
// (those that Entries lists).
func (s *Service) Named(ctx context.Context, p Principal, st meta.Status, name string) ([]string, error) {
	ids, err := s.store.Named(st, name)
	if err != nil || p.Admin {
		return ids, err
	}
	l, err := s.listing(p, "")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, id := range ids {
		if s.listed(l, id) {
			out = append(out, id)
		}
	}
	return out, nil
}

// All calls fn for every image in p's listings, in id order: those p sees
// without membership and the shared ones p accepted.
func (s *Service) All(ctx context.Context, p Principal, fn func(*meta.Image) error) error {
	l, err := s.listing(p, "")
	if err != nil {
		return err
	}
	return s.store.All(func(img *meta.Image) error {
		if !l.includes(img) {
			return nil
		}
		return fn(img)
	})
}

func (s *Service) listed(l listing, id string) bool {
	img, err := s.store.Get(id)
	return err == nil && l.includes(img)
}
