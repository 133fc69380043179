package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/glimpse-project/glimpse/api"
	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/convert/converttest"
	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/lifecycletest"
	"github.com/glimpse-project/glimpse/meta"
)

// hostileEnv is a real lifecycle behind a real HTTP server (the daemon's
// http.Server, timeouts included) on loopback.
func hostileEnv(t *testing.T, cfg lifecycle.Config, opts api.Options) (*env, lifecycletest.Env) {
	t.Helper()
	lt := lifecycletest.New(t, cfg)
	s, err := api.New(lt.Service, opts)
	if err != nil {
		t.Fatal(err)
	}
	s.SetReady(true)
	srv := httptest.NewUnstartedServer(s)
	srv.Config = api.NewHTTPServer(s, opts.Timeouts)
	srv.Start()
	t.Cleanup(func() { srv.Close(); s.Close() })
	e := &env{t: t, url: srv.URL, svc: lt.Service}
	if opts.Timeouts.Idle > 0 {
		// A kept-alive connection reused just as the server's short idle
		// timeout closes it fails a POST with a reset (net/http retries
		// only idempotent requests): these clients never keep one.
		e.client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	}
	return e, lt
}

// snapshot is the whole registry, as JSON, to show that a refused request
// changed nothing.
func snapshot(t *testing.T, svc *lifecycle.Service) string {
	t.Helper()
	var all []*meta.Image
	if err := svc.All(context.Background(), lifecycletest.Admin, func(img *meta.Image) error {
		all = append(all, img)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(all)
	return string(b)
}

// glanceError checks r is an error answer in Glance's JSON form (the
// client asked for JSON) with the status and a message containing words.
func glanceError(t *testing.T, what string, r reply, status int, words string) {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: %d, want %d (%.300s)", what, r.status, status, r.body)
		return
	}
	var body struct{ Message, Code, Title string }
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Errorf("%s: error body is not Glance's JSON (%v): %.300s", what, err, r.body)
		return
	}
	if !strings.HasPrefix(body.Code, fmt.Sprint(status)) || body.Title != http.StatusText(status) || !strings.Contains(body.Message, words) {
		t.Errorf("%s: error body %+v, want code %d and a message with %q", what, body, status, words)
	}
}

func nested(depth int) string {
	return strings.Repeat("[", depth) + strings.Repeat("]", depth)
}

