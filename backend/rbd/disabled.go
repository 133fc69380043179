//go:build !ceph

package rbd

import (
	"context"
	"errors"

	"github.com/glimpse-project/glimpse/backend"
)

// Enabled says whether this binary was built with RBD support.
const Enabled = false

// ErrDisabled is what Open returns in a build without the ceph tag.
var ErrDisabled = errors.New("this glimpse was built without Ceph RBD support (build with -tags ceph,pacific)")

// RBD stands in for the store in builds without the ceph tag; Open never
// returns one.
type RBD struct{ backend.Backend }

// Open fails: this build has no RBD support.
func Open(ctx context.Context, cfg Config) (*RBD, error) {
	return nil, ErrDisabled
}
