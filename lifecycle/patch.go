package lifecycle

import (
	"context"
	"fmt"
	"strings"

	"github.com/glimpse-project/glimpse/lifecycle/policy"
	"github.com/glimpse-project/glimpse/meta"
)

// Patch applies ops to image id atomically with Glance's JSON-patch
// semantics (media type openstack-images-v2.1-json-patch), which are
// stricter than Update's: "replace" of a custom property the image does
// not have fails with ErrNoProperty, as does "remove" of one; "add" sets a
// property whether or not it exists; admins may change the owner (Glance
// lets no one else: "Owner can't be updated by non admin.").
func (s *Service) Patch(ctx context.Context, p Principal, id string, ops []Op) (*meta.Image, error) {
	return s.modify(ctx, p, id, policy.ModifyImage, func(img *meta.Image) error {
		may := s.auth.grants(p, ImageTarget(p, img))
		for _, op := range ops {
			if op.Key == "owner" {
				if err := setOwner(img, op, s.auth.IsAdmin(p)); err != nil {
					return err
				}
				continue
			}
			if op.Op == "replace" && !IsBaseKey(op.Key) && !readOnlyOrReserved(op.Key) {
				if _, ok := img.Properties[op.Key]; !ok {
					return fmt.Errorf("%w: property %s does not exist", ErrNoProperty, op.Key)
				}
			}
			if err := apply(img, op, may); err != nil {
				return err
			}
		}
		return nil
	})
}

func readOnlyOrReserved(key string) bool {
	return readOnlyKeys[key] || reservedKeys[key] || strings.HasPrefix(key, glimpsePrefix) || strings.HasPrefix(key, reservedKeyPrefix)
}

// AddTag adds tag to image id; adding a tag the image has succeeds.
func (s *Service) AddTag(ctx context.Context, p Principal, id, tag string) (*meta.Image, error) {
	return s.modify(ctx, p, id, policy.ModifyImage, func(img *meta.Image) error {
		return apply(img, Op{Op: "replace", Key: "tags", Value: append(append([]string(nil), img.Tags...), tag)}, s.auth.grants(p, ImageTarget(p, img)))
	})
}

// RemoveTag removes tag from image id; a tag the image lacks is
// ErrNoProperty.
func (s *Service) RemoveTag(ctx context.Context, p Principal, id, tag string) (*meta.Image, error) {
	return s.modify(ctx, p, id, policy.ModifyImage, func(img *meta.Image) error {
		tags := []string{}
		found := false
		for _, t := range img.Tags {
			if t == tag {
				found = true
				continue
			}
			tags = append(tags, t)
		}
		if !found {
			return fmt.Errorf("%w: tag %s not found", ErrNoProperty, tag)
		}
		img.Tags = tags
		return nil
	})
}
