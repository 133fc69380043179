package main

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/backend/backendtest"
)

// waitChecksum polls image id over REST until its background hash has
// settled (checksum set, or the image left importing) and returns it.
func waitChecksum(t *testing.T, url, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		img := getImage(t, url, id)
		if img == nil {
			t.Fatalf("image %s is gone", id)
		}
		if img["checksum"] != nil || img["status"] == "killed" {
			return img
		}
		if time.Now().After(deadline) {
			t.Fatalf("image %s not hashed after 60s: %v", id, img)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The real glance CLI: location-add, image-show, image-download,
// location-update, location-delete, and validation data.
func TestGlanceCLILocations(t *testing.T) {
	t.Parallel()
	web := backendtest.NewWebOrigin(t)
	data := make([]byte, 2<<20+5)
	rand.Read(data)
	loc := web.Put("/disk.raw", data)

	strict := newGlanceCLI(t, serveInProcess(t, serveOptions{}), "T")
	id := field(t, strict.must("image-create", "--name", "ssrf", "--disk-format", "raw", "--container-format", "bare"), "id")
	if out, errs, ok := strict.run("location-add", "--url", loc, id); ok || !strings.Contains(out+errs, "not allowed") {
		t.Fatalf("location-add of a loopback URL without --web-download-allow-private: ok=%v\n%s%s", ok, out, errs)
	}

	url := serveInProcess(t, serveOptions{allowPrivate: true})
	g := newGlanceCLI(t, url, "T")
	id = field(t, g.must("image-create", "--name", "remote", "--disk-format", "raw", "--container-format", "bare"), "id")
	out := g.must("location-add", "--url", loc, "--metadata", `{"mirror": "eu"}`, id)
	if field(t, out, "status") != "active" || field(t, out, "size") != "2097157" || field(t, out, "direct_url") != loc {
		t.Fatalf("location-add:\n%s", out)
	}
	img := waitChecksum(t, url, id)
	sum := md5.Sum(data)
	if img["checksum"] != hex.EncodeToString(sum[:]) || img["os_hash_algo"] != "sha512" {
		t.Fatalf("hashes of the location image: %v", img)
	}
	if out := g.must("image-show", id); !strings.Contains(out, loc) || field(t, out, "checksum") != hex.EncodeToString(sum[:]) {
		t.Fatalf("image-show:\n%s", out)
	}
	dst := filepath.Join(t.TempDir(), "out.raw")
	g.must("image-download", "--file", dst, id)
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Fatal("image-download of a location image: content differs")
	}
	g.must("location-update", "--url", loc, "--metadata", `{"mirror": "us"}`, id)
	if locs, _ := json.Marshal(getImage(t, url, id)["locations"]); !strings.Contains(string(locs), `"mirror":"us"`) {
		t.Fatalf("after location-update: %s", locs)
	}
	if out, errs, ok := g.run("location-delete", "--url", loc, id); ok || !strings.Contains(out+errs, "403") {
		t.Fatalf("location-delete of the last location: ok=%v\n%s%s", ok, out, errs)
	}

	// Validation data that the content contradicts: the image is killed
	// with the reason once the background pass has read it.
	liar := field(t, g.must("image-create", "--name", "liar", "--disk-format", "raw", "--container-format", "bare"), "id")
	out = g.must("location-add", "--url", loc, "--checksum", strings.Repeat("0", 32), liar)
	if st := field(t, out, "status"); st != "importing" && st != "killed" {
		t.Fatalf("location-add with validation data: status %s", st)
	}
	if img := waitChecksum(t, url, liar); img["status"] != "killed" || !strings.Contains(img["glimpse.error"].(string), "does not match") {
		t.Fatalf("image with wrong validation data: %v", img)
	}

	// A server that ignores Range is refused at location-add, saying so.
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		if r.Method == http.MethodGet {
			w.Write(data)
		}
	}))
	defer plain.Close()
	unranged := field(t, g.must("image-create", "--name", "unranged", "--disk-format", "raw", "--container-format", "bare"), "id")
	if out, errs, ok := g.run("location-add", "--url", plain.URL+"/disk.raw", unranged); ok || !strings.Contains(out+errs, "Range") {
		t.Fatalf("location-add on a server that ignores Range: ok=%v\n%s%s", ok, out, errs)
	}
	if img := getImage(t, url, unranged); img["status"] != "queued" {
		t.Fatalf("image after a refused location: %v", img)
	}

	g.must("image-delete", id)
	if web.Writes.Load() != 0 {
		t.Fatal("deleting a location image sent a write to the web server")
	}
	if resp, err := http.Get(loc); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the URL after image-delete: %v %v", resp, err)
	}
}

