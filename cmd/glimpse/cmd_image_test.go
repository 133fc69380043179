package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// glimpseCLI runs glimpse's own commands in-process and returns stdout.
func glimpseCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	app := newApp()
	var out bytes.Buffer
	app.Writer = &out
	app.ErrWriter = &out
	err := app.RunContext(context.Background(), append([]string{"glimpse"}, args...))
	return out.String(), err
}

func mustGlimpse(t *testing.T, args ...string) string {
	t.Helper()
	out, err := glimpseCLI(t, args...)
	if err != nil {
		t.Fatalf("glimpse %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func TestImageCommands(t *testing.T) {
	t.Parallel()
	url := serveInProcess(t, serveOptions{})
	dir := t.TempDir()
	data := make([]byte, 1<<20+5)
	rand.Read(data)
	src := filepath.Join(dir, "file.img")
	os.WriteFile(src, data, 0o644)

	// The seed's form, with the endpoint flag before the command as glance
	// takes it.
	out := mustGlimpse(t, "--os-image-url", url, "image-create", "--name", "myimage", "--disk-format=raw", "--container-format=bare", "--file", src, "--is-public")
	id := field(t, out, "id")
	if field(t, out, "status") != "active" || field(t, out, "visibility") != "public" || field(t, out, "size") != "1048581" {
		t.Fatalf("image-create:\n%s", out)
	}

	// Flags after the command work too; --json for scripts.
	out = mustGlimpse(t, "image-list", "--os-image-url", url+"/v2", "--json")
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || list[0]["id"] != id {
		t.Fatalf("image-list --json: %v\n%s", err, out)
	}
	if out := mustGlimpse(t, "--os-image-url", url, "image-list"); !strings.Contains(out, "| "+id+" | myimage |") {
		t.Fatalf("image-list:\n%s", out)
	}

	out = mustGlimpse(t, "--os-image-url", url, "image-update", "--name", "renamed", "--min-ram", "0", "--property", "os_distro=debian", "--protected", "True", id)
	if field(t, out, "name") != "renamed" || field(t, out, "os_distro") != "debian" || field(t, out, "protected") != "True" {
		t.Fatalf("image-update:\n%s", out)
	}
	if _, err := glimpseCLI(t, "--os-image-url", url, "image-delete", id); err == nil {
		t.Fatal("deleting a protected image succeeded")
	}
	mustGlimpse(t, "--os-image-url", url, "image-update", "--protected", "false", "--remove-property", "os_distro", id)

	dst := filepath.Join(dir, "out.img")
	mustGlimpse(t, "--os-image-url", url, "image-download", "--file", dst, id)
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Fatal("image-download: content differs")
	}
	if out := mustGlimpse(t, "--os-image-url", url, "image-tag-update", id, "golden"); !strings.Contains(out, "| "+id+" | ['golden'] |") {
		t.Fatalf("image-tag-update:\n%s", out)
	}
	mustGlimpse(t, "--os-image-url", url, "image-deactivate", id)
	if out := mustGlimpse(t, "--os-image-url", url, "image-show", id); field(t, out, "status") != "deactivated" {
		t.Fatalf("after deactivate:\n%s", out)
	}
	mustGlimpse(t, "--os-image-url", url, "image-reactivate", id)
	mustGlimpse(t, "--os-image-url", url, "image-delete", id)

	_, err := glimpseCLI(t, "--os-image-url", url, "image-show", id)
	if err == nil || !strings.Contains(err.Error(), "404") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("image-show of a deleted image: %v", err)
	}
	_, err = glimpseCLI(t, "--os-image-url", url, "image-create", "--name", "x", "--file", src)
	if err == nil || !strings.Contains(err.Error(), "--disk-format") {
		t.Fatalf("--file without formats: %v", err)
	}
	_, err = glimpseCLI(t, "--os-image-url", url, "image-create", "--name", "x", "--disk-format", "floppy")
	if err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("unknown disk format: %v", err)
	}
}

// OS_IMAGE_URL and OS_AUTH_TOKEN configure the commands, as for glance.
func TestImageCommandsEnv(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	os.WriteFile(tokens, []byte(`{"tokens": {"sekrit": {"project": "p1", "roles": ["member"]}}}`), 0o600)
	url := serveInProcess(t, serveOptions{authTokens: tokens})
	t.Setenv("OS_IMAGE_URL", url)
	t.Setenv("OS_AUTH_TOKEN", "sekrit")
	out := mustGlimpse(t, "image-create", "--name", "env-image")
	if field(t, out, "owner") != "p1" {
		t.Fatalf("owner:\n%s", out)
	}
	if out := mustGlimpse(t, "image-list"); !strings.Contains(out, "env-image") {
		t.Fatalf("image-list:\n%s", out)
	}
	// Members may not publicize; the error is one readable line.
	_, err := glimpseCLI(t, "image-create", "--name", "pub", "--is-public")
	if err == nil || !strings.Contains(err.Error(), "403") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("member --is-public: %v", err)
	}
	// A flag beats the environment.
	_, err = glimpseCLI(t, "--os-auth-token", "wrong", "image-list")
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong token: %v", err)
	}
}

func TestImageCreateLocation(t *testing.T) {
	t.Parallel()
	payload := bytes.Repeat([]byte("remote"), 10000)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(payload))
	}))
	defer origin.Close()
	strict := serveInProcess(t, serveOptions{})
	_, err := glimpseCLI(t, "--os-image-url", strict, "image-create", "--name", "loop", "--disk-format", "raw", "--container-format", "bare", "--location", origin.URL+"/disk.raw")
	if err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("--location on loopback without --web-download-allow-private: %v", err)
	}
	url := serveInProcess(t, serveOptions{allowPrivate: true})
	out := mustGlimpse(t, "--os-image-url", url, "image-create", "--name", "remote", "--disk-format", "raw", "--container-format", "bare", "--location", origin.URL+"/disk.raw")
	if field(t, out, "status") != "active" || field(t, out, "size") != "60000" || field(t, out, "direct_url") != origin.URL+"/disk.raw" {
		t.Fatalf("image-create --location:\n%s", out)
	}
	// --copy-from imports a copy (web-download): no location.
	out = mustGlimpse(t, "--os-image-url", url, "image-create", "--name", "copied", "--disk-format", "raw", "--container-format", "bare", "--copy-from", origin.URL+"/disk.raw")
	if field(t, out, "status") != "active" || field(t, out, "size") != "60000" || strings.Contains(out, "direct_url") {
		t.Fatalf("image-create --copy-from:\n%s", out)
	}
	if _, err := glimpseCLI(t, "--os-image-url", url, "image-create", "--name", "both", "--location", origin.URL, "--copy-from", origin.URL); err == nil {
		t.Fatal("--location with --copy-from was taken")
	}
}
