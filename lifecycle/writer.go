package lifecycle

import (
	"context"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// The rules for content written through a file (the mount), beside what
// Upload does for any writer: what a writer's death means.

// WriterKilled settles an upload whose writer was killed by sig before it
// closed the file (Ctrl-C on cp, a kill -9): what arrived is a prefix of
// what it meant to write, whatever its length, so the image is killed with
// the reason and the content removed. A writer that exits without closing
// the file, but not by a signal, is not a death: its files are closed for
// it, and the upload is committed as at close.
func (u *Upload) WriterKilled(ctx context.Context, sig syscall.Signal) error {
	reason := fmt.Sprintf("upload interrupted: the writer was killed by %s before it closed the file", unix.SignalName(sig))
	u.Abort(ctx, reason)
	return fmt.Errorf("image %s: %w by %s", u.id, ErrWriterKilled, unix.SignalName(sig))
}

// CreatorExited settles an upload that its creator closed with nothing in
// it and could reopen to write (touch, a cp of an empty file, qemu-img,
// which creates, truncates, closes and reopens), once the creator has
// exited: a success commits what was written, as any upload (an empty
// image for touch); a failure (cp --reflink=always that could not clone,
// a qemu-img that gave up) leaves nothing, the image deleted with what was
// written.
func (u *Upload) CreatorExited(ctx context.Context, p Principal, succeeded bool) error {
	if succeeded {
		_, err := u.Commit(ctx)
		return err
	}
	u.s.log.Info("creator of an upload failed before writing it through; removing the image", "image", u.id)
	return u.s.Delete(ctx, p, u.id)
}
