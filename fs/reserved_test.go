package fs

import (
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReservedAttributesRefused: Glance's reserved attributes (location,
// deleted, deleted_at) are refused by setfattr as they are at create and
// by a REST patch, and nothing changes.
func TestReservedAttributesRefused(t *testing.T) {
	e := testMount(t)
	p := e.path("active", "img")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"location", "deleted", "deleted_at"} {
		wantErrno(t, "setfattr user."+key, unix.Setxattr(p, "user."+key, []byte("true"), 0), syscall.EPERM)
		if _, err := unix.Getxattr(p, "user."+key, make([]byte, 64)); err != unix.ENODATA {
			t.Errorf("user.%s after the refusal: %v, want ENODATA", key, err)
		}
	}
}
