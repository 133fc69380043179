package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/api"
)

// createTask posts an import task of uri with props and returns the reply.
func (e *env) createTask(hdr map[string]string, body string) reply {
	e.t.Helper()
	h := map[string]string{"Content-Type": "application/json"}
	for k, v := range hdr {
		h[k] = v
	}
	return e.do("POST", "/v2/tasks", h, strings.NewReader(body))
}

// waitTask polls task id until it settles, with a deadline.
func (e *env) waitTask(id string) map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := e.do("GET", "/v2/tasks/"+id, nil, nil)
		if r.status != 200 {
			e.t.Fatalf("show task %s: %d %s", id, r.status, r.body)
		}
		v := r.json(e.t)
		if st := v["status"]; (st != "pending" && st != "processing") || time.Now().After(deadline) {
			return v
		}
		<-time.After(10 * time.Millisecond)
	}
}

func importTaskBody(uri, props string) string {
	return fmt.Sprintf(`{"type": "import", "input": {"import_from": %q, "import_from_format": "raw", "image_properties": %s}}`, uri, props)
}

// An import task creates the image from image_properties and imports its
// content as web-download does; the task ends success with the image's id
// in result, and expires 48 hours after it settled.
func TestTaskImport(t *testing.T) {
	payload := bytes.Repeat([]byte("task"), 4096)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/img" {
			w.Write(payload)
			return
		}
		http.NotFound(w, r)
	}))
	defer origin.Close()
	e := newEnv(t, 0, api.Options{WebDownloadAllowPrivate: true})

	r := e.createTask(nil, importTaskBody(origin.URL+"/img", `{"name": "from-task", "container_format": "bare", "min_ram": 256, "os_distro": "debian"}`))
	if r.status != 201 {
		t.Fatalf("create task: %d %s", r.status, r.body)
	}
	created := r.json(t)
	id := created["id"].(string)
	if created["status"] != "pending" || created["type"] != "import" || created["owner"] != "admin" || r.header.Get("Location") != "/v2/tasks/"+id {
		t.Fatalf("created task: %v, Location %q", created, r.header.Get("Location"))
	}
	if in := created["input"].(map[string]any); in["import_from"] != origin.URL+"/img" {
		t.Fatalf("task input: %v", in)
	}
	done := e.waitTask(id)
	if done["status"] != "success" || done["message"] != "" {
		t.Fatalf("settled task: %v", done)
	}
	exp, err := time.Parse(time.RFC3339, fmt.Sprint(done["expires_at"]))
	upd, _ := time.Parse(time.RFC3339, fmt.Sprint(done["updated_at"]))
	if err != nil || exp.Sub(upd) < 48*time.Hour-2*time.Second || exp.Sub(upd) > 48*time.Hour+2*time.Second {
		t.Fatalf("expires_at %v, updated_at %v: want 48 hours later", done["expires_at"], done["updated_at"])
	}
	imageID, _ := done["result"].(map[string]any)["image_id"].(string)
	img := e.do("GET", "/v2/images/"+imageID, nil, nil).json(t)
	if img["status"] != "active" || img["name"] != "from-task" || img["disk_format"] != "raw" || img["os_distro"] != "debian" || fmt.Sprint(img["min_ram"]) != "256" {
		t.Fatalf("the task's image: %v", img)
	}
	if got := e.do("GET", "/v2/images/"+imageID+"/file", nil, nil); !bytes.Equal(got.body, payload) {
		t.Fatal("the task's image holds other bytes than the URL")
	}

	// A URL that answers 404: the task fails with the reason.
	r = e.createTask(nil, importTaskBody(origin.URL+"/gone", `{"name": "broken", "container_format": "bare"}`))
	if r.status != 201 {
		t.Fatalf("create task: %d %s", r.status, r.body)
	}
	failed := e.waitTask(r.json(t)["id"].(string))
	if failed["status"] != "failure" || !strings.Contains(fmt.Sprint(failed["message"]), "404") || failed["result"] != nil {
		t.Fatalf("task of a missing URL: %v", failed)
	}
	// Image properties Glance's schema refuses: the task is created, and
	// fails saying why, as Glance's does.
	r = e.createTask(nil, importTaskBody(origin.URL+"/img", `{"name": "x", "container_format": "bare", "min_ram": "lots"}`))
	if r.status != 201 {
		t.Fatalf("create task: %d %s", r.status, r.body)
	}
	if bad := e.waitTask(r.json(t)["id"].(string)); bad["status"] != "failure" || !strings.Contains(fmt.Sprint(bad["message"]), "min_ram") {
		t.Fatalf("task with a bad min_ram: %v", bad)
	}
	// Legacy import tasks carry no image_id, so the image's own task list
	// stays empty, as in Glance.
	if v := e.do("GET", "/v2/images/"+imageID+"/tasks", nil, nil).json(t); fmt.Sprint(v["tasks"]) != "[]" {
		t.Fatalf("image tasks: %v", v)
	}
}

