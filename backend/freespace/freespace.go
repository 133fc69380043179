// Package freespace keeps a reserve of free space on a filesystem that
// stores share with the registry: badger writes through memory-mapped
// files, and a page it touches on a full filesystem is a SIGBUS that
// kills the whole daemon, so uploads must never take the last of it.
package freespace

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Check fails with an error wrapping ENOSPC when writing n more bytes
// into dir would leave less than reserve bytes free on its filesystem (to
// unprivileged writers: f_bavail). A reserve of 0 or less checks nothing.
// Concurrent writers may each pass and overshoot by one write, which the
// reserve absorbs.
func Check(dir string, reserve, n int64) error {
	if reserve <= 0 {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	if free := int64(st.Bavail) * st.Bsize; free-n < reserve {
		return fmt.Errorf("%d bytes free, %d kept for the registry: %w", free, reserve, syscall.ENOSPC)
	}
	return nil
}
