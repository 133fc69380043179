package api_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/api"
	"github.com/glimpse-project/glimpse/backend/local"
	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
	"github.com/glimpse-project/glimpse/meta/kv/badgerkv"
)

type env struct {
	t      *testing.T
	url    string
	svc    *lifecycle.Service
	client *http.Client // nil: http.DefaultClient
}

func newEnv(t *testing.T, maxSize int64, opts api.Options) *env {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	db, err := badgerkv.Open(filepath.Join(dir, "registry"), log)
	if err != nil {
		t.Fatal(err)
	}
	store, err := meta.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	be, err := local.Open(local.Config{Dir: filepath.Join(dir, "images")})
	if err != nil {
		t.Fatal(err)
	}
	svc := lifecycle.New(lifecycle.Config{Store: store, Backend: be, MaxImageSize: maxSize})
	s, err := api.New(svc, opts)
	if err != nil {
		t.Fatal(err)
	}
	s.SetReady(true)
	srv := httptest.NewServer(s)
	t.Cleanup(func() { srv.Close(); s.Close(); db.Close() })
	return &env{t: t, url: srv.URL, svc: svc}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("body is not JSON (%v): %s", err, r.body)
	}
	return v
}

func (e *env) do(method, path string, hdr map[string]string, body io.Reader) reply {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	client := e.client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

func (e *env) create(body string) map[string]any {
	e.t.Helper()
	r := e.do("POST", "/v2/images", map[string]string{"Content-Type": "application/json"}, strings.NewReader(body))
	if r.status != http.StatusCreated {
		e.t.Fatalf("create %s: %d %s", body, r.status, r.body)
	}
	return r.json(e.t)
}

func (e *env) upload(id string, data []byte) reply {
	e.t.Helper()
	// No Content-Length: chunked, as glanceclient and gophercloud send it.
	return e.do("PUT", "/v2/images/"+id+"/file", map[string]string{"Content-Type": "application/octet-stream"}, io.MultiReader(bytes.NewReader(data)))
}

func TestVersionsAndSchemas(t *testing.T) {
	e := newEnv(t, 0, api.Options{})
	if r := e.do("GET", "/versions", nil, nil); r.status != 200 || !strings.Contains(string(r.body), `"v2.15"`) {
		t.Fatalf("/versions: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/", nil, nil); r.status != 300 {
		t.Fatalf("/: %d", r.status)
	}
	r := e.do("GET", "/v2/schemas/image", nil, nil)
	schema := r.json(t)
	props := schema["properties"].(map[string]any)
	if _, ok := props["stores"]; ok || props["name"] == nil {
		t.Fatal("image schema must have name and no stores property")
	}
	if r := e.do("GET", "/v2.1/schemas/images", nil, nil); r.status != 200 {
		t.Fatalf("version alias: %d", r.status)
	}
	if r := e.do("GET", "/v2/info/import", nil, nil); !strings.Contains(string(r.body), "glance-direct") {
		t.Fatalf("info/import: %s", r.body)
	}
	if r := e.do("GET", "/v2/info/stores", nil, nil); r.status != 404 {
		t.Fatalf("info/stores: %d", r.status)
	}
	if r := e.do("GET", "/v2/nothing", nil, nil); r.status != 404 {
		t.Fatalf("unknown route: %d", r.status)
	}
}

func TestErrorBodiesByAccept(t *testing.T) {
	e := newEnv(t, 0, api.Options{})
	path := "/v2/images/" + lifecycle.NewID()
	html := e.do("GET", path, map[string]string{"Accept": "*/*"}, nil)
	if html.status != 404 || !strings.HasPrefix(html.header.Get("Content-Type"), "text/html") || !strings.Contains(string(html.body), "<title>404 Not Found</title>") {
		t.Fatalf("*/*: %d %s %s", html.status, html.header.Get("Content-Type"), html.body)
	}
	js := e.do("GET", path, map[string]string{"Accept": "application/json"}, nil)
	v := js.json(t)
	if js.status != 404 || v["code"] != "404 Not Found" || v["title"] != "Not Found" || !strings.Contains(v["message"].(string), "No image found") {
		t.Fatalf("json: %d %s", js.status, js.body)
	}
	plain := e.do("GET", path, map[string]string{"Accept": "text/plain"}, nil)
	if !strings.HasPrefix(string(plain.body), "404 Not Found\n\n") {
		t.Fatalf("text: %s", plain.body)
	}
	if js.header.Get("X-Openstack-Request-Id") == "" {
		t.Fatal("no request id")
	}
}

func TestCreateLimitsAndBadInput(t *testing.T) {
	e := newEnv(t, 1<<20, api.Options{})
	js := map[string]string{"Content-Type": "application/json", "Accept": "application/json"}
	post := func(body string) int {
		return e.do("POST", "/v2/images", js, strings.NewReader(body)).status
	}
	many := map[string]string{}
	for i := 0; i < 129; i++ {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	manyJSON, _ := json.Marshal(many)
	for _, c := range []struct {
		name, body string
		want       int
	}{
		{"name of 256 chars", `{"name": "` + strings.Repeat("n", 256) + `"}`, 400},
		{"name of 10000 bytes", `{"name": "` + strings.Repeat("é", 5000) + `"}`, 400},
		{"129 properties", string(manyJSON), 413},
		{"malformed JSON", `{"name": `, 400},
		{"list body", `[1]`, 400},
		{"empty body", ``, 400},
		{"unknown disk format", `{"disk_format": "floppy"}`, 400},
		{"unknown container format", `{"container_format": "zip"}`, 400},
		{"read-only size", `{"size": 3}`, 403},
		{"read-only status", `{"status": "active"}`, 403},
		{"reserved os_glance", `{"os_glance_x": "1"}`, 403},
		{"reserved locations", `{"locations": []}`, 403},
		{"non-string property", `{"foo": 1}`, 400},
		{"negative min_ram", `{"min_ram": -1}`, 400},
		{"bad id", `{"id": "nope"}`, 400},
		{"kernel_id not a UUID", `{"kernel_id": "vmlinuz"}`, 400},
		{"deletion policy not in the enum", `{"cinder_encryption_key_deletion_policy": "sometimes"}`, 400},
		{"kernel_id a UUID", `{"kernel_id": "11111111-2222-4333-8444-555555555556"}`, 201},
		{"255 chars is fine", `{"name": "` + strings.Repeat("n", 255) + `"}`, 201},
	} {
		if got := post(c.body); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	img := e.create(`{"name": "x", "id": "11111111-2222-4333-8444-555555555555", "disk_format": "raw", "container_format": "bare"}`)
	if got := post(`{"id": "11111111-2222-4333-8444-555555555555"}`); got != 409 {
		t.Errorf("duplicate id: %d, want 409", got)
	}
	id := img["id"].(string)

	patch := func(ct, body string) int {
		return e.do("PATCH", "/v2/images/"+id, map[string]string{"Content-Type": ct}, strings.NewReader(body)).status
	}
	p21 := "application/openstack-images-v2.1-json-patch"
	for _, c := range []struct {
		name, ct, body string
		want           int
	}{
		{"wrong media type", "application/json", `[]`, 415},
		{"not a list", p21, `{"op": "add"}`, 400},
		{"bad JSON", p21, `[{`, 400},
		{"deep path", p21, `[{"op": "add", "path": "/tags/-", "value": "x"}]`, 400},
		{"no slash", p21, `[{"op": "add", "path": "name", "value": "x"}]`, 400},
		{"bad op", p21, `[{"op": "move", "path": "/name", "value": "x"}]`, 400},
		{"no value", p21, `[{"op": "add", "path": "/name"}]`, 400},
		{"read-only", p21, `[{"op": "replace", "path": "/checksum", "value": "x"}]`, 403},
		{"remove base", p21, `[{"op": "remove", "path": "/name"}]`, 403},
		{"remove missing", p21, `[{"op": "remove", "path": "/nope"}]`, 409},
		{"replace missing extra", p21, `[{"op": "replace", "path": "/nope", "value": "x"}]`, 409},
		{"long name", p21, `[{"op": "replace", "path": "/name", "value": "` + strings.Repeat("n", 256) + `"}]`, 400},
		{"bad kernel_id", p21, `[{"op": "add", "path": "/ramdisk_id", "value": "initrd"}]`, 400},
		{"add extra", p21, `[{"op": "add", "path": "/a~1b", "value": "x"}]`, 200},
		{"empty patch", p21, `[]`, 200},
	} {
		if got := patch(c.ct, c.body); got != c.want {
			t.Errorf("patch %s: %d, want %d", c.name, got, c.want)
		}
	}
	if v := e.do("GET", "/v2/images/"+id, nil, nil).json(t); v["a/b"] != "x" {
		t.Errorf("~1 escape: %v", v["a/b"])
	}

	// Upload: wrong content type, size cap, then a good one.
	if r := e.do("PUT", "/v2/images/"+id+"/file", map[string]string{"Content-Type": "text/plain"}, strings.NewReader("x")); r.status != 415 {
		t.Errorf("upload text/plain: %d", r.status)
	}
	noFormats := e.create(`{"name": "nf"}`)
	if r := e.upload(noFormats["id"].(string), []byte("x")); r.status != 400 {
		t.Errorf("upload without formats: %d", r.status)
	}
	big := e.create(`{"name": "big", "disk_format": "raw", "container_format": "bare"}`)
	if r := e.upload(big["id"].(string), make([]byte, 1<<20+1)); r.status != 413 {
		t.Errorf("upload over the cap: %d %s", r.status, r.body)
	}
	if r := e.upload(id, []byte("hello")); r.status != 204 {
		t.Fatalf("upload: %d %s", r.status, r.body)
	}
	if r := e.upload(id, []byte("again")); r.status != 409 {
		t.Errorf("second upload: %d", r.status)
	}
	if got := patch(p21, `[{"op": "replace", "path": "/disk_format", "value": "qcow2"}]`); got != 403 {
		t.Errorf("disk_format of an active image: %d, want 403", got)
	}
}

func TestDownloadHeadersAndRange(t *testing.T) {
	e := newEnv(t, 0, api.Options{})
	img := e.create(`{"name": "r", "disk_format": "raw", "container_format": "bare"}`)
	id := img["id"].(string)
	if r := e.do("GET", "/v2/images/"+id+"/file", nil, nil); r.status != 204 {
		t.Fatalf("download of a queued image: %d", r.status)
	}
	data := []byte("0123456789abcdef")
	if r := e.upload(id, data); r.status != 204 {
		t.Fatalf("upload: %d %s", r.status, r.body)
	}
	full := e.do("GET", "/v2/images/"+id+"/file", map[string]string{"Accept": "application/json"}, nil)
	if full.status != 200 || !bytes.Equal(full.body, data) || full.header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("download: %d %q %s", full.status, full.header.Get("Content-Type"), full.body)
	}
	show := e.do("GET", "/v2/images/"+id, nil, nil).json(t)
	if full.header.Get("Content-MD5") != show["checksum"] || len(show["checksum"].(string)) != 32 {
		t.Fatalf("Content-MD5 %q, checksum %v", full.header.Get("Content-MD5"), show["checksum"])
	}
	part := e.do("GET", "/v2/images/"+id+"/file", map[string]string{"Range": "bytes=2-5"}, nil)
	if part.status != 206 || string(part.body) != "2345" || part.header.Get("Content-Range") != "bytes 2-5/16" {
		t.Fatalf("range: %d %q %q", part.status, part.body, part.header.Get("Content-Range"))
	}
	if r := e.do("GET", "/v2/images/"+id+"/file", map[string]string{"Range": "bytes=99-"}, nil); r.status != 416 {
		t.Fatalf("range past the end: %d", r.status)
	}
	for _, empty := range []string{"bytes=-0", "bytes=-000, -0"} {
		if r := e.do("GET", "/v2/images/"+id+"/file", map[string]string{"Range": empty}, nil); r.status != 416 || r.header.Get("Content-Range") != "bytes */16" {
			t.Fatalf("%s: %d %q, want 416 and bytes */16", empty, r.status, r.header.Get("Content-Range"))
		}
	}
	if r := e.do("GET", "/v2/images/"+id+"/file", map[string]string{"Range": "bytes=-3"}, nil); r.status != 206 || string(r.body) != "def" {
		t.Fatalf("suffix of 3: %d %q", r.status, r.body)
	}
	if ts := show["created_at"].(string); !strings.HasSuffix(ts, "Z") || strings.Contains(ts, ".") {
		t.Fatalf("timestamp %q", ts)
	}
	if _, err := time.Parse(time.RFC3339, show["updated_at"].(string)); err != nil {
		t.Fatal(err)
	}
}

func TestListQueryErrorsAndNext(t *testing.T) {
	e := newEnv(t, 0, api.Options{})
	for i := 0; i < 3; i++ {
		e.create(fmt.Sprintf(`{"name": "img-%d", "tags": ["t%d"]}`, i, i))
	}
	for q, want := range map[string]int{
		"limit=x":                            400,
		"limit=-1":                           400,
		"sort_key=owner":                     400,
		"sort_dir=up":                        400,
		"sort=name:asc&sort_key=name":        400,
		"marker=" + lifecycle.NewID():        400,
		"name=foo:bar":                       400,
		"size_min=big":                       400,
		"visibility=everyone":                400,
		"created_at=gt:yesterday":            400,
		"os_hidden=maybe":                    400,
		"changes-since=2020-01-01":           400,
		"name=in:img-0,img-2":                200,
		"sort=name:asc,created_at":           200,
		"created_at=gt:2000-01-01T00:00:00Z": 200,
	} {
		if r := e.do("GET", "/v2/images?"+q, nil, nil); r.status != want {
			t.Errorf("?%s: %d, want %d (%s)", q, r.status, want, r.body)
		}
	}
	page := e.do("GET", "/v2/images?limit=2&sort_key=name&sort_dir=asc", nil, nil).json(t)
	next, _ := page["next"].(string)
	if len(page["images"].([]any)) != 2 || !strings.HasPrefix(next, "/v2/images?") || !strings.Contains(next, "marker=") {
		t.Fatalf("first page: %v", page)
	}
	last := e.do("GET", next, nil, nil).json(t)
	if len(last["images"].([]any)) != 1 || last["next"] != nil {
		t.Fatalf("last page: %v", last)
	}
	tagged := e.do("GET", "/v2/images?tag=t1", nil, nil).json(t)
	if imgs := tagged["images"].([]any); len(imgs) != 1 || imgs[0].(map[string]any)["name"] != "img-1" {
		t.Fatalf("tag filter: %v", tagged)
	}
}

func TestTagsAndActions(t *testing.T) {
	e := newEnv(t, 0, api.Options{})
	img := e.create(`{"name": "t", "disk_format": "raw", "container_format": "bare"}`)
	id := img["id"].(string)
	if r := e.do("PUT", "/v2/images/"+id+"/tags/a%20b", nil, nil); r.status != 204 {
		t.Fatalf("add tag: %d", r.status)
	}
	if v := e.do("GET", "/v2/images/"+id, nil, nil).json(t); fmt.Sprint(v["tags"]) != "[a b]" {
		t.Fatalf("tags: %v", v["tags"])
	}
	if r := e.do("DELETE", "/v2/images/"+id+"/tags/zz", nil, nil); r.status != 404 {
		t.Fatalf("delete missing tag: %d", r.status)
	}
	if r := e.do("DELETE", "/v2/images/"+id+"/tags/a%20b", nil, nil); r.status != 204 {
		t.Fatalf("delete tag: %d", r.status)
	}
	if r := e.do("POST", "/v2/images/"+id+"/actions/deactivate", nil, nil); r.status != 403 {
		t.Fatalf("deactivate a queued image: %d, want 403", r.status)
	}
	if r := e.do("POST", "/v2/images/"+id+"/actions/deactivate", nil, strings.NewReader("x")); r.status != 400 {
		t.Fatalf("action with a body: %d, want 400", r.status)
	}
	e.upload(id, []byte("data"))
	for _, a := range []string{"deactivate", "deactivate", "reactivate", "reactivate"} {
		if r := e.do("POST", "/v2/images/"+id+"/actions/"+a, nil, nil); r.status != 204 {
			t.Fatalf("%s: %d %s", a, r.status, r.body)
		}
	}
}

func TestGlanceDirectImport(t *testing.T) {
	e := newEnv(t, 0, api.Options{})
	img := e.create(`{"name": "gd", "disk_format": "raw", "container_format": "bare"}`)
	id := img["id"].(string)
	imp := func() int {
		return e.do("POST", "/v2/images/"+id+"/import", map[string]string{"Content-Type": "application/json"},
			strings.NewReader(`{"method": {"name": "glance-direct", "uri": ""}}`)).status
	}
	if got := imp(); got != 409 {
		t.Fatalf("import before staging: %d, want 409", got)
	}
	r := e.do("PUT", "/v2/images/"+id+"/stage", map[string]string{"Content-Type": "application/octet-stream"}, strings.NewReader("staged bytes"))
	if r.status != 204 {
		t.Fatalf("stage: %d %s", r.status, r.body)
	}
	if v := e.do("GET", "/v2/images/"+id, nil, nil).json(t); v["status"] != "uploading" {
		t.Fatalf("after stage: %v", v["status"])
	}
	if got := imp(); got != 202 {
		t.Fatalf("import: %d", got)
	}
	v := e.do("GET", "/v2/images/"+id, nil, nil).json(t)
	if v["status"] != "active" || v["size"] != float64(len("staged bytes")) {
		t.Fatalf("after import: %v", v)
	}
	if r := e.do("GET", "/v2/images/"+id+"/file", nil, nil); string(r.body) != "staged bytes" {
		t.Fatalf("content: %q", r.body)
	}
	if r := e.do("POST", "/v2/images/"+id+"/import", nil, strings.NewReader(`{"method": {"name": "teleport"}}`)); r.status != 400 {
		t.Fatalf("unknown method: %d", r.status)
	}
}

// waitStatus polls the image until it leaves importing, with a deadline.
func (e *env) waitStatus(id string) string {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := e.do("GET", "/v2/images/"+id, nil, nil).json(e.t)
		if st := v["status"].(string); st != "importing" || time.Now().After(deadline) {
			return st
		}
		<-time.After(10 * time.Millisecond)
	}
}

func TestWebDownload(t *testing.T) {
	payload := bytes.Repeat([]byte("web"), 1000)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/img":
			w.Write(payload)
		case "/redirect-file":
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer origin.Close()
	webImport := func(e *env, uri string) (string, int) {
		img := e.create(`{"name": "w", "disk_format": "raw", "container_format": "bare"}`)
		id := img["id"].(string)
		body, _ := json.Marshal(map[string]any{"method": map[string]string{"name": "web-download", "uri": uri}})
		return id, e.do("POST", "/v2/images/"+id+"/import", nil, bytes.NewReader(body)).status
	}

	strict := newEnv(t, 0, api.Options{})
	if _, st := webImport(strict, "file:///etc/passwd"); st != 400 {
		t.Fatalf("file:// scheme: %d, want 400", st)
	}
	id, st := webImport(strict, origin.URL+"/img")
	if st != 202 {
		t.Fatalf("import: %d", st)
	}
	if got := strict.waitStatus(id); got != "killed" {
		t.Fatalf("loopback target without --web-download-allow-private: %s, want killed", got)
	}
	if v := strict.do("GET", "/v2/images/"+id, nil, nil).json(t); !strings.Contains(fmt.Sprint(v["glimpse.error"]), "not allowed") {
		t.Fatalf("kill reason: %v", v["glimpse.error"])
	}

	lenient := newEnv(t, 0, api.Options{WebDownloadAllowPrivate: true})
	id, st = webImport(lenient, origin.URL+"/img")
	if st != 202 {
		t.Fatalf("import: %d", st)
	}
	if got := lenient.waitStatus(id); got != "active" {
		t.Fatalf("web-download: %s", got)
	}
	if r := lenient.do("GET", "/v2/images/"+id+"/file", nil, nil); !bytes.Equal(r.body, payload) {
		t.Fatal("web-download content differs")
	}
	id, _ = webImport(lenient, origin.URL+"/redirect-file")
	if got := lenient.waitStatus(id); got != "killed" {
		t.Fatalf("redirect to file://: %s, want killed", got)
	}
}

func TestAuthTokensFile(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	os.WriteFile(tokens, []byte(`{"tokens": {"a:b": {"project": "p1", "roles": ["admin"]}}}`), 0o600)
	e := newEnv(t, 0, api.Options{AuthTokens: tokens})
	if r := e.do("GET", "/v2/images", nil, nil); r.status != 401 {
		t.Fatalf("no token: %d", r.status)
	}
	// glanceclient percent-encodes the token.
	if r := e.do("GET", "/v2/images", map[string]string{"X-Auth-Token": "a%3Ab"}, nil); r.status != 200 {
		t.Fatalf("encoded token: %d", r.status)
	}
	if r := e.do("GET", "/versions", nil, nil); r.status != 200 {
		t.Fatalf("versions need no token: %d", r.status)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"tokens": {"x": {"project": "p", "roles": ["root"]}}}`), 0o600)
	if _, err := api.New(e.svc, api.Options{AuthTokens: bad}); err == nil {
		t.Fatal("unknown role accepted")
	}
}

func TestTruncatedChunkedUploadIsNotActivated(t *testing.T) {
	e := newEnv(t, 0, api.Options{})
	img := e.create(`{"name": "cut", "disk_format": "raw", "container_format": "bare"}`)
	id := img["id"].(string)
	host := strings.TrimPrefix(e.url, "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PUT /v2/images/%s/file HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n", id, host)
	fmt.Fprintf(conn, "10\r\n0123456789abcdef\r\n100\r\nonly a part of the chunk")
	conn.(*net.TCPConn).CloseWrite()
	io.ReadAll(conn) // the server answers (or closes) once it sees the cut
	conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		v := e.do("GET", "/v2/images/"+id, nil, nil).json(t)
		if v["status"] == "killed" {
			break
		}
		if v["status"] == "active" || time.Now().After(deadline) {
			t.Fatalf("truncated upload left the image %v", v["status"])
		}
		<-time.After(10 * time.Millisecond)
	}
}

func TestUnsafeContentRefused(t *testing.T) {
	e := newEnv(t, 0, api.Options{})
	img := e.create(`{"name": "evil", "disk_format": "qcow2", "container_format": "bare"}`)
	id := img["id"].(string)
	// A qcow2 header naming a backing file.
	h := make([]byte, 512)
	copy(h, "QFI\xfb")
	binary.BigEndian.PutUint32(h[4:], 2)      // version
	binary.BigEndian.PutUint64(h[8:], 256)    // backing_file_offset
	binary.BigEndian.PutUint32(h[16:], 9)     // backing_file_size
	binary.BigEndian.PutUint32(h[20:], 16)    // cluster_bits
	binary.BigEndian.PutUint64(h[24:], 1<<30) // size
	copy(h[256:], "/etc/shadow")
	r := e.upload(id, h)
	if r.status != http.StatusUnsupportedMediaType {
		t.Fatalf("unsafe qcow2: %d %s, want 415", r.status, r.body)
	}
	if v := e.do("GET", "/v2/images/"+id, nil, nil).json(t); v["status"] != "killed" || !strings.Contains(fmt.Sprint(v["glimpse.error"]), "backing file") {
		t.Fatalf("after refusal: %v %v", v["status"], v["glimpse.error"])
	}
	// A raw claim whose content is qcow2 is refused as well.
	img = e.create(`{"name": "liar", "disk_format": "raw", "container_format": "bare"}`)
	binary.BigEndian.PutUint64(h[8:], 0)
	binary.BigEndian.PutUint32(h[16:], 0)
	if r := e.upload(img["id"].(string), h); r.status != http.StatusUnsupportedMediaType {
		t.Fatalf("qcow2 declared raw: %d %s", r.status, r.body)
	}
}

// A refused upload's body is read before the error is written, so a client
// that sends everything first (glanceclient) sees the 413, not EPIPE.
func TestOverCapUploadAnswersCleanly(t *testing.T) {
	e := newEnv(t, 1<<20, api.Options{})
	img := e.create(`{"name": "big", "disk_format": "raw", "container_format": "bare"}`)
	r := e.upload(img["id"].(string), make([]byte, 32<<20))
	if r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("upload over the cap: %d %s", r.status, r.body)
	}
}

// glimpse's scrub and gc endpoints are for admins only and answer JSON
// reports; a bad flag value is a 400.
func TestAdminEndpoints(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	os.WriteFile(tokens, []byte(`{"tokens": {"adm": {"project": "p1", "roles": ["admin"]}, "mem": {"project": "p1", "roles": ["member"]}}}`), 0o600)
	e := newEnv(t, 0, api.Options{AuthTokens: tokens})
	admin, member := map[string]string{"X-Auth-Token": "adm"}, map[string]string{"X-Auth-Token": "mem"}
	for _, path := range []string{"/v2/glimpse/scrub", "/v2/glimpse/gc", "/v2/glimpse/scrub?mark=true", "/v2/glimpse/gc?dry_run=true"} {
		if r := e.do("POST", path, member, nil); r.status != 403 {
			t.Errorf("POST %s as a member: %d %s", path, r.status, r.body)
		}
		if r := e.do("POST", path, nil, nil); r.status != 401 {
			t.Errorf("POST %s without a token: %d", path, r.status)
		}
		r := e.do("POST", path, admin, nil)
		if r.status != 200 {
			t.Fatalf("POST %s as admin: %d %s", path, r.status, r.body)
		}
		r.json(t)
	}
	if r := e.do("POST", "/v2/glimpse/scrub?mark=perhaps", admin, nil); r.status != 400 {
		t.Errorf("mark=perhaps: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v2/glimpse/scrub", admin, nil); r.status != 404 {
		t.Errorf("GET scrub: %d", r.status)
	}
}

// Properties that together exceed what the registry keeps for one image
// are refused with 413, as Glance refuses too many properties, and the
// image keeps what it had.
func TestRecordTooLargeAnswers413(t *testing.T) {
	e := newEnv(t, 1<<20, api.Options{})
	id := e.create(`{"name": "props", "disk_format": "raw", "container_format": "bare"}`)["id"].(string)
	var ops []string
	for i := 0; i < 9; i++ {
		ops = append(ops, fmt.Sprintf(`{"op": "add", "path": "/p%d", "value": "%s"}`, i, strings.Repeat("v", 60000)))
	}
	r := e.do("PATCH", "/v2/images/"+id, map[string]string{"Content-Type": "application/openstack-images-v2.1-json-patch"},
		strings.NewReader("["+strings.Join(ops, ",")+"]"))
	if r.status != http.StatusRequestEntityTooLarge || !strings.Contains(string(r.body), "record too large") {
		t.Fatalf("a patch past the record limit: %d %.200s, want 413 saying why", r.status, r.body)
	}
	if v := e.do("GET", "/v2/images/"+id, nil, nil).json(t); v["p0"] != nil {
		t.Fatal("part of the refused patch was kept")
	}
}
