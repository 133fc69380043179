package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestOneCatalogue checks that the mount and the REST listener are two faces
// of one catalogue: changes made through REST are visible in the mount when
// the call returns (the kernel's caches are invalidated, including a
// negative lookup cached just before), and the other way round.
func TestOneCatalogue(t *testing.T) {
	t.Parallel()
	if f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err != nil {
		if os.Getenv("CI") != "" && os.Getuid() == 0 {
			t.Fatalf("/dev/fuse: %v", err)
		}
		t.Skipf("no FUSE here: %v", err)
	} else {
		f.Close()
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(mnt, 0o755)
	url := serveInProcess(t, serveOptions{mount: mnt, fsProject: "admin"})

	call := func(method, path, ct string, body io.Reader) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, url+path, body)
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		json.NewDecoder(resp.Body).Decode(&v)
		return resp.StatusCode, v
	}

	// A negative lookup first, so the kernel has something to forget.
	if _, err := os.Stat(filepath.Join(mnt, "active", "rest.img")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("before upload: %v", err)
	}
	st, img := call("POST", "/v2/images", "application/json", strings.NewReader(`{"name": "rest.img", "disk_format": "raw", "container_format": "bare"}`))
	if st != 201 {
		t.Fatalf("create: %d", st)
	}
	id := img["id"].(string)
	data := bytes.Repeat([]byte("glimpse!"), 64<<10)
	if st, _ := call("PUT", "/v2/images/"+id+"/file", "application/octet-stream", io.MultiReader(bytes.NewReader(data))); st != 204 {
		t.Fatalf("upload: %d", st)
	}
	fi, err := os.Stat(filepath.Join(mnt, "active", "rest.img"))
	if err != nil || fi.Size() != int64(len(data)) {
		t.Fatalf("uploaded image in the mount: %v, %v", fi, err)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "images", id)); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("content through the mount: %v", err)
	}

	// Rename and deactivate through REST.
	if st, _ := call("PATCH", "/v2/images/"+id, "application/openstack-images-v2.1-json-patch", strings.NewReader(`[{"op": "replace", "path": "/name", "value": "renamed.img"}]`)); st != 200 {
		t.Fatalf("rename: %d", st)
	}
	if _, err := os.Stat(filepath.Join(mnt, "active", "rest.img")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("old name after REST rename: %v", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "active", "renamed.img")); err != nil {
		t.Fatalf("new name after REST rename: %v", err)
	}
	if st, _ := call("POST", "/v2/images/"+id+"/actions/deactivate", "", nil); st != 204 {
		t.Fatalf("deactivate: %d", st)
	}
	if _, err := os.Stat(filepath.Join(mnt, "deactivated", "renamed.img")); err != nil {
		t.Fatalf("deactivated through REST, not in deactivated/: %v", err)
	}
	if st, _ := call("POST", "/v2/images/"+id+"/actions/reactivate", "", nil); st != 204 {
		t.Fatalf("reactivate: %d", st)
	}

	// Through the mount, seen by REST at once.
	if err := os.WriteFile(filepath.Join(mnt, "active", "copied.img"), data[:4096], 0o644); err != nil {
		t.Fatal(err)
	}
	_, list := call("GET", "/v2/images?name=copied.img", "", nil)
	imgs, _ := list["images"].([]any)
	if len(imgs) != 1 || imgs[0].(map[string]any)["status"] != "active" || imgs[0].(map[string]any)["size"] != float64(4096) {
		t.Fatalf("image copied into the mount, through REST: %v", list)
	}

	copied := imgs[0].(map[string]any)["id"].(string)
	show := func() map[string]any {
		t.Helper()
		st, v := call("GET", "/v2/images/"+copied, "", nil)
		if st != 200 {
			t.Fatalf("GET image copied into the mount: %d", st)
		}
		return v
	}
	// Rename, property change, deactivation and deletion through the
	// mount, seen by REST at once.
	if err := os.Rename(filepath.Join(mnt, "active", "copied.img"), filepath.Join(mnt, "active", "moved.img")); err != nil {
		t.Fatal(err)
	}
	if v := show(); v["name"] != "moved.img" {
		t.Fatalf("renamed in the mount, REST name %v", v["name"])
	}
	if err := syscall.Setxattr(filepath.Join(mnt, "active", "moved.img"), "user.min_ram", []byte("512"), 0); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setxattr(filepath.Join(mnt, "active", "moved.img"), "user.os_distro", []byte("debian"), 0); err != nil {
		t.Fatal(err)
	}
	if v := show(); v["min_ram"] != float64(512) || v["os_distro"] != "debian" {
		t.Fatalf("setfattr in the mount, REST: min_ram %v os_distro %v", v["min_ram"], v["os_distro"])
	}
	if err := os.Rename(filepath.Join(mnt, "active", "moved.img"), filepath.Join(mnt, "deactivated", "moved.img")); err != nil {
		t.Fatal(err)
	}
	if v := show(); v["status"] != "deactivated" {
		t.Fatalf("deactivated in the mount, REST status %v", v["status"])
	}
	if err := os.Remove(filepath.Join(mnt, "deactivated", "moved.img")); err != nil {
		t.Fatal(err)
	}
	if st, _ := call("GET", "/v2/images/"+copied, "", nil); st != 404 {
		t.Fatalf("removed in the mount, REST GET: %d", st)
	}

	// Deleted through REST, gone from the mount.
	if st, _ := call("DELETE", "/v2/images/"+id, "", nil); st != 204 {
		t.Fatalf("delete: %d", st)
	}
	if _, err := os.Stat(filepath.Join(mnt, "active", "renamed.img")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("deleted through REST, still in the mount: %v", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "images", id)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("deleted through REST, still in images/: %v", err)
	}
}
