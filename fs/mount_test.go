package fs

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/hanwen/go-fuse/v2/posixtest"
	"golang.org/x/sys/unix"

	"github.com/glimpse-project/glimpse/backend/local"
	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/lifecycletest"
	"github.com/glimpse-project/glimpse/meta"
)

var admin = lifecycletest.Admin

type testEnv struct {
	mnt   string
	svc   *lifecycle.Service
	store *meta.Store
	be    *local.Local
	srv   *Server
}

// testMount mounts a fresh catalogue in a temp dir and unmounts it on
// cleanup (go-fuse's fs/mem_test.go testMount). Tests here use syscalls
// only: exec'ing tools from the process that serves the mount can deadlock
// (go-fuse fs/api.go, "Deadlocks"); the tools are driven against a
// separate daemon in cmd/glimpse.
func testMount(t *testing.T) testEnv {
	t.Helper()
	return testMountWith(t, lifecycle.Config{}, "")
}

// testMountWith is testMount on a lifecycle configured by cfg, with the
// store in storeDir ("" for a temp dir).
func testMountWith(t *testing.T, cfg lifecycle.Config, storeDir string) testEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	if storeDir == "" {
		storeDir = t.TempDir()
	}
	env := lifecycletest.NewIn(t, cfg, storeDir)
	svc, store, be := env.Service, env.Store, env.Backend
	mnt := t.TempDir()
	srv, err := Mount(mnt, svc, Options{Principal: admin, Debug: testing.Verbose() && os.Getenv("FUSE_DEBUG") != ""})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return testEnv{mnt: mnt, svc: svc, store: store, be: be, srv: srv}
}

func random(n int) []byte {
	p := make([]byte, n)
	rand.Read(p)
	return p
}

func (e testEnv) path(parts ...string) string {
	return filepath.Join(append([]string{e.mnt}, parts...)...)
}

func (e testEnv) xattr(t *testing.T, path, key string) string {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Getxattr(path, "user."+key, buf)
	if err != nil {
		t.Fatalf("getxattr %s user.%s: %v", path, key, err)
	}
	return string(buf[:n])
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func wantErrno(t *testing.T, what string, err error, want syscall.Errno) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
}

func TestLayout(t *testing.T) {
	e := testMount(t)
	want := []string{"active", "deactivated", "images", "importing", "killed", "pending_delete", "queued", "raw", "saving", "uploading"}
	if got := names(t, e.mnt); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("root: %v, want %v", got, want)
	}
}