// Bad task requests get Glance's 400s and create nothing.
func TestTaskCreateRefusals(t *testing.T) {
	e := newEnv(t, 0, api.Options{})
	for _, tc := range []struct{ body, want string }{
		{`{"input": {}}`, "Task 'type' is required"},
		{`{"type": "import"}`, "Task 'input' is required"},
		{`{"type": "export", "input": {}}`, "'export' is not one of ['import', 'api_image_import']"},
		{`{"type": "import", "input": {}, "extra": 1}`, "Additional properties are not allowed ('extra' was unexpected)"},
		{`{"type": "import", "input": "x"}`, "is not of type 'null', 'object'"},
		{`{"type": "import", "input": {"import_from": "ftp://example.com/x"}}`, "the scheme ftp is not allowed"},
		{`{"type": "import", "input": {}}`, "does not pass filtering"},
	} {
		r := e.createTask(map[string]string{"Accept": "application/json"}, tc.body)
		if r.status != 400 || !strings.Contains(fmt.Sprint(r.json(t)["message"]), tc.want) {
			t.Errorf("%s: %d %s, want 400 saying %q", tc.body, r.status, r.body, tc.want)
		}
	}
	if v := e.do("GET", "/v2/tasks", nil, nil).json(t); fmt.Sprint(v["tasks"]) != "[]" {
		t.Fatalf("refused requests left tasks: %v", v)
	}
	if r := e.do("GET", "/v2/tasks/00000000-0000-0000-0000-000000000000", map[string]string{"Accept": "application/json"}, nil); r.status != 404 || !strings.Contains(string(r.body), "Could not find task 00000000-0000-0000-0000-000000000000") {
		t.Fatalf("unknown task: %d %s", r.status, r.body)
	}
	if r := e.do("DELETE", "/v2/tasks/00000000-0000-0000-0000-000000000000", nil, nil); r.status != 405 || r.header.Get("Allow") != "GET" {
		t.Fatalf("delete task: %d %v", r.status, r.header)
	}
}