// glimpse image-create --location, then the mount: qemu-img info reads a
// little of the image, cat reads it all, a restart keeps it, a URL that
// goes away gives EIO while the daemon serves on, rm leaves the URL alone.
func TestLocationMount(t *testing.T) {
	needMount(t)
	needTool(t, "qemu-img")
	web := backendtest.NewWebOrigin(t)
	const size = 128 << 20
	data := make([]byte, size)
	rand.Read(data[:1<<20])
	rand.Read(data[size-1<<20:])
	loc := web.Put("/big.raw", data)
	small := make([]byte, 1<<20)
	rand.Read(small)
	goneLoc := web.Put("/gone.raw", small)

	tmp := t.TempDir()
	dataDir, mnt := filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	d := startDaemon(t, dataDir, mnt, "--web-download-allow-private")
	url := "http://" + d.addr
	out := mustGlimpse(t, "--os-image-url", url, "image-create", "--name", "big.raw", "--location", loc)
	id := field(t, out, "id")
	if field(t, out, "status") != "active" || field(t, out, "disk_format") != "raw" || field(t, out, "size") != "134217728" {
		t.Fatalf("image-create --location:\n%s", out)
	}
	gone := field(t, mustGlimpse(t, "--os-image-url", url, "image-create", "--name", "gone.raw", "--location", goneLoc), "id")
	waitChecksum(t, url, id)
	waitChecksum(t, url, gone)

	path := filepath.Join(mnt, "active", "big.raw")
	before := web.Served.Load()
	info := mustRun(t, "qemu-img", "info", "--output", "json", path)
	read := web.Served.Load() - before
	if !strings.Contains(info, `"format": "raw"`) || !strings.Contains(info, `"virtual-size": 134217728`) {
		t.Fatalf("qemu-img info through the mount:\n%s", info)
	}
	if read > size/16 {
		t.Fatalf("qemu-img info of a %d-byte location image made the web server send %d bytes", size, read)
	}
	t.Logf("qemu-img info of a %d MiB location image: %d KiB served", size>>20, read>>10)
	if got := xattr(t, path, "checksum"); got != waitChecksum(t, url, id)["checksum"] {
		t.Fatalf("user.checksum %q", got)
	}

	// The URL of the other image goes away: EIO, and the daemon serves on.
	web.Remove("/gone.raw")
	mustFail(t, "Input/output error", "cat", filepath.Join(mnt, "active", "gone.raw"))
	if resp, err := http.Get(url + "/v2/images/" + gone + "/file"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("REST download of a vanished location: %v %v", resp, err)
	}

	// A restart (with recovery) keeps the image readable from the URL.
	d.stop()
	d = startDaemon(t, dataDir, mnt, "--web-download-allow-private")
	url = "http://" + d.addr
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("cat of the location image after a restart: %v (equal %v)", err, bytes.Equal(got, data))
	}
	mustRun(t, "rm", path)
	if getImage(t, url, id) != nil {
		t.Fatal("image still there after rm")
	}
	if web.Writes.Load() != 0 {
		t.Fatal("rm sent a write to the web server")
	}
	if resp, err := http.Head(loc); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the URL after rm: %v %v", resp, err)
	}
}
