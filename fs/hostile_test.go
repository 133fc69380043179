package fs

import (
	"bytes"
	"context"
	"errors"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/convert/converttest"
	"github.com/glimpse-project/glimpse/lifecycle"
)

// TestXattrLimits: values and names at and past the limits, with control
// bytes and invalid UTF-8, and more properties than an image may have.
func TestXattrLimits(t *testing.T) {
	e := testMount(t)
	p := e.path("active", "img")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	set := func(key string, v []byte) error { return unix.Setxattr(p, key, v, 0) }

	at := bytes.Repeat([]byte("v"), lifecycle.MaxValueLength)
	if err := set("user.big", at); err != nil {
		t.Fatalf("value of %d bytes: %v", len(at), err)
	}
	if got := bigXattr(t, p, "user.big"); got != string(at) {
		t.Fatalf("value of %d bytes read back as %d bytes", len(at), len(got))
	}
	// 65536 bytes reaches glimpse (it is the kernel's XATTR_SIZE_MAX);
	// one more the kernel refuses itself. Both are E2BIG.
	wantErrno(t, "value of 65536 bytes", set("user.big", append(at, 'v')), syscall.E2BIG)
	wantErrno(t, "value of 65537 bytes", set("user.big", append(at, 'v', 'v')), syscall.E2BIG)
	if got := bigXattr(t, p, "user.big"); got != string(at) {
		t.Fatal("a refused value changed the property")
	}
	// Attribute names: 255 bytes with "user.", then the kernel's ERANGE.
	long := "user." + strings.Repeat("k", 250)
	if err := set(long, []byte("v")); err != nil {
		t.Fatalf("name of 255 bytes: %v", err)
	}
	wantErrno(t, "name of 256 bytes", set(long+"k", []byte("v")), syscall.ERANGE)
	// Invalid UTF-8 is refused, control bytes are a value like any other
	// (Glance's values and names are free strings).
	wantErrno(t, "value with invalid UTF-8", set("user.bad", []byte("a\xffb")), syscall.EINVAL)
	wantErrno(t, "name= with invalid UTF-8", set("user.name", []byte("a\xc3")), syscall.EINVAL)
	wantErrno(t, "key with invalid UTF-8", set("user.k\xff", []byte("v")), syscall.EINVAL)
	wantErrno(t, "key with a control byte", set("user.k\x01", []byte("v")), syscall.EINVAL)
	if err := set("user.ctl", []byte("a\x00\x01\nb")); err != nil {
		t.Fatalf("value with control bytes: %v", err)
	}
	if got := e.xattr(t, p, "ctl"); got != "a\x00\x01\nb" {
		t.Fatalf("control bytes read back as %q", got)
	}
	// Up to 128 custom properties; the next is ENOSPC, as a filesystem out
	// of attribute space says. Three are set above.
	for i := 3; i < lifecycle.MaxProperties; i++ {
		if err := set("user.p"+strings.Repeat("x", i), []byte("v")); err != nil {
			t.Fatalf("property %d: %v", i+1, err)
		}
	}
	wantErrno(t, "property 129", set("user.one-too-many", []byte("v")), syscall.ENOSPC)
	if _, err := unix.Getxattr(p, "user.one-too-many", nil); !errors.Is(err, syscall.ENODATA) {
		t.Fatalf("the refused property exists: %v", err)
	}
}

// TestNameLimits: names past NAME_MAX, with control bytes and invalid
// UTF-8, and Glance names that cannot be file names.
func TestNameLimits(t *testing.T) {
	e := testMount(t)
	at := strings.Repeat("n", 255)
	if err := os.WriteFile(e.path("active", at), []byte("x"), 0o644); err != nil {
		t.Fatalf("name of 255 bytes: %v", err)
	}
	_, err := os.Create(e.path("active", at+"n"))
	wantErrno(t, "name of 256 bytes", err, syscall.ENAMETOOLONG)
	wantErrno(t, "rename to 256 bytes", os.Rename(e.path("active", at), e.path("active", at+"n")), syscall.ENAMETOOLONG)
	_, err = os.Create(e.path("active", "a\xffb"))
	wantErrno(t, "name with invalid UTF-8", err, syscall.EINVAL)
	ctl := "a\x01b\tc\x7f"
	if err := os.WriteFile(e.path("active", ctl), []byte("x"), 0o644); err != nil {
		t.Fatalf("name with control bytes: %v", err)
	}
	if got := e.xattr(t, e.path("active", ctl), "name"); got != ctl {
		t.Fatalf("control bytes in a name read back as %q", got)
	}
	if got := names(t, e.path("active")); !slices.Equal(got, []string{ctl, at}) {
		t.Fatalf("active/: %q", got)
	}
	// 255 characters of two bytes: a valid Glance name, not a file name.
	wide := strings.Repeat("é", 255)
	img, err := e.svc.Create(context.Background(), admin, lifecycle.CreateSpec{Name: wide})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(t, e.path("queued")); len(got) != 0 {
		t.Fatalf("queued/ lists a name of %d bytes: %q", len(wide), got)
	}
	if got := e.xattr(t, e.path("images", img.ID), "name"); got != wide {
		t.Fatalf("name under images/: %q", got)
	}
}

