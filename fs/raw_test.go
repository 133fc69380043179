package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/glimpse-project/glimpse/convert"
	"github.com/glimpse-project/glimpse/meta"
)

// rawTestDisk returns a 16 MiB disk with data in its first 256 KiB and at
// 8 MiB, and the same disk as a streamOptimized vmdk (compressed grains).
func rawTestDisk(t *testing.T) (disk, image []byte) {
	t.Helper()
	dir := t.TempDir()
	disk = make([]byte, 16<<20)
	copy(disk, random(256<<10))
	copy(disk[8<<20:], random(64<<10))
	src := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(src, disk, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "disk.vmdk")
	err := convert.ConvertFile(context.Background(), src, out, convert.FileOptions{
		InFormat: convert.Raw, OutFormat: convert.VMDK, Create: convert.CreateOptions{Subformat: "streamOptimized"},
	})
	if err != nil {
		t.Fatal(err)
	}
	image, err = os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return disk, image
}

// TestRawViewNames: raw/ shows active/'s names, NAME@ID on collisions,
// and follows changes made outside the mount by the time they return.
func TestRawViewNames(t *testing.T) {
	e := testMount(t)
	disk, image := rawTestDisk(t)
	for _, name := range []string{"a.vmdk", "b.vmdk"} {
		if err := os.WriteFile(e.path("active", name), image, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := names(t, e.path("raw")); fmt.Sprint(got) != "[a.vmdk b.vmdk]" {
		t.Fatalf("raw/: %v", got)
	}
	got, err := os.ReadFile(e.path("raw", "a.vmdk"))
	if err != nil || !bytes.Equal(got, disk) {
		t.Fatalf("raw/a.vmdk: %d bytes, %v; want the %d bytes of the disk", len(got), err, len(disk))
	}
	var st syscall.Stat_t
	if err := syscall.Stat(e.path("raw", "a.vmdk"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != int64(len(disk)) || st.Mode != syscall.S_IFREG|0o444 || st.Blocks*512 != 320<<10 {
		t.Fatalf("stat: size %d, mode %o, %d bytes allocated; want 16 MiB, 0444, 320 KiB", st.Size, st.Mode, st.Blocks*512)
	}

	// A rename outside the mount (REST) onto a taken name.
	ida := e.xattr(t, e.path("active", "a.vmdk"), "id")
	idb := e.xattr(t, e.path("active", "b.vmdk"), "id")
	if _, err := e.svc.Move(context.Background(), admin, idb, "a.vmdk", meta.Active); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint([]string{"a.vmdk@" + min(ida, idb), "a.vmdk@" + max(ida, idb)})
	if got := names(t, e.path("raw")); fmt.Sprint(got) != want {
		t.Fatalf("raw/ after the rename: %v, want %v", got, want)
	}
	if _, err := os.Stat(e.path("raw", "a.vmdk")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the shared bare name: %v", err)
	}

	// Open, then deactivated outside the mount: gone from raw/, but the
	// open file reads on, as an open file of a removed image does.
	f, err := os.Open(e.path("raw", "a.vmdk@"+ida))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := e.svc.Move(context.Background(), admin, ida, "a.vmdk", meta.Deactivated); err != nil {
		t.Fatal(err)
	}
	if got := names(t, e.path("raw")); fmt.Sprint(got) != "[a.vmdk]" {
		t.Fatalf("raw/ after deactivating one: %v", got)
	}
	buf := make([]byte, 64<<10)
	if _, err := f.ReadAt(buf, 8<<20); err != nil || !bytes.Equal(buf, disk[8<<20:8<<20+64<<10]) {
		t.Fatalf("read of the open view after deactivation: %v", err)
	}
	if _, err := os.Open(e.path("raw", "a.vmdk@"+ida)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("opening a deactivated image's view: %v", err)
	}
}

// TestRawViewReadOnly: every change is EROFS and changes nothing; holes
// are where the format says.
func TestRawViewReadOnly(t *testing.T) {
	e := testMount(t)
	_, image := rawTestDisk(t)
	if err := os.WriteFile(e.path("active", "d.vmdk"), image, 0o644); err != nil {
		t.Fatal(err)
	}
	view := e.path("raw", "d.vmdk")
	_, err := os.OpenFile(view, os.O_RDWR, 0)
	wantErrno(t, "open O_RDWR", err, syscall.EROFS)
	wantErrno(t, "truncate", os.Truncate(view, 0), syscall.EROFS)
	wantErrno(t, "chmod", os.Chmod(view, 0o644), syscall.EROFS)
	wantErrno(t, "setxattr", unix.Setxattr(view, "user.min_ram", []byte("1"), 0), syscall.EROFS)
	wantErrno(t, "unlink", os.Remove(view), syscall.EROFS)
	wantErrno(t, "rename", os.Rename(view, e.path("raw", "e.vmdk")), syscall.EROFS)
	_, err = os.Create(e.path("raw", "new.raw"))
	wantErrno(t, "create", err, syscall.EROFS)

	f, err := os.Open(view)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	for _, c := range []struct {
		whence   int
		from, to int64
	}{
		{unix.SEEK_HOLE, 0, 256 << 10},
		{unix.SEEK_DATA, 256 << 10, 8 << 20},
		{unix.SEEK_HOLE, 8 << 20, 8<<20 + 64<<10},
		{unix.SEEK_HOLE, 12 << 20, 12 << 20},
	} {
		if got, err := unix.Seek(fd, c.from, c.whence); err != nil || got != c.to {
			t.Errorf("lseek(%d, whence %d) = %d, %v; want %d", c.from, c.whence, got, err, c.to)
		}
	}
	if _, err := unix.Seek(fd, 9<<20, unix.SEEK_DATA); !errors.Is(err, unix.ENXIO) {
		t.Errorf("SEEK_DATA past the last data: %v, want ENXIO", err)
	}
	got, err := os.ReadFile(e.path("images", e.xattr(t, e.path("active", "d.vmdk"), "id")))
	if err != nil || !bytes.Equal(got, image) {
		t.Fatalf("the image itself after the refused changes: %v", err)
	}
}
