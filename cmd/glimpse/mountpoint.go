package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// checkMountPoint says, in words, why a daemon run as uid cannot mount on
// dir, before the kernel or fusermount3 says it in theirs ("mkdir
// /mnt/glimpse: permission denied", "fusermount exited with code 256").
// Root mounts directly and may use any directory; anyone else goes through
// fusermount3, which needs write access to the mount point.
func checkMountPoint(dir string, uid int) error {
	if uid == 0 {
		return nil
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		if _, err2 := exec.LookPath("fusermount"); err2 != nil {
			return fmt.Errorf("--mount %s: mounting as a user other than root needs fusermount3, which is not installed (Debian: apt install fuse3); or run as root, or serve REST only with --mount ''", dir)
		}
	}
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		parent := filepath.Dir(dir)
		if unix.Access(parent, unix.W_OK|unix.X_OK) != nil {
			return fmt.Errorf("--mount %s does not exist and uid %d may not create it in %s: create it for this user first (sudo install -d -o %d %s), or choose a directory of your own (--mount ~/glimpse)", dir, uid, parent, uid, dir)
		}
		return nil
	case errors.Is(err, syscall.ENOTCONN):
		return fmt.Errorf("--mount %s: a stale mount of a daemon that stopped is still there: detach it with fusermount3 -u %s", dir, dir)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("--mount %s: uid %d may not look into it (another user's glimpse may be mounted there): choose another --mount", dir, uid)
	case err != nil:
		return fmt.Errorf("--mount %s: %w", dir, err)
	case !st.IsDir():
		return fmt.Errorf("--mount %s is not a directory", dir)
	}
	if unix.Access(dir, unix.W_OK) != nil {
		return fmt.Errorf("--mount %s is not writable by uid %d, and fusermount3 mounts only on a directory its user may write: give it to this user (sudo chown %d %s), or choose a directory of your own (--mount ~/glimpse)", dir, uid, uid, dir)
	}
	return nil
}
