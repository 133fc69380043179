package fs

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/glimpse-project/glimpse/convert/converttest"
	"github.com/glimpse-project/glimpse/lifecycle"
)

// declareAndWrite touches queued/NAME, declares its disk_format and writes
// data into it, returning the error of the write (close included).
func declareAndWrite(t *testing.T, e testEnv, name, diskFormat string, data []byte) error {
	t.Helper()
	q := e.path("queued", name)
	f, err := os.OpenFile(q, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := unix.Setxattr(q, "user.disk_format", []byte(diskFormat), 0); err != nil {
		t.Fatalf("declare %s: %v", diskFormat, err)
	}
	return os.WriteFile(q, data, 0o644)
}

// Random bytes declared vhd or vmdk (what Tempest uploads): refused by
// default, as Glance's require_image_format_match does.
func TestFormatMismatchRefusedThroughMount(t *testing.T) {
	e := testMount(t)
	err := declareAndWrite(t, e, "liar.vmdk", "vmdk", random(4096))
	wantErrno(t, "random bytes declared vmdk", err, syscall.EIO)
	if reason := e.xattr(t, e.path("killed", "liar.vmdk"), "glimpse.error"); !strings.Contains(reason, "declares disk_format vmdk") {
		t.Errorf("kill reason %q", reason)
	}
}

// With mismatches allowed the image becomes active under its declared
// format, the detected one in user.glimpse.detected_format and no
// virtual size; unsafe content is still refused, whatever is declared.
func TestFormatMismatchAcceptedThroughMount(t *testing.T) {
	e := testMountWith(t, lifecycle.Config{AllowFormatMismatch: true}, "")
	for _, declared := range []string{"vhd", "vmdk", "qcow2"} {
		name := "random." + declared
		if err := declareAndWrite(t, e, name, declared, random(2048)); err != nil {
			t.Fatalf("random bytes declared %s: %v", declared, err)
		}
		a := e.path("active", name)
		if got := e.xattr(t, a, "disk_format"); got != declared {
			t.Errorf("%s: disk_format %q", name, got)
		}
		if got := e.xattr(t, a, "glimpse.detected_format"); got != "raw" {
			t.Errorf("%s: glimpse.detected_format %q, want raw", name, got)
		}
		if _, err := unix.Getxattr(a, "user.virtual_size", make([]byte, 64)); !errors.Is(err, unix.ENODATA) {
			t.Errorf("%s: virtual_size: %v, want ENODATA", name, err)
		}
	}
	// Content that is what it says has no detected_format fact.
	if err := declareAndWrite(t, e, "honest.raw", "raw", random(2048)); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Getxattr(e.path("active", "honest.raw"), "user.glimpse.detected_format", make([]byte, 64)); !errors.Is(err, unix.ENODATA) {
		t.Errorf("a matching upload has glimpse.detected_format: %v", err)
	}
	for _, h := range converttest.HostileImages() {
		for _, declared := range []string{h.DiskFormat, "raw"} {
			name := strings.ReplaceAll(h.Name, "/", "_") + "." + declared
			err := declareAndWrite(t, e, name, declared, h.Data)
			wantErrno(t, h.Name+" declared "+declared, err, syscall.EIO)
			if reason := e.xattr(t, e.path("killed", name), "glimpse.error"); !strings.Contains(reason, h.Reason) {
				t.Errorf("%s declared %s: kill reason %q, want %q", h.Name, declared, reason, h.Reason)
			}
		}
	}
	err := declareAndWrite(t, e, "polyglot", "raw", polyglot())
	wantErrno(t, "a VHD that is also an ISO", err, syscall.EIO)
	if reason := e.xattr(t, e.path("killed", "polyglot"), "glimpse.error"); !strings.Contains(reason, "several formats at once") {
		t.Errorf("polyglot: kill reason %q", reason)
	}
}

// polyglot starts as a VHD and carries an ISO 9660 volume descriptor at
// 32 KiB: one format inside another.
func polyglot() []byte {
	b := make([]byte, 40<<10)
	copy(b, "conectix")
	copy(b[32768:], "\x01CD001")
	return b
}
