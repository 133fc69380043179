package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// glanceCLI runs Debian's python3-glanceclient against url. Without it the
// test is skipped, unless CI is set, where it fails.
type glanceCLI struct {
	t    *testing.T
	url  string
	tok  string
	home string
}

func newGlanceCLI(t *testing.T, url, token string) *glanceCLI {
	t.Helper()
	if _, err := exec.LookPath("glance"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the glance CLI (python3-glanceclient) is required in CI: %v", err)
		}
		t.Skip("glance CLI not installed")
	}
	return &glanceCLI{t: t, url: url, tok: token, home: t.TempDir()}
}

// run runs glance with stdin closed (glance uploads a non-TTY stdin) and
// returns stdout, stderr and whether it succeeded.
func (g *glanceCLI) run(args ...string) (string, string, bool) {
	g.t.Helper()
	full := append([]string{"--os-image-url", g.url, "--os-auth-token", g.tok}, args...)
	cmd := exec.Command("sh", append([]string{"-c", `exec glance "$@" <&-`, "glance"}, full...)...)
	cmd.Env = append(os.Environ(), "HOME="+g.home, "OS_AUTH_URL=", "OS_USERNAME=", "OS_PASSWORD=", "OS_CLOUD=")
	cmd.Dir = g.home
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err == nil
}

func (g *glanceCLI) must(args ...string) string {
	g.t.Helper()
	out, errs, ok := g.run(args...)
	if !ok {
		g.t.Fatalf("glance %s failed:\n%s%s", strings.Join(args, " "), out, errs)
	}
	return out
}

// field reads one row of glance's property table.
func field(t *testing.T, table, key string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\| ` + regexp.QuoteMeta(key) + ` +\| (.*?) +\|$`).FindStringSubmatch(table)
	if m == nil {
		t.Fatalf("no %s in:\n%s", key, table)
	}
	return m[1]
}

func getImage(t *testing.T, url, id string) map[string]any {
	t.Helper()
	resp, err := http.Get(url + "/v2/images/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestGlanceCLI(t *testing.T) {
	t.Parallel()
	url := serveInProcess(t, serveOptions{})
	g := newGlanceCLI(t, url, "T")
	dir := t.TempDir()
	data := make([]byte, 3<<20+17)
	rand.Read(data)
	src := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}

	out := g.must("image-create", "--name", "cli-image", "--disk-format", "raw", "--container-format", "bare", "--file", src)
	id := field(t, out, "id")
	if st := field(t, out, "status"); st != "active" {
		t.Fatalf("image-create: status %s, want active", st)
	}
	if sz := field(t, out, "size"); sz != "3145745" {
		t.Fatalf("image-create: size %s", sz)
	}

	if out := g.must("image-list"); !strings.Contains(out, id) || !strings.Contains(out, "cli-image") {
		t.Fatalf("image-list lacks the image:\n%s", out)
	}
	if out := g.must("image-show", id); field(t, out, "checksum") == "" || field(t, out, "os_hash_algo") != "sha512" {
		t.Fatalf("image-show:\n%s", out)
	}

	dst := filepath.Join(dir, "out.raw")
	g.must("image-download", "--file", dst, id)
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Fatal("image-download: content differs")
	}

	out = g.must("image-update", "--property", "os_distro=debian", "--min-ram", "512", "--name", "renamed", id)
	if field(t, out, "os_distro") != "debian" || field(t, out, "min_ram") != "512" || field(t, out, "name") != "renamed" {
		t.Fatalf("image-update:\n%s", out)
	}
	// An existing custom property is replaced.
	if out := g.must("image-update", "--property", "os_distro=ubuntu", id); field(t, out, "os_distro") != "ubuntu" {
		t.Fatalf("image-update of an existing property:\n%s", out)
	}
	g.must("image-tag-update", id, "golden")
	g.must("image-tag-update", id, "v1")
	img := getImage(t, url, id)
	if tags, _ := json.Marshal(img["tags"]); !strings.Contains(string(tags), "golden") || !strings.Contains(string(tags), "v1") {
		t.Fatalf("tags after image-tag-update: %s", tags)
	}
	// A tagged image still updates (glanceclient adds a replace /tags op).
	g.must("image-update", "--min-disk", "2", id)

	g.must("image-deactivate", id)
	if st := getImage(t, url, id)["status"]; st != "deactivated" {
		t.Fatalf("after image-deactivate: %v", st)
	}
	g.must("image-reactivate", id)
	if st := getImage(t, url, id)["status"]; st != "active" {
		t.Fatalf("after image-reactivate: %v", st)
	}

	// glance-direct: stage then import.
	out = g.must("image-create-via-import", "--name", "staged", "--disk-format", "raw", "--container-format", "bare", "--file", src)
	if field(t, out, "status") != "active" || field(t, out, "size") != "3145745" {
		t.Fatalf("image-create-via-import:\n%s", out)
	}

	g.must("image-delete", id, field(t, out, "id"))
	if getImage(t, url, id) != nil {
		t.Fatal("image still there after image-delete")
	}
	out, errs, ok := g.run("image-show", id)
	if ok || !strings.Contains(out+errs, "404") {
		t.Fatalf("image-show of a deleted image: ok=%v\n%s%s", ok, out, errs)
	}
}

// An upload over --image-size-cap gives glance the 413 (the daemon reads
// the rest of the body first), not a broken pipe.
func TestGlanceCLISizeCap(t *testing.T) {
	t.Parallel()
	url := serveInProcess(t, serveOptions{maxImageSize: 1 << 20})
	g := newGlanceCLI(t, url, "T")
	src := filepath.Join(t.TempDir(), "big.raw")
	if err := os.WriteFile(src, make([]byte, 40<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, ok := g.run("image-create", "--name", "too-big", "--disk-format", "raw", "--container-format", "bare", "--file", src)
	if ok || !strings.Contains(errs, "413") || strings.Contains(errs, "Broken pipe") {
		t.Fatalf("upload over the cap: ok=%v\n%s%s", ok, out, errs)
	}
}