// The tasks API is for admins (Glance's tasks_api_access: role:admin).
func TestTasksAdminOnly(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	os.WriteFile(tokens, []byte(`{"tokens": {"adm": {"project": "p0", "roles": ["admin"]}, "mem": {"project": "p1", "roles": ["member"]}}}`), 0o600)
	e := newEnv(t, 0, api.Options{AuthTokens: tokens})
	member := map[string]string{"X-Auth-Token": "mem"}
	for _, r := range []reply{
		e.do("GET", "/v2/tasks", member, nil),
		e.do("GET", "/v2/tasks/00000000-0000-0000-0000-000000000000", member, nil),
		e.createTask(member, importTaskBody("http://example.com/x", `{}`)),
	} {
		if r.status != 403 || !strings.Contains(string(r.body), "You are not authorized to complete tasks_api_access action.") {
			t.Errorf("member: %d %s, want 403 with Glance's message", r.status, r.body)
		}
	}
	if r := e.do("GET", "/v2/tasks", map[string]string{"X-Auth-Token": "adm"}, nil); r.status != 200 {
		t.Fatalf("admin list: %d %s", r.status, r.body)
	}
	// The schemas are for everyone, as in Glance.
	for _, path := range []string{"/v2/schemas/task", "/v2/schemas/tasks"} {
		r := e.do("GET", path, member, nil)
		var v map[string]any
		if r.status != 200 || json.Unmarshal(r.body, &v) != nil || (v["name"] != "task" && v["name"] != "tasks") {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
	}
}

// GET /v2/tasks: newest first by default, filters on type and status,
// sort keys and directions, limit/marker paging with a next link.
func TestTaskListPaging(t *testing.T) {
	e := newEnv(t, 0, api.Options{})
	// Tasks of an unreachable URL fail fast (loopback is refused).
	var ids []string
	for i := 0; i < 5; i++ {
		r := e.createTask(nil, importTaskBody("http://127.0.0.1:1/x", `{"container_format": "bare"}`))
		if r.status != 201 {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
		id := r.json(t)["id"].(string)
		e.waitTask(id)
		ids = append(ids, id)
	}
	list := func(query string) (got []string, next string) {
		t.Helper()
		r := e.do("GET", "/v2/tasks"+query, nil, nil)
		if r.status != 200 {
			t.Fatalf("list %s: %d %s", query, r.status, r.body)
		}
		v := r.json(t)
		for _, x := range v["tasks"].([]any) {
			task := x.(map[string]any)
			if _, ok := task["input"]; ok {
				t.Fatalf("a listed task shows its input: %v", task)
			}
			got = append(got, task["id"].(string))
		}
		next, _ = v["next"].(string)
		return got, next
	}
	var paged []string
	query := "?limit=2&sort_key=created_at&sort_dir=asc"
	for pages := 0; ; pages++ {
		got, next := list(query)
		paged = append(paged, got...)
		if next == "" || pages > 5 {
			break
		}
		query = strings.TrimPrefix(next, "/v2/tasks")
	}
	if fmt.Sprint(paged) != fmt.Sprint(ids) {
		t.Fatalf("paged ascending: %v, want %v", paged, ids)
	}
	if got, _ := list(""); len(got) != 5 || got[0] != ids[4] {
		t.Fatalf("default order: %v, want newest first", got)
	}
	if got, _ := list("?status=failure&type=import"); len(got) != 5 {
		t.Fatalf("status=failure: %v", got)
	}
	if got, _ := list("?status=success"); len(got) != 0 {
		t.Fatalf("status=success: %v", got)
	}
	for _, q := range []string{"?status=done", "?type=export", "?sort_dir=up", "?limit=x", "?limit=-1", "?marker=nope", "?marker=00000000-0000-0000-0000-000000000000", "?sort_key=input"} {
		if r := e.do("GET", "/v2/tasks"+q, nil, nil); r.status != 400 {
			t.Errorf("list %s: %d %s, want 400", q, r.status, r.body)
		}
	}
}

// A settled task is gone once its time to live has passed.
func TestTaskExpires(t *testing.T) {
	e := newEnv(t, 0, api.Options{TaskTimeToLive: 50 * time.Millisecond})
	r := e.createTask(nil, importTaskBody("http://127.0.0.1:1/x", `{"container_format": "bare"}`))
	id := r.json(t)["id"].(string)
	if v := e.waitTask(id); v["status"] != "failure" {
		t.Fatalf("task: %v", v)
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.do("GET", "/v2/tasks/"+id, nil, nil).status != 404 {
		if time.Now().After(deadline) {
			t.Fatal("task still shown past its time to live")
		}
		<-time.After(20 * time.Millisecond)
	}
	if v := e.do("GET", "/v2/tasks", nil, nil).json(t); fmt.Sprint(v["tasks"]) != "[]" {
		t.Fatalf("expired task listed: %v", v)
	}
}
