package metadefs

import (
	"errors"
	"fmt"

	"github.com/glimpse-project/glimpse/lifecycle"
)

// ErrDuplicate: a namespace, or a record within one, already has that name.
var ErrDuplicate = errors.New("duplicate metadata definition")

// refusal is an error whose text is the message Glance answers with, and
// which wraps the sentinel (lifecycle.ErrNotFound, ErrForbidden,
// ErrInvalid, ErrDuplicate) each face maps to its status.
type refusal struct {
	kind error
	msg  string
}

func (e *refusal) Error() string { return e.msg }
func (e *refusal) Unwrap() error { return e.kind }

func refuse(kind error, format string, args ...any) error {
	return &refusal{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// errNamespaceNotFound tells a missing (or invisible) namespace from a
// missing record within one.
var errNamespaceNotFound = fmt.Errorf("namespace %w", lifecycle.ErrNotFound)

func namespaceNotFound(ns string) error {
	return refuse(errNamespaceNotFound, "Metadata definition namespace=%s was not found.", ns)
}
