package local

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
)

// TestReserveIsLeftFree: on a 4 MiB tmpfs with 2 MiB reserved, a write
// that would take the filesystem below the reserve fails with ENOSPC
// before it allocates anything, and the writer can still be aborted.
func TestReserveIsLeftFree(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("no tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	l, err := Open(Config{Dir: dir, Reserve: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w, err := l.Create(ctx, "img")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, 1<<20)); err != nil {
		t.Fatalf("1 MiB of 4 with 2 reserved: %v", err)
	}
	if _, err := w.Write(make([]byte, 1<<20+512<<10)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a write into the reserve: %v, want ENOSPC", err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < 2<<20 {
		t.Fatalf("%d bytes free after the refusal, below the reserve", free)
	}
	if err := w.Abort(ctx); err != nil {
		t.Fatal(err)
	}
}
