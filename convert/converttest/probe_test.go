package converttest

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glimpse-project/glimpse/convert"
)

// TestDescriptorsQemuProbesAreRefused: qemu-img, given no -f, opens each
// descriptor form as a vmdk that reads the host file it names; Inspect
// refuses every one of them as unsafe, so none passes as raw.
func TestDescriptorsQemuProbesAreRefused(t *testing.T) {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil && os.Getenv("CI") != "" {
		t.Fatalf("qemu-img is required in CI: %v", err)
	}
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, bytes.Repeat([]byte("host secret\n"), 100), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range VMDKDescriptors(secret) {
		t.Run(d.Name, func(t *testing.T) {
			_, err := convert.Inspect(bytes.NewReader(d.Data), int64(len(d.Data)))
			if !errors.Is(err, convert.ErrUnsafe) || !strings.Contains(err.Error(), "names other files") {
				t.Errorf("Inspect: %v, want the descriptor refused as unsafe", err)
			}
			if qemuImg == "" {
				return
			}
			p := filepath.Join(dir, "desc")
			if err := os.WriteFile(p, d.Data, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(qemuImg, "info", "--output", "json", p).Output()
			if err != nil {
				t.Fatalf("qemu-img info: %v", err)
			}
			var info struct {
				Format string `json:"format"`
			}
			if err := json.Unmarshal(out, &info); err != nil || info.Format != "vmdk" {
				t.Errorf("qemu-img probes this form as %q (%v): the fixture no longer shows qemu's probe", info.Format, err)
			}
		})
	}
}
