package lifecycle

import (
	"errors"

	"github.com/glimpse-project/glimpse/meta"
)

// The lifecycle's errors. Each face maps them once, at its boundary: the
// mount to an errno, the REST listener to Glance's status code.
var (
	// ErrNotFound: no such image, or one the caller may not see.
	ErrNotFound = meta.ErrNotFound
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
	// ErrUploadClosed: the upload was already committed or aborted.
	ErrUploadClosed = errors.New("upload already finished")
	// ErrNoProperty: the custom property to remove does not exist.
	ErrNoProperty = errors.New("no such property")
	// ErrUnavailable: the content lives elsewhere (an HTTP location)
	// and cannot be reached now.
	ErrUnavailable = errors.New("image content unavailable")
)
