package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Debian's python3-openstackclient against a daemon without Keystone:
// --os-endpoint names the image endpoint (with /v2) and --os-auth-type
// admin_token (any token) or none skips Keystone. Without the client the
// test is skipped, unless CI is set, where it fails.
func TestOpenstackCLI(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("openstack"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the openstack CLI (python3-openstackclient) is required in CI: %v", err)
		}
		t.Skip("openstack CLI not installed")
	}
	url := serveInProcess(t, serveOptions{})
	home := t.TempDir()
	run := func(auth []string, args ...string) string {
		t.Helper()
		full := append(append([]string{"--os-endpoint", url + "/v2"}, auth...), args...)
		cmd := exec.Command("openstack", full...)
		cmd.Env = append(os.Environ(), "HOME="+home, "OS_CLOUD=", "OS_AUTH_URL=", "OS_USERNAME=", "OS_PASSWORD=", "OS_IMAGE_URL=", "OS_AUTH_TOKEN=")
		cmd.Dir = home
		cmd.Stdin = nil
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("openstack %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	token := []string{"--os-auth-type", "admin_token", "--os-token", "any"}
	none := []string{"--os-auth-type", "none"}

	data := make([]byte, 1<<20+9)
	rand.Read(data)
	src := filepath.Join(home, "disk.raw")
	os.WriteFile(src, data, 0o644)
	run(token, "image", "create", "--disk-format", "raw", "--container-format", "bare", "--file", src, "os-image")
	if out := run(none, "image", "list", "-f", "value", "-c", "Name", "-c", "Status"); strings.TrimSpace(out) != "os-image active" {
		t.Fatalf("image list: %q", out)
	}
	run(token, "image", "set", "--property", "os_distro=debian", "--min-ram", "256", "os-image")
	if out := run(token, "image", "show", "-f", "value", "-c", "min_ram", "os-image"); strings.TrimSpace(out) != "256" {
		t.Fatalf("image show min_ram: %q", out)
	}
	dst := filepath.Join(home, "copy.raw")
	run(token, "image", "save", "--file", dst, "os-image")
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Fatal("image save: content differs")
	}
	run(token, "image", "delete", "os-image")
	if out := run(token, "image", "list", "-f", "value"); strings.TrimSpace(out) != "" {
		t.Fatalf("image list after delete: %q", out)
	}
}
