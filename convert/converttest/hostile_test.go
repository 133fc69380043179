package converttest

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/glimpse-project/glimpse/convert"
)

// Each hostile image is refused for its own reason, and the clean image it
// is built on is not: the refusal comes from the hostile part.
func TestHostileImagesAreRefused(t *testing.T) {
	for _, v := range []uint32{2, 3} {
		clean := qcow2Header(v)
		if r, err := convert.Inspect(bytes.NewReader(clean), int64(len(clean))); err != nil || r.DiskFormat() != "qcow2" {
			t.Fatalf("clean qcow2 v%d: %v %v", v, r.DiskFormat(), err)
		}
	}
	for _, h := range HostileImages() {
		_, err := convert.Inspect(bytes.NewReader(h.Data), int64(len(h.Data)))
		if !(errors.Is(err, convert.ErrUnsafe) || errors.Is(err, convert.ErrCorrupt)) || !strings.Contains(err.Error(), h.Reason) {
			t.Errorf("%s: %v, want a refusal naming %q", h.Name, err, h.Reason)
		}
	}
}
