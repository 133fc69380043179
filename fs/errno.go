package fs

import (
	"context"
	"errors"
	"log/slog"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
)

// toErrno maps an error from the lifecycle to the errno a FUSE call
// returns. It is the one place where that happens: our sentinels first
// (go-fuse's ToErrno does not unwrap %w), then plain OS errors, and EIO,
// logged, for anything unexpected.
func toErrno(log *slog.Logger, op string, err error) syscall.Errno {
	var errno syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.Is(err, lifecycle.ErrStoreFull):
		return syscall.ENOSPC
	case errors.Is(err, lifecycle.ErrStoreUnavailable), errors.Is(err, lifecycle.ErrRegistryUnavailable):
		// Not the errno of the store's client (ECONNREFUSED, ETIMEDOUT),
		// which would say the file itself refused or timed out; the same
		// for content at an HTTP location that does not answer, and for
		// a registry without a quorum.
		log.Warn("store or registry unavailable", "op", op, "err", err)
		return syscall.EIO
	case errors.As(err, &errno):
		return errno
	case errors.Is(err, lifecycle.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, lifecycle.ErrForbidden),
		errors.Is(err, lifecycle.ErrReadOnly),
		errors.Is(err, lifecycle.ErrProtected),
		errors.Is(err, meta.ErrIllegalMove):
		return syscall.EPERM
	case errors.Is(err, lifecycle.ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, lifecycle.ErrUnreadableDisk):
		// The content is stored, but not as a disk our readers can
		// follow: an I/O error on the raw view, as a bad sector is.
		log.Warn("virtual disk unreadable", "op", op, "err", err)
		return syscall.EIO
	case errors.Is(err, lifecycle.ErrConflict):
		return syscall.EBUSY
	case errors.Is(err, lifecycle.ErrTooLarge):
		return syscall.EFBIG
	case errors.Is(err, lifecycle.ErrRecordTooLarge):
		// What a filesystem answers when an inode's attributes are full.
		return syscall.ENOSPC
	case errors.Is(err, lifecycle.ErrOverQuota), errors.Is(err, lifecycle.ErrStoreFull):
		// Out of quota or out of store space: what a full filesystem
		// answers. (EDQUOT would name the quota, but the project's quota
		// is the whole room this filesystem has for it.)
		return syscall.ENOSPC
	case errors.Is(err, lifecycle.ErrNoProperty):
		return syscall.ENODATA
	case errors.Is(err, lifecycle.ErrUploadClosed):
		return syscall.EBADF
	case errors.Is(err, context.Canceled), errors.Is(err, lifecycle.ErrWriterKilled):
		// The caller is gone or going: nobody reads the errno.
		return syscall.EINTR
	}
	if e := gofs.ToErrno(err); e != syscall.ENOSYS {
		return e
	}
	log.Error("fuse operation failed", "op", op, "err", err)
	return syscall.EIO
}

// isForbidden: on open, a forbidden read (deactivated content) is EACCES,
// the errno a reader expects for "you may not read this".
func isForbidden(err error) bool { return errors.Is(err, lifecycle.ErrForbidden) }

// isStoreFull: the store has no room left for the content.
func isStoreFull(err error) bool { return errors.Is(err, lifecycle.ErrStoreFull) }

// isTooLarge: over a limit (the size cap; for setxattr, the property
// count, which is ENOSPC as on any filesystem out of xattr space).
func isTooLarge(err error) bool { return errors.Is(err, lifecycle.ErrTooLarge) }

// isOutOfSpace: over the project's quota or the store is full; close(2)
// fails with ENOSPC, as on a full filesystem.
func isOutOfSpace(err error) bool {
	return errors.Is(err, lifecycle.ErrOverQuota) || errors.Is(err, lifecycle.ErrStoreFull)
}
