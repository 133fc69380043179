package fs

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// hungMountWait is how long the mount point may take to answer stat(2)
// before a FUSE mount on it is taken for hung.
const hungMountWait = 5 * time.Second

// fusectlDir is where the kernel's fusectl filesystem shows each FUSE
// connection, named by the mount's minor device number.
const fusectlDir = "/sys/fs/fuse/connections"

// recoverStaleMount detaches a FUSE mount whose daemon died. Usually the
// mount point then fails with ENOTCONN. But a daemon killed while one of
// its threads waited in the kernel (a cache invalidation waiting for a
// directory lock) leaves a connection nobody aborts: every operation on
// the mount, stat(2) included, hangs. Such a mount, if it is a FUSE one, is
// aborted through fusectl first.
func recoverStaleMount(dir string, log *slog.Logger) error {
	stat := make(chan error, 1)
	go func() { // blocks for as long as a hung mount does
		_, err := os.Stat(dir)
		stat <- err
	}()
	select {
	case err := <-stat:
		if err == nil || !errors.Is(err, syscall.ENOTCONN) {
			return nil
		}
	case <-time.After(hungMountWait):
		minor, ok, err := fuseMountMinor(dir)
		if err != nil || !ok {
			return fmt.Errorf("%s does not answer, and is not a FUSE mount glimpse can abort: %v", dir, err)
		}
		log.Warn("the mount point does not answer: aborting the FUSE connection left on it", "dir", dir, "connection", minor)
		if err := abortFuseConnection(minor); err != nil {
			return fmt.Errorf("abort the hung mount on %s: %w", dir, err)
		}
		if err := <-stat; err == nil {
			return nil // it answered after all
		}
	}
	if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the stale mount on %s: %w", dir, err)
	}
	return nil
}

// fuseMountMinor finds the FUSE mount on dir in /proc/self/mountinfo (read
// without touching the mount) and returns its minor device number.
func fuseMountMinor(dir string) (string, bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", false, err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	var minor string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source super
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) || unescapeMountinfo(fields[4]) != abs {
			continue
		}
		fstype := fields[sep+1]
		if fstype != "fuse" && !strings.HasPrefix(fstype, "fuse.") {
			minor = "" // a later mount on top hides it
			continue
		}
		_, m, ok := strings.Cut(fields[2], ":")
		if ok {
			minor = m // the last one listed is the one on top
		}
	}
	if err := sc.Err(); err != nil {
		return "", false, err
	}
	return minor, minor != "", nil
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of a path
// in /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// abortFuseConnection aborts FUSE connection minor through fusectl,
// mounting fusectl if the system has not.
func abortFuseConnection(minor string) error {
	abort := filepath.Join(fusectlDir, minor, "abort")
	if _, err := os.Stat(abort); errors.Is(err, os.ErrNotExist) {
		if err := syscall.Mount("fusectl", fusectlDir, "fusectl", 0, ""); err != nil && !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("mount fusectl on %s: %w", fusectlDir, err)
		}
	}
	return os.WriteFile(abort, []byte("1"), 0)
}
