package fs

import (
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/lifecycletest"
)

// nobody is the user the access tests act as.
const nobody = 65534

// asUser runs fn on a thread whose real, effective and saved ids are
// uid/gid. The ids are changed with raw syscalls, which change only the
// calling thread (Go's Setresuid would change every thread); the thread
// is never unlocked, so it dies with the goroutine and nothing else ever
// runs as that user.
func asUser(t *testing.T, uid, gid int, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
			done <- e
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
			done <- e
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
			done <- e
			return
		}
		done <- fn()
	}()
	return <-done
}

// mountFor mounts a fresh catalogue with opts, in a directory other users
// may reach, holding one active image.
func mountFor(t *testing.T, opts Options) (mnt, image string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	env := lifecycletest.New(t, lifecycle.Config{})
	parent := t.TempDir()
	for _, d := range []string{filepath.Dir(parent), parent} { // the test's temp root too
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mnt = filepath.Join(parent, "mnt")
	opts.Principal = admin
	srv, err := Mount(mnt, env.Service, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	image = filepath.Join(mnt, "active", "img")
	if err := os.WriteFile(image, []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	return mnt, image
}

// Without --allow-other, only the daemon's user gets in; root, as the
// mounting user, does.
func TestMountIsOwnerOnly(t *testing.T) {
	mnt, image := mountFor(t, Options{})
	if _, err := os.Stat(image); err != nil {
		t.Fatalf("the owner: %v", err)
	}
	// The directory above is open to all: the refusal is the mount's.
	if err := asUser(t, nobody, nobody, func() error { _, err := os.ReadDir(filepath.Dir(mnt)); return err }); err != nil {
		t.Fatalf("another user lists the mount's parent: %v", err)
	}
	err := asUser(t, nobody, nobody, func() error { _, err := os.Stat(mnt + "/active"); return err })
	wantErrno(t, "another user stats the mount", err, syscall.EACCES)
	err = asUser(t, nobody, nobody, func() error { _, err := os.ReadFile(image); return err })
	wantErrno(t, "another user reads an image", err, syscall.EACCES)
}

// With --allow-other, other users may read what the mode bits allow
// (default_permissions): images are 0444 and directories 0755, owned by
// the daemon's user, so they read but cannot create or set attributes.
func TestAllowOtherWithDefaultPermissions(t *testing.T) {
	_, image := mountFor(t, Options{AllowOther: true})
	err := asUser(t, nobody, nobody, func() error {
		b, err := os.ReadFile(image)
		if err == nil && string(b) != "content" {
			t.Errorf("another user read %q", b)
		}
		return err
	})
	if err != nil {
		t.Fatalf("another user reads an image: %v", err)
	}
	err = asUser(t, nobody, nobody, func() error { return os.WriteFile(filepath.Join(filepath.Dir(image), "mine"), []byte("x"), 0o644) })
	wantErrno(t, "another user creates an image", err, syscall.EACCES)
	err = asUser(t, nobody, nobody, func() error { return unix.Setxattr(image, "user.os_distro", []byte("x"), 0) })
	wantErrno(t, "another user sets an attribute", err, syscall.EACCES)
	err = asUser(t, nobody, nobody, func() error { return os.Remove(image) })
	wantErrno(t, "another user removes an image", err, syscall.EACCES)
	if _, err := os.Stat(image); err != nil {
		t.Fatalf("the image after the refusals: %v", err)
	}
}

// --uid/--gid make the files someone else's, and default_permissions then
// lets that user manage the catalogue.
func TestMountUIDGID(t *testing.T) {
	mnt, image := mountFor(t, Options{AllowOther: true, UID: nobody, GID: nobody})
	for _, p := range []string{mnt, mnt + "/active", image} {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != nobody || st.Gid != nobody {
			t.Errorf("%s: owner %d:%d, want %d:%d", p, st.Uid, st.Gid, nobody, nobody)
		}
	}
	err := asUser(t, nobody, nobody, func() error { return os.WriteFile(filepath.Join(mnt, "active", "mine"), []byte("x"), 0o644) })
	if err != nil {
		t.Fatalf("the files' owner creates an image: %v", err)
	}
}
