package backendtest

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/glimpse-project/glimpse/backend"
)

// RunReserve checks a store's use of backend/freespace: on a 4 MiB tmpfs
// with 2 MiB reserved, a write that would take the filesystem below the
// reserve fails with ENOSPC before it allocates anything, and the writer
// can still be aborted. newWriter returns a writer whose bytes go to
// files in dir, keeping reserve bytes free there. Mounting the tmpfs
// needs root; without it the test is skipped.
func RunReserve(t *testing.T, newWriter func(t *testing.T, dir string, reserve int64) backend.Writer) {
	if os.Getuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("no tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	const reserve = 2 << 20
	w := newWriter(t, dir, reserve)
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
	if free := int64(st.Bavail) * st.Bsize; free < reserve {
		t.Fatalf("%d bytes free after the refusal, below the reserve", free)
	}
	if err := w.Abort(context.Background()); err != nil {
		t.Fatal(err)
	}
}
