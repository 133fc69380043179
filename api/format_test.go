package api_test

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/glimpse-project/glimpse/api"
	"github.com/glimpse-project/glimpse/convert/converttest"
	"github.com/glimpse-project/glimpse/lifecycle"
)

// uploadDeclared creates an image declaring diskFormat, uploads data and
// returns the upload's answer and the image afterwards.
func uploadDeclared(t *testing.T, e *env, diskFormat string, data []byte) (reply, map[string]any) {
	t.Helper()
	img := e.create(fmt.Sprintf(`{"name": "x", "disk_format": %q, "container_format": "bare"}`, diskFormat))
	id := img["id"].(string)
	r := e.upload(id, data)
	return r, e.do("GET", "/v2/images/"+id, map[string]string{"Accept": "application/json"}, nil).json(t)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// Tempest's ListUserImagesTest uploads random bytes declared vhd and vmdk:
// refused by default (415, killed), accepted with the check off.
func TestFormatMatchREST(t *testing.T) {
	strict := newEnv(t, 0, api.Options{})
	for _, declared := range []string{"vhd", "vmdk"} {
		r, img := uploadDeclared(t, strict, declared, randomBytes(1024))
		if r.status != http.StatusUnsupportedMediaType || img["status"] != "killed" {
			t.Errorf("random bytes declared %s, format match required: %d, %v", declared, r.status, img["status"])
		}
	}

	lax, _ := hostileEnv(t, lifecycle.Config{AllowFormatMismatch: true}, api.Options{})
	for _, declared := range []string{"vhd", "vmdk", "vdi", "qcow2", "iso"} {
		data := randomBytes(4096)
		r, img := uploadDeclared(t, lax, declared, data)
		if r.status != http.StatusNoContent || img["status"] != "active" {
			t.Fatalf("random bytes declared %s, mismatch allowed: %d %s, %v", declared, r.status, r.body, img["status"])
		}
		if img["disk_format"] != declared || img["glimpse.detected_format"] != "raw" || img["virtual_size"] != nil || img["size"] != float64(len(data)) {
			t.Errorf("declared %s: disk_format %v, glimpse.detected_format %v, virtual_size %v, size %v", declared, img["disk_format"], img["glimpse.detected_format"], img["virtual_size"], img["size"])
		}
		if d := lax.do("GET", "/v2/images/"+img["id"].(string)+"/file", nil, nil); d.status != 200 || string(d.body) != string(data) {
			t.Errorf("declared %s: download %d", declared, d.status)
		}
	}
	_, honest := uploadDeclared(t, lax, "raw", randomBytes(4096))
	if _, ok := honest["glimpse.detected_format"]; ok || honest["virtual_size"] != float64(4096) {
		t.Errorf("matching upload: glimpse.detected_format %v, virtual_size %v", honest["glimpse.detected_format"], honest["virtual_size"])
	}
	// Unsafe content is refused whatever it claims to be.
	for _, h := range converttest.HostileImages() {
		for _, declared := range []string{h.DiskFormat, "raw", "vhd"} {
			r, img := uploadDeclared(t, lax, declared, h.Data)
			if r.status != http.StatusUnsupportedMediaType || img["status"] != "killed" || !strings.Contains(fmt.Sprint(img["glimpse.error"]), h.Reason) {
				t.Errorf("%s declared %s, mismatch allowed: %d, %v, %v", h.Name, declared, r.status, img["status"], img["glimpse.error"])
			}
		}
	}
}