// TestHostileREST sends bodies, paths and values a careless or hostile
// client might: each gets Glance's status and error body, the registry is
// left as it was, and the server answers the next request.
func TestHostileREST(t *testing.T) {
	e, _ := hostileEnv(t, lifecycle.Config{}, api.Options{})
	js := map[string]string{"Content-Type": "application/json", "Accept": "application/json"}
	patchHdr := map[string]string{"Content-Type": "application/openstack-images-v2.1-json-patch", "Accept": "application/json"}
	target := e.create(`{"name": "target", "disk_format": "raw", "container_format": "bare", "os_distro": "debian"}`)
	id := target["id"].(string)

	manyProps := func(n int) string {
		m := map[string]string{}
		for i := 0; i < n; i++ {
			m[fmt.Sprintf("k%05d", i)] = "v"
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	manyOps := func(n int) string {
		var ops []string
		for i := 0; i < n; i++ {
			ops = append(ops, fmt.Sprintf(`{"op": "add", "path": "/k%05d", "value": "v"}`, i))
		}
		return "[" + strings.Join(ops, ",") + "]"
	}

	cases := []struct {
		name        string
		method, url string
		hdr         map[string]string
		body        string
		status      int
		words       string
	}{
		// Bodies.
		{"create body over the 16 MiB cap", "POST", "/v2/images", js, `{"name": "` + strings.Repeat("x", 16<<20) + `"}`, 413, "larger than"},
		{"create lists nested 10k deep", "POST", "/v2/images", js, nested(10000), 400, "Expected list/dict"},
		{"create objects nested 100k deep", "POST", "/v2/images", js, strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000), 400, "Malformed JSON"},
		{"create value nested 100k deep", "POST", "/v2/images", js, `{"name": ` + nested(100000) + `}`, 400, "JSON"},
		{"create not JSON", "POST", "/v2/images", js, `name=x&disk_format=raw`, 400, "Malformed JSON"},
		{"create null body", "POST", "/v2/images", js, `null`, 400, "Expected list/dict"},
		{"create string body", "POST", "/v2/images", js, `"name"`, 400, "Expected list/dict"},
		{"create two documents", "POST", "/v2/images", js, `{} {}`, 400, "Malformed JSON"},
		{"create raw invalid UTF-8", "POST", "/v2/images", js, "{\"name\": \"a\xff\xfeb\"}", 400, "UTF-8"},
		{"create lone low surrogate in a name", "POST", "/v2/images", js, `{"name": "a\udc80"}`, 400, "surrogate"},
		{"create lone high surrogate in a key", "POST", "/v2/images", js, `{"k\ud800": "v"}`, 400, "surrogate"},
		{"create high surrogate then a letter in a value", "POST", "/v2/images", js, `{"k": "\ud800\u0041"}`, 400, "surrogate"},
		{"create lone surrogate in a tag", "POST", "/v2/images", js, `{"tags": ["\udfff"]}`, 400, "surrogate"},
		{"create empty body", "POST", "/v2/images", js, ``, 400, "Body expected"},
		{"create number too large", "POST", "/v2/images", js, `{"min_ram": 1e400}`, 400, "min_ram"},
		{"create min_ram past int32", "POST", "/v2/images", js, `{"min_ram": 2147483648}`, 400, "min_ram"},
		{"create 10000 properties", "POST", "/v2/images", js, manyProps(10000), 413, "Maximum number of image properties"},
		// Names, keys and values at and past Glance's limits.
		{"name of 256 characters", "POST", "/v2/images", js, `{"name": "` + strings.Repeat("é", 256) + `"}`, 400, "255"},
		{"property key of 256 bytes", "POST", "/v2/images", js, `{"` + strings.Repeat("k", 256) + `": "v"}`, 400, "255"},
		{"property key with a control byte", "POST", "/v2/images", js, `{"a\u0007b": "v"}`, 400, "control"},
		{"property key empty", "POST", "/v2/images", js, `{"": "v"}`, 400, "key"},
		{"property value of 65536 bytes", "POST", "/v2/images", js, `{"k": "` + strings.Repeat("v", 65536) + `"}`, 400, "65535"},
		{"tag of 256 bytes", "POST", "/v2/images", js, `{"tags": ["` + strings.Repeat("t", 256) + `"]}`, 400, "tag"},
		{"129 tags", "POST", "/v2/images", js, `{"tags": ` + manyTags(129) + `}`, 413, "tags"},
		// Patches.
		{"patch as application/json", "PATCH", "/v2/images/" + id, js, `[]`, 415, "The request media type application/json is not supported by this server"},
		{"patch nested 10k deep", "PATCH", "/v2/images/" + id, patchHdr, nested(10000), 400, "Expected list/dict"},
		{"patch value nested 100k deep", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "add", "path": "/k", "value": ` + nested(100000) + `}]`, 400, "Malformed JSON"},
		{"patch not a list", "PATCH", "/v2/images/" + id, patchHdr, `{"op": "add"}`, 400, "Expected list/dict"},
		{"patch list of numbers", "PATCH", "/v2/images/" + id, patchHdr, `[1, 2]`, 400, "Expected list/dict"},
		{"patch path /", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "add", "path": "/", "value": "x"}]`, 400, "JSON pointer"},
		{"patch path empty", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "add", "path": "", "value": "x"}]`, 400, "JSON pointer"},
		{"patch path /id", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "replace", "path": "/id", "value": "x"}]`, 403, "id"},
		{"patch path /status", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "replace", "path": "/status", "value": "active"}]`, 403, "status"},
		{"patch path /size", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "add", "path": "/size", "value": 1}]`, 403, "size"},
		// Admins (every caller here) may change the owner, to a project id.
		{"patch owner to a number", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "replace", "path": "/owner", "value": 42}]`, 400, "owner"},
		{"patch owner to empty", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "replace", "path": "/owner", "value": ""}]`, 400, "owner"},
		{"patch owner of 300 bytes", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "replace", "path": "/owner", "value": "` + strings.Repeat("p", 300) + `"}]`, 400, "owner"},
		{"patch remove owner", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "remove", "path": "/owner"}]`, 403, "owner"},
		{"create with owner of 300 bytes", "POST", "/v2/images", js, `{"name": "x", "owner": "` + strings.Repeat("p", 300) + `"}`, 400, "owner"},
		{"create with owner a number", "POST", "/v2/images", js, `{"name": "x", "owner": 7}`, 400, "owner"},
		{"create with owner empty", "POST", "/v2/images", js, `{"name": "x", "owner": ""}`, 400, "owner"},
		{"patch path /glimpse.error", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "add", "path": "/glimpse.error", "value": "x"}]`, 403, "glimpse.error"},
		{"patch path /os_glance_x", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "add", "path": "/os_glance_x", "value": "x"}]`, 403, "os_glance_x"},
		{"patch path /location", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "add", "path": "/location", "value": "http://x/"}]`, 403, "location"},
		{"patch path /deleted", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "add", "path": "/deleted", "value": "true"}]`, 403, "deleted"},
		{"patch path /deleted_at", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "add", "path": "/deleted_at", "value": "x"}]`, 403, "deleted_at"},
		{"patch lone surrogate in a value", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "add", "path": "/k", "value": "\udc80"}]`, 400, "surrogate"},
		{"patch lone surrogate in a path", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "add", "path": "/k\udc80", "value": "v"}]`, 400, "surrogate"},
		{"patch path /tags/0", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "add", "path": "/tags/0", "value": "x"}]`, 400, "JSON pointer"},
		{"patch ~ not followed by 0 or 1", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "add", "path": "/a~2b", "value": "x"}]`, 400, "~ must be followed"},
		{"patch trailing ~", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "add", "path": "/a~", "value": "x"}]`, 400, "~ must be followed"},
		{"patch op move", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "move", "from": "/name", "path": "/x"}]`, 400, "Invalid operation"},
		{"patch op test", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "test", "path": "/name", "value": "target"}]`, 400, "Invalid operation"},
		{"patch op not a string", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": 1, "path": "/name", "value": "x"}]`, 400, "op"},
		{"patch no op", "PATCH", "/v2/images/" + id, patchHdr, `[{"path": "/name", "value": "x"}]`, 400, "op"},
		{"patch no path", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "add", "value": "x"}]`, 400, "path"},
		{"patch no value", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "add", "path": "/name"}]`, 400, "value"},
		{"patch null change", "PATCH", "/v2/images/" + id, patchHdr, `[null]`, 400, "op"},
		{"patch name of 256 characters", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "replace", "path": "/name", "value": "` + strings.Repeat("n", 256) + `"}]`, 400, "255"},
		{"patch value of 65536 bytes", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "add", "path": "/k", "value": "` + strings.Repeat("v", 65536) + `"}]`, 400, "65535"},
		{"patch key with invalid UTF-8", "PATCH", "/v2/images/" + id, patchHdr, "[{\"op\": \"add\", \"path\": \"/k\xc3\", \"value\": \"v\"}]", 400, "UTF-8"},
		{"patch value not a string", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "add", "path": "/k", "value": {"a": 1}}]`, 400, "string"},
		{"patch 10000 adds (over 128 properties)", "PATCH", "/v2/images/" + id, patchHdr, manyOps(10000), 413, "128"},
		{"patch valid first, bad second", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "replace", "path": "/name", "value": "renamed"}, {"op": "replace", "path": "/min_ram", "value": "lots"}]`, 400, "min_ram"},
		{"patch replace a missing property", "PATCH", "/v2/images/" + id, patchHdr, `[{"op": "replace", "path": "/nope", "value": "x"}]`, 409, "nope"},
		{"patch an unknown image", "PATCH", "/v2/images/" + lifecycle.NewID(), patchHdr, `[{"op": "replace", "path": "/name", "value": "x"}]`, 404, "No image found"},
		{"patch an id that is not a UUID", "PATCH", "/v2/images/..%2f..%2fetc", patchHdr, `[]`, 404, ""},
	}
	for _, c := range cases {
		before := snapshot(t, e.svc)
		r := e.do(c.method, c.url, c.hdr, strings.NewReader(c.body))
		glanceError(t, c.name, r, c.status, c.words)
		if after := snapshot(t, e.svc); after != before {
			t.Errorf("%s: the registry changed:\nbefore %s\nafter  %s", c.name, before, after)
		}
		if r := e.do("GET", "/v2/images/"+id, nil, nil); r.status != 200 {
			t.Fatalf("after %s the server does not serve: %d %s", c.name, r.status, r.body)
		}
	}

	// At the limits, and odd but legal: accepted as Glance accepts them.
	for _, c := range []struct {
		name, body string
		check      func(v map[string]any) bool
	}{
		{"name of 255 two-byte characters", `{"name": "` + strings.Repeat("é", 255) + `"}`, func(v map[string]any) bool { return v["name"] == strings.Repeat("é", 255) }},
		{"name with control bytes", `{"name": "a\u0001\tb\u001f"}`, func(v map[string]any) bool { return v["name"] == "a\x01\tb\x1f" }},
		{"name with a NUL", `{"name": "a\u0000b"}`, func(v map[string]any) bool { return v["name"] == "a\x00b" }},
		{"a surrogate pair", `{"name": "\ud83d\ude00"}`, func(v map[string]any) bool { return v["name"] == "\U0001f600" }},
		{"an escaped backslash before u", `{"name": "\\ud800"}`, func(v map[string]any) bool { return v["name"] == `\ud800` }},
		{"property key of 255 bytes", `{"` + strings.Repeat("k", 255) + `": "v"}`, func(v map[string]any) bool { return v[strings.Repeat("k", 255)] == "v" }},
		{"property value of 65535 bytes", `{"k": "` + strings.Repeat("v", 65535) + `"}`, func(v map[string]any) bool { return len(v["k"].(string)) == 65535 }},
		{"property value with control bytes", `{"k": "\u0000\u0001\n"}`, func(v map[string]any) bool { return v["k"] == "\x00\x01\n" }},
		{"128 properties", manyProps(128), func(v map[string]any) bool { return v["k00127"] == "v" }},
	} {
		v := e.create(c.body)
		shown := e.do("GET", "/v2/images/"+v["id"].(string), nil, nil).json(t)
		if !c.check(v) || !c.check(shown) {
			t.Errorf("%s: created %.200v", c.name, shown)
		}
	}
	if r := e.do("PATCH", "/v2/images/"+id, patchHdr, strings.NewReader(`[{"op": "add", "path": "/a~0b~1c", "value": "x"}]`)); r.status != 200 || r.json(t)["a~b/c"] != "x" {
		t.Errorf("~0 ~1 escapes: %d %s", r.status, r.body)
	}
}

