package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/meta"
)

// The lifecycle's errors. Each face maps them once, at its boundary: the
// mount to an errno, the REST listener to Glance's status code.
var (
	// ErrNotFound: no such image, or one the caller may not see.
	ErrNotFound = meta.ErrNotFound
	// ErrNoMember: the image has no such member, or none the caller may
	// see.
	ErrNoMember = meta.ErrNoMember
	// ErrMemberExists: the project is already a member of the image.
	ErrMemberExists = meta.ErrMemberExists
	// ErrForbidden: the caller may see the image but not do this to it.
	ErrForbidden = errors.New("forbidden")
	// ErrReadOnly: the property cannot be changed or removed by anyone.
	ErrReadOnly = errors.New("read-only property")
	// ErrProtected: the image is protected and cannot be deleted.
	ErrProtected = errors.New("image is protected")
	// ErrInvalid: a value or name is malformed or out of range.
	ErrInvalid = errors.New("invalid value")
	// ErrConflict: the image's status does not allow the operation.
	ErrConflict = errors.New("conflict with image status")
	// ErrTooLarge: the upload exceeds the size cap.
	ErrTooLarge = errors.New("image exceeds the size limit")
	// ErrRecordTooLarge: the image's properties, tags and locations
	// together exceed what the registry keeps for one image
	// (meta.MaxRecordBytes).
	ErrRecordTooLarge = meta.ErrRecordTooLarge
	// ErrOverQuota: the project would exceed its quota (images, uploads
	// in flight or bytes), or the image its member limit.
	ErrOverQuota = errors.New("over quota")
	// ErrUploadClosed: the upload was already committed or aborted.
	ErrUploadClosed = errors.New("upload already finished")
	// ErrWriterKilled: the process writing content through a file was
	// killed before it closed it; the upload is killed.
	ErrWriterKilled = errors.New("upload writer killed")
	// ErrNoProperty: the custom property to remove does not exist.
	ErrNoProperty = errors.New("no such property")
	// ErrStoreFull: the store has no room for the content (a full disk,
	// a quota). The upload is killed; a smaller one may still fit.
	ErrStoreFull = errors.New("image storage media is full")
	// ErrStoreUnavailable: the store failed to do its part (unreachable,
	// stalled past the store timeout, or failing), or the content lives
	// at an HTTP location that cannot be reached now: nothing is wrong
	// with the request, and the same request may succeed once the store
	// is back.
	ErrStoreUnavailable = errors.New("image store unavailable")
	// ErrRegistryUnavailable: the registry cannot be reached now (see
	// meta.ErrUnavailable): nothing is wrong with the request.
	ErrRegistryUnavailable = meta.ErrUnavailable
)

// storeError classifies an error that came from the store, so that each
// face can tell a full store and an unavailable one from its own errors.
// A missing object and a caller that went away keep their meaning.
func storeError(err error) error {
	switch {
	case err == nil,
		errors.Is(err, ErrStoreFull),
		errors.Is(err, ErrStoreUnavailable),
		errors.Is(err, backend.ErrNotFound),
		errors.Is(err, context.Canceled):
		return err
	case isDiskFull(err):
		return fmt.Errorf("%w: %w", ErrStoreFull, err)
	}
	return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
}

// isDiskFull: the filesystem under a store (or the staging area) has no
// room left.
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG)
}
