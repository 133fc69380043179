package spool_test

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/glimpse-project/glimpse/backend/spool"
)

// TestSpoolLeavesTheReserve: a spool file on a 4 MiB tmpfs with 2 MiB
// reserved refuses, with ENOSPC, the write that would go into the reserve.
func TestSpoolLeavesTheReserve(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("no tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	ctx := context.Background()
	b := spool.WrapReserving(newLocal(t), dir, 2<<20)
	w, err := b.Create(ctx, "img")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort(ctx)
	sw := w.(*spool.Writer)
	// Out of order: the writer falls back to a spool file in dir.
	if _, err := sw.WriteAt(make([]byte, 4096), 256<<10); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.WriteAt(make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if sw.Streaming() {
		t.Fatal("still streaming after an out-of-order write")
	}
	if _, err := sw.WriteAt(make([]byte, 1<<20), 4096); err != nil {
		t.Fatalf("1 MiB of 4 with 2 reserved: %v", err)
	}
	if _, err := sw.WriteAt(make([]byte, 1<<20+512<<10), 2<<20); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a write into the reserve: %v, want ENOSPC", err)
	}
}