// TestQuotaThroughMount: image_count_total and image_size_total through
// cp: ENOSPC, the refused image killed with the reason, nothing stored.
func TestQuotaThroughMount(t *testing.T) {
	e := testMountWith(t, lifecycle.Config{Quota: lifecycle.Quota{Images: 2, Bytes: 1 << 20}}, "")
	if err := os.WriteFile(e.path("active", "a"), random(600<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	err := os.WriteFile(e.path("active", "b"), random(600<<10), 0o644)
	wantErrno(t, "copy past the byte quota", err, syscall.ENOSPC)
	if got := names(t, e.path("killed")); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("killed/: %v", got)
	}
	if reason := e.xattr(t, e.path("killed", "b"), "glimpse.error"); !strings.Contains(reason, "will exceed the limit") {
		t.Fatalf("kill reason: %q", reason)
	}
	id := e.xattr(t, e.path("active", "a"), "id")
	if objs := storeObjects(t, e); !slices.Equal(objs, []string{id}) {
		t.Fatalf("store: %v, want only %s", objs, id)
	}
	_, err = os.Create(e.path("active", "c"))
	wantErrno(t, "third image", err, syscall.ENOSPC)
	_, err = os.Create(e.path("queued", "c"))
	wantErrno(t, "third image, queued", err, syscall.ENOSPC)
	if err := os.Remove(e.path("killed", "b")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.path("active", "c"), random(400<<10), 0o644); err != nil {
		t.Fatalf("after freeing a slot: %v", err)
	}
}

// TestStoreFullThroughMount: a copy larger than the store's filesystem
// (a 1 MiB tmpfs) fails with ENOSPC, and nothing of it is left.
func TestStoreFullThroughMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("no tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	e := testMountWith(t, lifecycle.Config{}, dir)
	err := os.WriteFile(e.path("active", "big"), random(2<<20), 0o644)
	wantErrno(t, "copy larger than the store", err, syscall.ENOSPC)
	if reason := e.xattr(t, e.path("killed", "big"), "glimpse.error"); !strings.Contains(reason, "storage media is full") {
		t.Fatalf("kill reason: %q", reason)
	}
	if left := filesUnder(t, dir); len(left) != 0 {
		t.Fatalf("the store's filesystem holds %v", left)
	}
	if err := os.WriteFile(e.path("active", "small"), random(100<<10), 0o644); err != nil {
		t.Fatalf("a copy that fits, after: %v", err)
	}
}

// TestHostileImagesThroughMount: images built to make a host tool read
// host files, copied in: close fails with EIO, the image is killed with
// the reason, and nothing is stored.
func TestHostileImagesThroughMount(t *testing.T) {
	e := testMount(t)
	for _, h := range converttest.HostileImages() {
		name := strings.ReplaceAll(h.Name, "/", "_")
		err := os.WriteFile(e.path("active", name), h.Data, 0o644)
		wantErrno(t, h.Name, err, syscall.EIO)
		if reason := e.xattr(t, e.path("killed", name), "glimpse.error"); !strings.Contains(reason, h.Reason) {
			t.Errorf("%s: kill reason %q, want %q", h.Name, reason, h.Reason)
		}
	}
	if objs := storeObjects(t, e); len(objs) != 0 {
		t.Fatalf("store holds %v", objs)
	}
}

func storeObjects(t *testing.T, e testEnv) []string {
	t.Helper()
	var keys []string
	if err := e.be.List(context.Background(), func(i backend.Info) error { keys = append(keys, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	return keys
}

// bigXattr reads an attribute of any size: the size probe, then the value.
func bigXattr(t *testing.T, path, attr string) string {
	t.Helper()
	n, err := unix.Getxattr(path, attr, nil)
	if err != nil {
		t.Fatalf("getxattr %s: %v", attr, err)
	}
	buf := make([]byte, n)
	n, err = unix.Getxattr(path, attr, buf)
	if err != nil {
		t.Fatalf("getxattr %s: %v", attr, err)
	}
	return string(buf[:n])
}

// filesUnder lists the regular files below dir.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d iofs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
