package lifecycle

import (
	"context"
	"fmt"

	"github.com/glimpse-project/glimpse/lifecycle/policy"
	"github.com/glimpse-project/glimpse/meta"
)

// Move renames image id and moves it to status to in one step, as a rename
// between the mount's status directories does: staying in the same status
// only renames (modify_image); active to deactivated deactivates and back
// reactivates (the rules deactivate and reactivate: admins and the owner's
// members by default, as in Glance); any other move is refused with an
// error wrapping meta.ErrIllegalMove and changes nothing.
func (s *Service) Move(ctx context.Context, p Principal, id, name string, to meta.Status) (*meta.Image, error) {
	return s.move(ctx, p, id, nil, name, to)
}

// MoveFrom is Move on the condition that the image still has the name
// and status it was found under when the change commits, else
// ErrNotFound: the rename of a path, so that of two daemons renaming the
// same file at once exactly one wins, as of two rename(2) calls on one
// filesystem.
func (s *Service) MoveFrom(ctx context.Context, p Principal, id, wasName string, wasStatus meta.Status, name string, to meta.Status) (*meta.Image, error) {
	return s.move(ctx, p, id, &pathOf{wasName, wasStatus}, name, to)
}

// pathOf is where the mount found an image.
type pathOf struct {
	name   string
	status meta.Status
}

func (s *Service) move(ctx context.Context, p Principal, id string, was *pathOf, name string, to meta.Status) (*meta.Image, error) {
	return s.store.Update(ctx, id, func(img *meta.Image) error {
		if !s.sees(p, img) {
			return ErrNotFound
		}
		if was != nil && (img.Name != was.name || img.Status != was.status) {
			return fmt.Errorf("%w: image %s is no longer %s/%s", ErrNotFound, id, was.status, was.name)
		}
		from := img.Status
		switch {
		case from == to:
			if err := s.auth.mayDo(p, policy.ModifyImage, img); err != nil {
				return err
			}
		case from == meta.Active && to == meta.Deactivated, from == meta.Deactivated && to == meta.Active:
			rule := policy.Deactivate
			if to == meta.Active {
				rule = policy.Reactivate
			}
			if err := s.auth.mayDo(p, rule, img); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: %s to %s", meta.ErrIllegalMove, from, to)
		}
		if name != img.Name {
			if from != to {
				if err := s.auth.mayDo(p, policy.ModifyImage, img); err != nil {
					return err
				}
			}
			if err := apply(img, Op{Op: "replace", Key: "name", Value: name}, s.auth.grants(p, ImageTarget(p, img))); err != nil {
				return err
			}
		}
		img.Status = to
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
		if !l.v.seesAll && !s.listed(l, e.ID) {
			return nil
		}
		return fn(e)
	})
}

// Named returns the ids of the images p may see in status st named name
// (those that Entries lists).
func (s *Service) Named(ctx context.Context, p Principal, st meta.Status, name string) ([]string, error) {
	ids, err := s.store.Named(st, name)
	v := s.auth.viewer(p)
	if err != nil || v.seesAll {
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
