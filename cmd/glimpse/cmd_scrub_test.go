package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
)

// scrubStore is what the scrub and gc test does to a store behind the
// daemon's back.
type scrubStore struct {
	args []string
	// replace overwrites the stored content of image id with b.
	replace func(t *testing.T, id string, b []byte)
	// plant stores an object under key that no image owns.
	plant func(t *testing.T, key string)
	// plantIncomplete leaves an incomplete write under key, as a crashed
	// upload does; incomplete counts those left.
	plantIncomplete func(t *testing.T, key string)
	incomplete      func(t *testing.T) int
	// keys lists the stored objects.
	keys func(t *testing.T) []string
}

func TestScrubAndGCOnLocalStore(t *testing.T) {
	needMount(t)
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "data", "images")
	runScrubAndGC(t, tmp, scrubStore{
		replace: func(t *testing.T, id string, b []byte) {
			if err := os.WriteFile(filepath.Join(dir, id), b, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		plant: func(t *testing.T, key string) {
			if err := os.WriteFile(filepath.Join(dir, key), []byte("nobody's"), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		plantIncomplete: func(t *testing.T, key string) {
			if err := os.WriteFile(filepath.Join(dir, ".partial", key+".12345"), []byte("half"), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		incomplete: func(t *testing.T) int { return len(ls(t, filepath.Join(dir, ".partial"))) },
		keys: func(t *testing.T) []string {
			var keys []string
			for _, k := range ls(t, dir) {
				if !strings.HasPrefix(k, ".") {
					keys = append(keys, k)
				}
			}
			return keys
		},
	})
}

func TestScrubAndGCOnS3(t *testing.T) {
	needMount(t)
	client := startMinIO(t)
	ctx := context.Background()
	const bucket, prefix = "scrubbed", "glimpse/"
	put := func(t *testing.T, key string, b []byte) {
		if _, err := client.PutObject(ctx, bucket, prefix+key, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	core := minio.Core{Client: client}
	runScrubAndGC(t, t.TempDir(), scrubStore{
		args:    []string{"--store", "s3://" + bucket + "/glimpse"},
		replace: put,
		plant:   func(t *testing.T, key string) { put(t, key, []byte("nobody's")) },
		plantIncomplete: func(t *testing.T, key string) {
			if _, err := core.NewMultipartUpload(ctx, bucket, prefix+key, minio.PutObjectOptions{}); err != nil {
				t.Fatal(err)
			}
		},
		incomplete: func(t *testing.T) int {
			n := 0
			for u := range client.ListIncompleteUploads(ctx, bucket, "", true) {
				if u.Err != nil {
					t.Fatal(u.Err)
				}
				n++
			}
			return n
		},
		keys: func(t *testing.T) []string {
			var keys []string
			for _, k := range objects(t, client, bucket) {
				keys = append(keys, strings.TrimPrefix(k, prefix))
			}
			return keys
		},
	})
}

// runScrubAndGC: a flipped byte and a truncated object are found by
// `glimpse scrub` (exit status 1, one line each) and, with --mark, the
// images are deactivated with the reason; an orphan and a stale incomplete
// write are listed by `gc --dry-run`, removed by `gc`, and the good images
// stay whole. Then the same commands run on the stopped daemon's data
// with --data, and --data refuses while a daemon holds the registry.
func runScrubAndGC(t *testing.T, tmp string, st scrubStore) {
	data, mnt := filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	d := startDaemon(t, data, mnt, st.args...)
	ctx := context.Background()
	url := "--os-image-url=http://" + d.addr
	ids := map[string]string{}
	contents := map[string][]byte{}
	for _, name := range []string{"good", "flipped", "truncated"} {
		b := content(int64(len(name)), 3<<20)
		id, err := restCreate(ctx, d.addr, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := restUpload(ctx, d.addr, id, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		ids[name], contents[name] = id, b
	}
	flipped := bytes.Clone(contents["flipped"])
	flipped[1<<20] ^= 1
	st.replace(t, ids["flipped"], flipped)
	st.replace(t, ids["truncated"], contents["truncated"][:1<<20])
	st.plant(t, "planted-orphan")
	st.plantIncomplete(t, "crashed-upload")

	out, err := glimpseCLI(t, "scrub", url)
	if err == nil || !strings.Contains(err.Error(), "3 problem(s)") {
		t.Fatalf("scrub of a damaged store: %v\n%s", err, out)
	}
	for _, want := range []string{"hash     image " + ids["flipped"], "size     image " + ids["truncated"], "orphan   image - key planted-orphan"} {
		if !strings.Contains(out, want) {
			t.Errorf("scrub output lacks %q:\n%s", want, out)
		}
	}
	if img := restGet(t, d.addr, ids["flipped"]); img.Status != "active" {
		t.Fatalf("scrub without --mark changed the image: %s", img.Status)
	}

	out, _ = glimpseCLI(t, "scrub", "--mark", "--json", url)
	var rep struct {
		Problems []struct {
			Image, Kind string
			Marked      bool
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("scrub --json: %v\n%s", err, out)
	}
	if len(rep.Problems) != 3 {
		t.Fatalf("scrub --mark: %+v", rep)
	}
	for _, name := range []string{"flipped", "truncated"} {
		code, b, err := restCall(ctx, "GET", "http://"+d.addr+"/v2/images/"+ids[name], nil, "")
		if err != nil || code != 200 {
			t.Fatal(code, err)
		}
		var img map[string]any
		json.Unmarshal(b, &img)
		if img["status"] != "deactivated" || img["glimpse_scrub_error"] == nil {
			t.Errorf("%s after scrub --mark: status %v, glimpse_scrub_error %v", name, img["status"], img["glimpse_scrub_error"])
		}
	}
	if img := restGet(t, d.addr, ids["good"]); img.Status != "active" || !img.holds(sourceOf(contents["good"])) {
		t.Fatalf("good image after scrub --mark: %+v", img)
	}

	out = mustGlimpse(t, "gc", "--dry-run", url)
	if !strings.Contains(out, "would remove orphan planted-orphan") || !strings.Contains(out, "would remove 1 orphaned object(s)") {
		t.Fatalf("gc --dry-run: %s", out)
	}
	if keys := st.keys(t); len(keys) != 4 {
		t.Fatalf("gc --dry-run removed something: %v", keys)
	}
	if n := st.incomplete(t); n != 1 {
		t.Fatalf("incomplete writes before gc: %d, want the planted one", n)
	}
	out = mustGlimpse(t, "gc", url)
	if !strings.Contains(out, "removed 1 orphaned object(s); stale incomplete writes aborted") {
		t.Fatalf("gc: %s", out)
	}
	want := []string{ids["good"], ids["flipped"], ids["truncated"]}
	if got := st.keys(t); !sameSet(got, want) {
		t.Fatalf("store after gc: %v, want %v", got, want)
	}
	if n := st.incomplete(t); n != 0 {
		t.Fatalf("incomplete writes after gc: %d", n)
	}

	// While the daemon holds the registry, --data refuses and says why.
	out, err = glimpseCLI(t, append([]string{"gc", "--data", data}, st.args...)...)
	if err == nil || !strings.Contains(err.Error(), "is glimpse serve running") {
		t.Fatalf("gc --data beside a running daemon: %v\n%s", err, out)
	}
	d.stop()
	st.plant(t, "second-orphan")
	out = mustGlimpse(t, append([]string{"gc", "--data", data}, st.args...)...)
	if !strings.Contains(out, "removed orphan second-orphan") {
		t.Fatalf("gc --data: %s", out)
	}
	out, err = glimpseCLI(t, append([]string{"scrub", "--data", data}, st.args...)...)
	if err == nil || !strings.Contains(out, "2 problem(s)") {
		t.Fatalf("scrub --data: %v\n%s", err, out)
	}
	if _, err := glimpseCLI(t, "gc", "--data", filepath.Join(tmp, "nothing")); err == nil || !strings.Contains(err.Error(), "holds no registry") {
		t.Fatalf("gc --data on an empty directory: %v", err)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]bool{}
	for _, x := range a {
		seen[x] = true
	}
	for _, x := range b {
		if !seen[x] {
			return false
		}
	}
	return fmt.Sprint(len(seen)) == fmt.Sprint(len(a))
}
