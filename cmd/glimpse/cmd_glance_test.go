package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/backend/backendtest"
)

// glimpse's tag commands print what glance's print.
func TestTagCommandsPrintAsGlance(t *testing.T) {
	t.Parallel()
	url := serveInProcess(t, serveOptions{})
	g := newGlanceCLI(t, url, "T")
	a := field(t, mustGlimpse(t, "--os-image-url", url, "image-create", "--name", "a"), "id")
	b := field(t, g.must("image-create", "--name", "b"), "id")
	for _, tag := range []string{"web", "db"} {
		ours := mustGlimpse(t, "--os-image-url", url, "image-tag-update", a, tag)
		theirs := g.must("image-tag-update", b, tag)
		if strings.ReplaceAll(ours, a, b) != theirs {
			t.Fatalf("image-tag-update %s:\nglimpse:\n%s\nglance:\n%s", tag, ours, theirs)
		}
	}
	if out := mustGlimpse(t, "--os-image-url", url, "image-tag-delete", a, "web"); out != "" {
		t.Fatalf("image-tag-delete printed %q (glance prints nothing)", out)
	}
	if out := mustGlimpse(t, "--os-image-url", url, "image-show", a); field(t, out, "tags") != `["db"]` {
		t.Fatalf("tags after image-tag-delete:\n%s", out)
	}
	if out, err := glimpseCLI(t, "--os-image-url", url, "image-tag-delete", a, "nope"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("image-tag-delete of a missing tag: %v\n%s", err, out)
	}
}

// location-add, location-update and location-delete as glance's.
func TestLocationCommands(t *testing.T) {
	t.Parallel()
	web := backendtest.NewWebOrigin(t)
	data := make([]byte, 1<<20+7)
	rand.Read(data)
	loc := web.Put("/disk.raw", data)
	url := serveInProcess(t, serveOptions{allowPrivate: true})
	id := field(t, mustGlimpse(t, "--os-image-url", url, "image-create", "--name", "remote", "--disk-format", "raw", "--container-format", "bare"), "id")

	out := mustGlimpse(t, "--os-image-url", url, "location-add", "--url", loc, "--metadata", `{"mirror": "eu"}`, id)
	if field(t, out, "status") != "active" || field(t, out, "direct_url") != loc || !strings.Contains(field(t, out, "locations"), `"mirror": "eu"`) {
		t.Fatalf("location-add:\n%s", out)
	}
	out = mustGlimpse(t, "--os-image-url", url, "location-update", "--url", loc, "--metadata", `{"mirror": "us"}`, id)
	if !strings.Contains(field(t, out, "locations"), `"mirror": "us"`) {
		t.Fatalf("location-update:\n%s", out)
	}
	if out, err := glimpseCLI(t, "--os-image-url", url, "location-update", "--url", loc+"x", id); err == nil || !strings.Contains(err.Error(), "Unknown URL") {
		t.Fatalf("location-update of another URL: %v\n%s", err, out)
	}
	// The only location cannot go (403, as Glance refuses the last one).
	if out, err := glimpseCLI(t, "--os-image-url", url, "location-delete", "--url", loc, id); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("location-delete of the only location: %v\n%s", err, out)
	}
	if out, err := glimpseCLI(t, "--os-image-url", url, "location-add", "--url", loc, "--metadata", "[1]", id); exitCode(err) != 2 {
		t.Fatalf("--metadata that is not an object: %v\n%s", err, out)
	}
	// Validation data: the image stays importing until verified.
	id2 := field(t, mustGlimpse(t, "--os-image-url", url, "image-create", "--name", "checked", "--disk-format", "raw", "--container-format", "bare"), "id")
	if out, err := glimpseCLI(t, "--os-image-url", url, "location-add", "--url", loc, "--checksum", "abc", id2); err == nil || !strings.Contains(err.Error(), "checksum (abc)") {
		t.Fatalf("location-add --checksum abc: %v\n%s", err, out)
	}
}

// image-stage then image-import (glance-direct), image-create-via-import
// with a file and with web-download.
func TestImportCommands(t *testing.T) {
	t.Parallel()
	web := backendtest.NewWebOrigin(t)
	data := make([]byte, 3<<20+1)
	rand.Read(data)
	loc := web.Put("/disk.raw", data)
	url := serveInProcess(t, serveOptions{allowPrivate: true})
	src := filepath.Join(t.TempDir(), "disk.raw")
	os.WriteFile(src, data, 0o644)
	cli := func(args ...string) string {
		return mustGlimpse(t, append([]string{"--os-image-url", url}, args...)...)
	}
	downloaded := func(id string) []byte {
		out := filepath.Join(t.TempDir(), "out")
		cli("image-download", "--file", out, id)
		b, _ := os.ReadFile(out)
		return b
	}

	id := field(t, cli("image-create", "--name", "staged", "--disk-format", "raw", "--container-format", "bare"), "id")
	if out := cli("image-stage", "--file", src, id); out != "" {
		t.Fatalf("image-stage printed %q", out)
	}
	if st := field(t, cli("image-show", id), "status"); st != "uploading" {
		t.Fatalf("after image-stage: %s, want uploading", st)
	}
	if out := cli("image-import", "--import-method", "glance-direct", id); field(t, out, "status") != "active" {
		t.Fatalf("image-import:\n%s", out)
	}
	if !bytes.Equal(downloaded(id), data) {
		t.Fatal("glance-direct import: content differs")
	}

	out := cli("image-create-via-import", "--name", "direct", "--disk-format", "raw", "--container-format", "bare", "--file", src)
	if field(t, out, "status") != "active" || field(t, out, "size") != "3145729" {
		t.Fatalf("image-create-via-import --file:\n%s", out)
	}
	out = cli("image-create-via-import", "--name", "fetched", "--disk-format", "raw", "--container-format", "bare", "--import-method", "web-download", "--uri", loc)
	id = field(t, out, "id")
	deadline := time.Now().Add(30 * time.Second)
	for field(t, cli("image-show", id), "status") == "importing" && time.Now().Before(deadline) {
		<-time.After(50 * time.Millisecond)
	}
	if !bytes.Equal(downloaded(id), data) {
		t.Fatal("web-download via image-create-via-import: content differs")
	}
	for _, args := range [][]string{
		{"image-create-via-import", "--name", "x", "--import-method", "web-download"},
		{"image-create-via-import", "--name", "x", "--uri", loc},
		{"image-create-via-import", "--name", "x", "--import-method", "copy-image"},
		{"image-import", "--import-method", "web-download", id},
	} {
		if out, err := glimpseCLI(t, append([]string{"--os-image-url", url}, args...)...); exitCode(err) != 2 {
			t.Errorf("glimpse %v: %v\n%s; want a usage error", args, err, out)
		}
	}
}