func TestCopyInRegisters(t *testing.T) {
	e := testMount(t)
	data := random(3<<20 + 5)
	f, err := os.Create(e.path("active", "disk.raw"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data[:1<<20]); err != nil {
		t.Fatal(err)
	}
	// While it is written the image is saving, listed in saving/, and its
	// path keeps working for the writer.
	if got := names(t, e.path("saving")); fmt.Sprint(got) != "[disk.raw]" {
		t.Fatalf("saving/ during the copy: %v", got)
	}
	if got := e.xattr(t, e.path("active", "disk.raw"), "status"); got != "saving" {
		t.Fatalf("status during the copy: %s", got)
	}
	if _, err := f.Write(data[1<<20:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// Settled by the time close returns.
	p := e.path("active", "disk.raw")
	sum := md5.Sum(data)
	for key, want := range map[string]string{
		"status": "active", "size": fmt.Sprint(len(data)), "checksum": hex.EncodeToString(sum[:]),
		"os_hash_algo": "sha512", "disk_format": "raw", "container_format": "bare",
		"virtual_size": fmt.Sprint(len(data)), "name": "disk.raw",
	} {
		if got := e.xattr(t, p, key); got != want {
			t.Errorf("user.%s = %q, want %q", key, got, want)
		}
	}
	if got := names(t, e.path("saving")); len(got) != 0 {
		t.Fatalf("saving/ after close: %v", got)
	}
	back, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(back, data) {
		t.Fatalf("read back: %v, equal %v", err, bytes.Equal(back, data))
	}
	st, err := os.Stat(p)
	if err != nil || st.Size() != int64(len(data)) || st.Mode().Perm() != 0o444 {
		t.Fatalf("stat: %v %v", st.Mode(), err)
	}
	id := e.xattr(t, p, "id")
	if got := names(t, e.path("images")); fmt.Sprint(got) != "["+id+"]" {
		t.Fatalf("images/: %v", got)
	}
}

func TestActiveIsImmutable(t *testing.T) {
	e := testMount(t)
	p := e.path("active", "a")
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := os.OpenFile(p, os.O_WRONLY, 0)
	wantErrno(t, "open active for writing", err, syscall.EACCES)
	_, err = os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	wantErrno(t, "open active with O_TRUNC", err, syscall.EACCES)
	wantErrno(t, "truncate active", os.Truncate(p, 1), syscall.EACCES)
	if got, _ := os.ReadFile(p); string(got) != "abc" {
		t.Fatalf("content changed: %q", got)
	}
}

func TestTouchQueuedThenWrite(t *testing.T) {
	e := testMount(t)
	q := e.path("queued", "later")
	f, err := os.OpenFile(q, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got := e.xattr(t, q, "status"); got != "queued" {
		t.Fatalf("touched image: %s", got)
	}
	if err := unix.Setxattr(q, "user.min_disk", []byte("10"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(q, []byte("payload"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := e.path("active", "later")
	if got := e.xattr(t, a, "status"); got != "active" {
		t.Fatalf("after writing: %s", got)
	}
	if got := e.xattr(t, a, "min_disk"); got != "10" {
		t.Fatalf("min_disk set while queued: %s", got)
	}
	if _, err := os.Stat(q); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("still in queued/: %v", err)
	}
}

// TestClosedEmptyWaitsForItsCreator: a file created in active/ and closed
// with nothing in it is not settled at close: it stays saving under its
// path while its creator lives, the creator's reopen for writing adopts
// the upload and reads back what it wrote, and its closes settle nothing
// (the creator's exit does: cmd/glimpse's TestHabitCreateCloseReopen,
// with a creator that can exit). Another process could not adopt it.
func TestClosedEmptyWaitsForItsCreator(t *testing.T) {
	e := testMount(t)
	p := e.path("active", "later.qcow2")
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_CREAT, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(fd, 0); err != nil { // as qemu-img does
		t.Fatal(err)
	}
	unix.Close(fd)
	if got := e.xattr(t, p, "status"); got != "saving" {
		t.Fatalf("status after an empty close: %s", got)
	}
	if got := names(t, e.path("saving")); fmt.Sprint(got) != "[later.qcow2]" {
		t.Fatalf("saving/: %v", got)
	}
	data := random(3 << 20)
	for i := 0; i < 2; i++ { // reopened twice, written each time
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatalf("reopen %d by the creator: %v", i, err)
		}
		half := len(data) / 2
		if _, err := f.WriteAt(data[i*half:(i+1)*half], int64(i*half)); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the creator reads back %d bytes (%v), want the %d it wrote", len(got), err, len(data))
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() != int64(len(data)) {
		t.Fatalf("stat by the creator: %v %v", fi, err)
	}
	if got := e.xattr(t, p, "status"); got != "saving" {
		t.Fatalf("status while the creator lives: %s", got)
	}
}

// waitFor polls cond until it holds, failing after a deadline. It is for
// outcomes the kernel makes asynchronous (release), not a sleep.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRedirectionCommitsOnceAtTheEnd(t *testing.T) {
	e := testMount(t)
	// What a shell does for "cmd > active/x": open, dup2, close the
	// original (a flush with nothing written), write, close.
	fd, err := unix.Open(e.path("active", "x"), unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fd2, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if _, err := unix.Write(fd2, []byte("hello")); err != nil {
		t.Fatalf("write after the first close: %v", err)
	}
	if err := unix.Close(fd2); err != nil {
		t.Fatal(err)
	}
	if got := e.xattr(t, e.path("active", "x"), "size"); got != "5" {
		t.Fatalf("size %s", got)
	}
}

func TestMoves(t *testing.T) {
	e := testMount(t)
	os.WriteFile(e.path("active", "a"), []byte("aaa"), 0o644)

	if err := os.Rename(e.path("active", "a"), e.path("active", "b")); err != nil {
		t.Fatal(err)
	}
	if got := names(t, e.path("active")); fmt.Sprint(got) != "[b]" {
		t.Fatalf("after rename: %v", got)
	}
	if err := os.Rename(e.path("active", "b"), e.path("deactivated", "b")); err != nil {
		t.Fatal(err)
	}
	if got := e.xattr(t, e.path("deactivated", "b"), "status"); got != "deactivated" {
		t.Fatalf("status %s", got)
	}
	_, err := os.ReadFile(e.path("deactivated", "b"))
	wantErrno(t, "read deactivated", err, syscall.EACCES)
	if got := e.xattr(t, e.path("deactivated", "b"), "size"); got != "3" {
		t.Fatalf("deactivated attributes stay readable: %s", got)
	}
	for _, to := range []string{"killed", "queued", "saving", "pending_delete", "images"} {
		err := os.Rename(e.path("deactivated", "b"), e.path(to, "b"))
		wantErrno(t, "move to "+to, err, syscall.EPERM)
	}
	if got := names(t, e.path("deactivated")); fmt.Sprint(got) != "[b]" {
		t.Fatalf("a refused move changed something: %v", got)
	}
	if err := os.Rename(e.path("deactivated", "b"), e.path("active", "c")); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(e.path("active", "c")); err != nil || string(got) != "aaa" {
		t.Fatalf("reactivated: %q %v", got, err)
	}
}

func TestNameCollisions(t *testing.T) {
	e := testMount(t)
	os.WriteFile(e.path("active", "x"), []byte("1"), 0o644)
	os.WriteFile(e.path("active", "y"), []byte("22"), 0o644)
	id1 := e.xattr(t, e.path("active", "x"), "id")
	id2 := e.xattr(t, e.path("active", "y"), "id")
	// Renaming onto a taken name deletes nothing: both show as NAME@ID.
	if err := os.Rename(e.path("active", "y"), e.path("active", "x")); err != nil {
		t.Fatal(err)
	}
	// The kernel moved its dentry for y onto x; our notification that x no
	// longer resolves reaches it just after.
	e.srv.Settle()
	want := []string{"x@" + id1, "x@" + id2}
	sort.Strings(want)
	if got := names(t, e.path("active")); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after collision: %v, want %v", got, want)
	}
	if got, err := os.ReadFile(e.path("active", "x@"+id2)); err != nil || string(got) != "22" {
		t.Fatalf("read x@id2: %q %v", got, err)
	}
	if _, err := os.Stat(e.path("active", "x")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the bare shared name must not resolve: %v", err)
	}
	if err := os.Remove(e.path("active", "x@"+id1)); err != nil {
		t.Fatal(err)
	}
	if got := names(t, e.path("active")); fmt.Sprint(got) != "[x]" {
		t.Fatalf("after removing one: %v", got)
	}
}

func TestRemoveAndProtected(t *testing.T) {
	e := testMount(t)
	p := e.path("active", "p")
	os.WriteFile(p, []byte("data"), 0o644)
	if err := unix.Setxattr(p, "user.protected", []byte("true"), 0); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "rm protected", os.Remove(p), syscall.EPERM)
	unix.Setxattr(p, "user.protected", []byte("false"), 0)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(e.be.Dir()); len(entries) != 1 { // only .partial
		t.Fatalf("store after rm: %v", entries)
	}
	if got := names(t, e.path("images")); len(got) != 0 {
		t.Fatalf("images/ after rm: %v", got)
	}
}

func TestXattrs(t *testing.T) {
	e := testMount(t)
	p := e.path("active", "img")
	os.WriteFile(p, []byte("x"), 0o644)
	if err := unix.Setxattr(p, "user.min_ram", []byte("512"), 0); err != nil {
		t.Fatal(err)
	}
	if got := e.xattr(t, p, "min_ram"); got != "512" {
		t.Fatalf("min_ram %s", got)
	}
	wantErrno(t, "min_ram=abc", unix.Setxattr(p, "user.min_ram", []byte("abc"), 0), syscall.EINVAL)
	for _, ro := range []string{"id", "status", "size", "virtual_size", "checksum", "os_hash_value", "created_at", "updated_at", "owner", "glimpse.error"} {
		wantErrno(t, "set "+ro, unix.Setxattr(p, "user."+ro, []byte("999"), 0), syscall.EPERM)
	}
	wantErrno(t, "name of 300 bytes", unix.Setxattr(p, "user.name", bytes.Repeat([]byte("n"), 300), 0), syscall.EINVAL)
	if err := unix.Setxattr(p, "user.os_distro", []byte("debian"), 0); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, "XATTR_CREATE on existing", unix.Setxattr(p, "user.os_distro", []byte("x"), unix.XATTR_CREATE), syscall.EEXIST)
	wantErrno(t, "XATTR_REPLACE on missing", unix.Setxattr(p, "user.nope", []byte("x"), unix.XATTR_REPLACE), syscall.ENODATA)
	if err := unix.Removexattr(p, "user.os_distro"); err != nil {
		t.Fatal(err)
	}
	_, err := unix.Getxattr(p, "user.os_distro", make([]byte, 10))
	wantErrno(t, "get removed", err, syscall.ENODATA)
	wantErrno(t, "remove base key", unix.Removexattr(p, "user.min_ram"), syscall.EPERM)
	wantErrno(t, "remove missing", unix.Removexattr(p, "user.nope"), syscall.ENODATA)
	_, err = unix.Getxattr(p, "security.selinux", make([]byte, 10))
	wantErrno(t, "security.selinux", err, syscall.EOPNOTSUPP)

	// The size probe and ERANGE.
	n, err := unix.Getxattr(p, "user.os_hash_value", nil)
	if err != nil || n != 128 {
		t.Fatalf("size probe: %d %v", n, err)
	}
	_, err = unix.Getxattr(p, "user.os_hash_value", make([]byte, 10))
	wantErrno(t, "short buffer", err, syscall.ERANGE)

	// Listing shows every property, with user.tags and user.name.
	buf := make([]byte, 4096)
	n, err = unix.Listxattr(p, buf)
	if err != nil {
		t.Fatal(err)
	}
	list := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
	for _, want := range []string{"user.name", "user.checksum", "user.os_hash_value", "user.tags", "user.min_ram"} {
		found := false
		for _, k := range list {
			found = found || k == want
		}
		if !found {
			t.Errorf("listxattr lacks %s: %v", want, list)
		}
	}
	// Renaming through user.name renames the file.
	if err := unix.Setxattr(p, "user.name", []byte("renamed"), 0); err != nil {
		t.Fatal(err)
	}
	if got := names(t, e.path("active")); fmt.Sprint(got) != "[renamed]" {
		t.Fatalf("after setting user.name: %v", got)
	}
}

// A change made behind the mount's back (as the REST face does) shows at
// once, although the kernel caches names and attributes for a second: the
// invalidation, not the timeout, makes it so.
func TestChangesElsewhereShowAtOnce(t *testing.T) {
	e := testMount(t)
	os.WriteFile(e.path("active", "old"), []byte("x"), 0o644)
	id := e.xattr(t, e.path("active", "old"), "id")
	if _, err := os.Stat(e.path("active", "old")); err != nil { // cache the entry
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := e.svc.Rename(ctx, admin, id, "new"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.path("active", "old")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old name still resolves right after the rename: %v", err)
	}
	if _, err := os.Stat(e.path("active", "new")); err != nil {
		t.Fatalf("new name: %v", err)
	}
	if _, err := e.svc.Deactivate(ctx, admin, id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.path("active", "new")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("deactivated image still in active/: %v", err)
	}
	img, err := e.svc.Create(ctx, admin, lifecycle.CreateSpec{Name: "fresh"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.path("queued", "fresh")); err != nil {
		t.Fatalf("created elsewhere: %v", err)
	}
	if err := e.svc.Delete(ctx, admin, img.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.path("queued", "fresh")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("deleted elsewhere: %v", err)
	}
}

func TestBadNames(t *testing.T) {
	e := testMount(t)
	_, err := os.Create(e.path("active", strings.Repeat("n", 300)))
	wantErrno(t, "300-byte name", err, syscall.ENAMETOOLONG)
	_, err = os.Create(e.path("images", "x"))
	wantErrno(t, "create in images/", err, syscall.EPERM)
	_, err = os.Create(e.path("killed", "x"))
	wantErrno(t, "create in killed/", err, syscall.EPERM)
	wantErrno(t, "mkdir", os.Mkdir(e.path("active", "d"), 0o755), syscall.EPERM)
	// A name with a slash is legal in Glance: shown only under images/.
	img, err := e.svc.Create(context.Background(), admin, lifecycle.CreateSpec{Name: "a/b"})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(t, e.path("queued")); len(got) != 0 {
		t.Fatalf("queued/ shows an unlistable name: %v", got)
	}
	if got := e.xattr(t, e.path("images", img.ID), "name"); got != "a/b" {
		t.Fatalf("name %q", got)
	}
}

// go-fuse's POSIX conformance cases that fit an image store, run in
// active/. Left out, on purpose: links, symlinks, directories, locks,
// fallocate (images have none); rewriting a file after close or by path
// (images are immutable: ParallelFileOpen, TruncateFile, TruncateNoFile,
// AppendWrite); FileBasic (it expects the mode it created the file with,
// and an image is 0444); the rename cases (they need directories, or
// expect a rename onto a taken name to replace it, where both images stay);
// and FstatDeleted, whose empty file becomes active when the kernel
// releases it, after close(2) returns, so its mode and mtime may change
// between its stat and fstat (TestFstatDeleted is the rest of it).
func TestPosix(t *testing.T) {
	for _, name := range []string{"FileLarge", "ReadDirBasic", "FdLeak"} {
		t.Run(name, func(t *testing.T) {
			e := testMount(t)
			posixtest.All[name](t, e.path("active"))
		})
	}
}

// TestFstatDeleted is posixtest.FstatDeleted for images with content: an
// image removed while open keeps answering fstat(2) (which the kernel sends
// without the file handle) with what it was, and keeps its content.
func TestFstatDeleted(t *testing.T) {
	e := testMount(t)
	type file struct {
		fd   int
		st   unix.Stat_t
		data []byte
	}
	var files []file
	for i := 1; i <= 9; i++ {
		p := e.path("active", fmt.Sprint(i))
		data := random(i)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Open(p, unix.O_RDONLY, 0)
		if err != nil {
			t.Fatalf("open %s: %v", p, err)
		}
		defer unix.Close(fd)
		if err := unix.Unlink(p); err != nil {
			t.Fatal(err)
		}
		files = append(files, file{fd, st, data})
	}
	e.srv.Settle() // every removal has reached the kernel: fstat asks the daemon
	for i, f := range files {
		var st unix.Stat_t
		if err := unix.Fstat(f.fd, &st); err != nil {
			t.Fatalf("fstat of removed image %d: %v", i+1, err)
		}
		if st.Ino != f.st.Ino || st.Size != f.st.Size || st.Mode != f.st.Mode || st.Mtim != f.st.Mtim {
			t.Fatalf("fstat of removed image %d: %+v, before removal %+v", i+1, st, f.st)
		}
		buf := make([]byte, 16)
		n, err := unix.Pread(f.fd, buf, 0)
		if err != nil || !bytes.Equal(buf[:n], f.data) {
			t.Fatalf("read of removed image %d: %q %v", i+1, buf[:n], err)
		}
	}
}

// TestOpenRightAfterWrite: an image is readable the moment the writer's
// close returns, though the kernel releases the writer's file after that
// (a passthrough open beside a cached one would fail with EIO).
func TestOpenRightAfterWrite(t *testing.T) {
	e := testMount(t)
	for i := 0; i < 200; i++ {
		p := e.path("active", fmt.Sprint(i))
		data := random(1 + i%7)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %d right after writing: %q %v", i, got, err)
		}
	}
}

// TestListingAttributes checks what ls -l shows: each entry's attributes,
// which READDIRPLUS fills from records read in batches, are its own image's,
// across batch and reply boundaries and for shared names (NAME@ID); and a
// rewound directory is listed afresh.
func TestListingAttributes(t *testing.T) {
	e := testMount(t)
	const n = 2*readAhead + 7
	for i := range n {
		// i+1 bytes: an empty file would wait for its creator (this test).
		if err := os.WriteFile(e.path("active", fmt.Sprintf("f%03d", i)), random(i+1), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// f000 onto f001: both show as f001@ID, each with its own size.
	id0 := e.xattr(t, e.path("active", "f000"), "id")
	id1 := e.xattr(t, e.path("active", "f001"), "id")
	if err := os.Rename(e.path("active", "f000"), e.path("active", "f001")); err != nil {
		t.Fatal(err)
	}
	e.srv.Settle()
	want := map[string]int64{"f001@" + id0: 1, "f001@" + id1: 2}
	for i := 2; i < n; i++ {
		want[fmt.Sprintf("f%03d", i)] = int64(i + 1)
	}

	dir, err := os.Open(e.path("active"))
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	entries, err := dir.ReadDir(-1)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		t.Fatalf("%d entries, want %d", len(entries), len(want))
	}
	for _, de := range entries {
		info, err := de.Info()
		if err != nil {
			t.Fatal(err)
		}
		size, ok := want[de.Name()]
		if !ok || info.Size() != size || info.Mode() != 0o444 {
			t.Fatalf("%s: size %d mode %v, want size %d (listed: %v) mode -r--r--r--", de.Name(), info.Size(), info.Mode(), size, ok)
		}
	}

	// A rewind (rewinddir, offset 0) lists what is there now.
	if err := os.WriteFile(e.path("active", "late"), random(5), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := dir.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	again, err := dir.Readdirnames(-1)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != len(want)+1 || !slices.Contains(again, "late") {
		t.Fatalf("after rewind: %d names (late listed: %v), want %d", len(again), slices.Contains(again, "late"), len(want)+1)
	}
}

// TestMountOverHungMount: a FUSE connection that nobody serves (what a
// daemon killed while one of its threads waited in the kernel leaves)
// hangs every operation on the mount point, stat(2) included. Mount takes
// it for hung after a while, aborts it through fusectl, detaches it and
// mounts the catalogue there.
func TestMountOverHungMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	mnt := t.TempDir()
	// Mounted, never served: the kernel's INIT is never answered.
	hung, err := fuse.NewServer(gofs.NewNodeFS(&gofs.Inode{}, &gofs.Options{}), mnt, &fuse.MountOptions{DirectMount: true, FsName: "glimpse", Name: "glimpse"})
	if err != nil {
		t.Fatal(err)
	}
	_ = hung // its descriptor stays open, as a dead daemon's would
	if _, ok, err := fuseMountMinor(mnt); err != nil || !ok {
		t.Fatalf("the hung mount is not found in mountinfo: %v", err)
	}

	env := lifecycletest.New(t, lifecycle.Config{})
	srv, err := Mount(mnt, env.Service, Options{Principal: admin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Unmount() })
	if err := os.WriteFile(filepath.Join(mnt, "active", "x"), []byte("x"), 0o644); err != nil {
		t.Fatalf("the new mount does not serve: %v", err)
	}
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(info), " "+mnt+" "); n != 1 {
		t.Fatalf("%d mounts on %s, want only the new one (the hung one detached)", n, mnt)
	}
}
