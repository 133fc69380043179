package lifecycle

import (
	"context"
	"fmt"

	"github.com/glimpse-project/glimpse/meta"
)

// Move renames image id and/or moves it between statuses (the mount's
// rename): within a status, active to deactivated and back (admins only).
// Any other move is ErrIllegalMove.
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
	return s.modify(ctx, p, id, func(img *meta.Image) error {
		if was != nil && (img.Name != was.name || img.Status != was.status) {
			return fmt.Errorf("%w: image %s is no longer %s/%s", ErrNotFound, id, was.status, was.name)
		}
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
// listable name, sorted by name; images sharing a name are adjacent.
func (s *Service) Entries(ctx context.Context, p Principal, st meta.Status, fn func(meta.Entry) error) error {
	return s.store.Names(st, func(e meta.Entry) error {
		if !p.Admin && !s.visible(p, e.ID) {
			return nil
		}
		return fn(e)
	})
}

// Named returns the ids of the images p may see in status st named name.
func (s *Service) Named(ctx context.Context, p Principal, st meta.Status, name string) ([]string, error) {
	ids, err := s.store.Named(st, name)
	if err != nil || p.Admin {
		return ids, err
	}
	var out []string
	for _, id := range ids {
		if s.visible(p, id) {
			out = append(out, id)
		}
	}
	return out, nil
}

// All calls fn for every image p may see, in id order.
func (s *Service) All(ctx context.Context, p Principal, fn func(*meta.Image) error) error {
	return s.store.All(func(img *meta.Image) error {
		if !CanSee(p, img) {
			return nil
		}
		return fn(img)
	})
}

func (s *Service) visible(p Principal, id string) bool {
	img, err := s.store.Get(id)
	return err == nil && CanSee(p, img)
}
