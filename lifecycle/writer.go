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
