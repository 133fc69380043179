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
		if err == nil {
			if minor, ok, _ := fuseMountMinor(dir); ok {
				// It answers: a daemon serves it. Taking a mount point
				// over is only for a dead daemon's mount.
				return fmt.Errorf("%s is already mounted and served by a running FUSE daemon (connection %s): stop it, or choose another --mount", dir, minor)
			}
			return nil
		}
		if !errors.Is(err, syscall.ENOTCONN) {
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

// A daemon killed while a thread of it waited in the kernel can leave its
// FUSE connection alive after everything else of it is gone, and a lazy
// unmount (systemd's stop, an operator's umount -l) hides that connection
// from mountinfo while the clients inside it hang. To find it again, a
// mount records its connection, by mount point, in connRecordDir: the
// next daemon on that mount point, and glimpse abort-mount, abort the
// recorded connection of a daemon that no longer serves.

// connRecordDir holds one record per mount point: the fusectl connection
// (the mount's minor device number) and the daemon's pid.
func connRecordDir() string {
	if os.Geteuid() == 0 {
		return "/run/glimpse"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "glimpse")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("glimpse-%d", os.Geteuid()))
}

// ConnRecord is where the connection of the mount on dir is recorded:
// the absolute path, with "/" as "_" and "_" as "__".
func ConnRecord(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	name := strings.ReplaceAll(strings.ReplaceAll(strings.TrimPrefix(abs, "/"), "_", "__"), "/", "_")
	return filepath.Join(connRecordDir(), name+".conn"), nil
}

// recordConnection notes the connection of this process's mount on dir.
func recordConnection(dir string) error {
	minor, ok, err := fuseMountMinor(dir)
	if err != nil || !ok {
		return fmt.Errorf("find the FUSE connection of %s: %v", dir, err)
	}
	path, err := ConnRecord(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, fmt.Appendf(nil, "%s %d\n", minor, os.Getpid()), 0o600)
}

// forgetConnection removes the record of dir's mount after a clean unmount.
func forgetConnection(dir string) {
	if path, err := ConnRecord(dir); err == nil {
		os.Remove(path)
	}
}

// AbortDeadConnection aborts the FUSE connection recorded for dir when
// the daemon that made it no longer serves (it is gone, a zombie, or
// stopped) and the connection is not mounted anywhere else, visible or
// not; then it detaches what is left on dir. It does nothing to a
// serving daemon. It reports whether it aborted a connection.
func AbortDeadConnection(dir string, log *slog.Logger) (bool, error) {
	path, err := ConnRecord(dir)
	if err != nil {
		return false, err
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var minor string
	var pid int
	if n, _ := fmt.Sscanf(string(raw), "%s %d", &minor, &pid); n != 2 || strings.ContainsAny(minor, "/.") {
		os.Remove(path)
		return false, nil
	}
	if pid == os.Getpid() || processServes(pid) {
		return false, nil
	}
	if _, err := os.Stat(filepath.Join(fusectlDir, minor)); errors.Is(err, os.ErrNotExist) {
		os.Remove(path) // the connection ended with its daemon
		return false, nil
	}
	if elsewhere, err := mountedElsewhere(minor, dir); err != nil || elsewhere {
		// The number now belongs to another mount.
		os.Remove(path)
		return false, err
	}
	log.Warn("aborting the FUSE connection a dead daemon left on the mount point", "dir", dir, "connection", minor, "pid", pid)
	if err := abortFuseConnection(minor); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("abort the dead daemon's FUSE connection %s on %s: %w", minor, dir, err)
	}
	os.Remove(path)
	if m, ok, _ := fuseMountMinor(dir); ok && m == minor {
		syscall.Unmount(dir, syscall.MNT_DETACH)
	}
	return true, nil
}

// processServes reports whether pid is a process that may still answer
// FUSE requests: it exists and is neither a zombie nor stopped.
func processServes(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	switch stat[i+2] {
	case 'Z', 'X', 'T', 't':
		return false
	}
	return true
}

// mountedElsewhere reports whether device 0:minor is mounted on another
// mount point than dir (in this process's mount namespace).
func mountedElsewhere(minor, dir string) (bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false, err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 5 && fields[2] == "0:"+minor && unescapeMountinfo(fields[4]) != abs {
			return true, nil
		}
	}
	return false, sc.Err()
}