// TestHostileUploadBodies: uploads that are not what they claim to be.
func TestHostileUploadBodies(t *testing.T) {
	e, lt := hostileEnv(t, lifecycle.Config{MaxImageSize: 1 << 20}, api.Options{})
	js := map[string]string{"Accept": "application/json", "Content-Type": "application/octet-stream"}
	img := e.create(`{"name": "u", "disk_format": "raw", "container_format": "bare"}`)
	id := img["id"].(string)
	// A Content-Length past the cap is refused whatever follows.
	r := e.do("PUT", "/v2/images/"+id+"/file", js, io.LimitReader(zeros{}, 2<<20))
	glanceError(t, "upload over the cap", r, 413, "size limit")
	if v := e.do("GET", "/v2/images/"+id, nil, nil).json(t); v["status"] != "killed" {
		t.Errorf("over the cap: %v", v["status"])
	}
	if objs := storeKeys(t, lt); len(objs) != 0 {
		t.Errorf("store holds %v after refused uploads", objs)
	}
}

func manyTags(n int) string {
	var ts []string
	for i := 0; i < n; i++ {
		ts = append(ts, fmt.Sprintf("t%d", i))
	}
	b, _ := json.Marshal(ts)
	return string(b)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func storeKeys(t *testing.T, lt lifecycletest.Env) []string {
	t.Helper()
	var keys []string
	if err := lt.Backend.List(context.Background(), func(info backend.Info) error {
		keys = append(keys, info.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestHostileImagesOverREST: images built to make a host tool read host
// files, uploaded as what they are and as raw: 415 (Glance 2024.2's answer
// to content that fails inspection), the image killed with the reason,
// nothing stored.
func TestHostileImagesOverREST(t *testing.T) {
	e, lt := hostileEnv(t, lifecycle.Config{}, api.Options{})
	hdr := map[string]string{"Content-Type": "application/octet-stream", "Accept": "application/json"}
	for _, h := range converttest.HostileImages() {
		for _, claim := range []string{h.DiskFormat, "raw"} {
			id := e.create(`{"name": "evil", "disk_format": "` + claim + `", "container_format": "bare"}`)["id"].(string)
			r := e.do("PUT", "/v2/images/"+id+"/file", hdr, bytes.NewReader(h.Data))
			glanceError(t, h.Name+" as "+claim, r, http.StatusUnsupportedMediaType, "")
			v := e.do("GET", "/v2/images/"+id, nil, nil).json(t)
			reason := fmt.Sprint(v["glimpse.error"])
			if v["status"] != "killed" || !strings.Contains(reason, h.Reason) && !strings.Contains(reason, "declares disk_format raw") {
				t.Errorf("%s as %s: %v, %q", h.Name, claim, v["status"], reason)
			}
		}
	}
	if keys := storeKeys(t, lt); len(keys) != 0 {
		t.Fatalf("store holds %v", keys)
	}
}

// TestNoExternalToolOnUploads: the packages an upload goes through cannot
// run a program, so no external tool ever parses uploaded content.
func TestNoExternalToolOnUploads(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to list imports")
	}
	pkgs := []string{"github.com/glimpse-project/glimpse/api", "github.com/glimpse-project/glimpse/lifecycle",
		"github.com/glimpse-project/glimpse/convert", "github.com/glimpse-project/glimpse/backend/local"}
	out, err := exec.Command(goTool, append([]string{"list", "-deps"}, pkgs...)...).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "net/http") {
		t.Fatalf("go list gave no dependencies: %q", out)
	}
	if slices.Contains(deps, "os/exec") {
		t.Fatal("the upload path imports os/exec")
	}
}

// TestStoreFullOverREST: an upload larger than the store's filesystem (a
// 1 MiB tmpfs) gets Glance's 413 StorageFull, and leaves nothing.
func TestStoreFullOverREST(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("no tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	lt := lifecycletest.NewIn(t, lifecycle.Config{}, dir)
	s, err := api.New(lt.Service, api.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.SetReady(true)
	srv := httptest.NewServer(s)
	t.Cleanup(func() { srv.Close(); s.Close() })
	e := &env{t: t, url: srv.URL, svc: lt.Service}
	id := e.create(`{"name": "big", "disk_format": "raw", "container_format": "bare"}`)["id"].(string)
	r := e.do("PUT", "/v2/images/"+id+"/file", map[string]string{"Content-Type": "application/octet-stream", "Accept": "application/json"}, io.LimitReader(zeros{}, 2<<20))
	glanceError(t, "upload larger than the store", r, 413, "storage media is full")
	if v := e.do("GET", "/v2/images/"+id, nil, nil).json(t); v["status"] != "killed" {
		t.Fatalf("after the store filled: %v", v["status"])
	}
	if keys := storeKeys(t, lt); len(keys) != 0 {
		t.Fatalf("store holds %v", keys)
	}
	small := e.create(`{"name": "small", "disk_format": "raw", "container_format": "bare"}`)["id"].(string)
	if r := e.upload(small, make([]byte, 100<<10)); r.status != 204 {
		t.Fatalf("an upload that fits, after: %d %s", r.status, r.body)
	}
}
