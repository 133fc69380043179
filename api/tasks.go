package api

import (
	_ "embed"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
)

// Glance's tasks API: GET/POST /v2/tasks, GET /v2/tasks/{id} and the task
// schemas. The rules (access, statuses, expiry, the import itself) are in
// lifecycle/tasks.go; these handlers decode and render as Glance 25's
// glance/api/v2/tasks.py does.

// The task schemas are Glance 25's, as its /v2/schemas/task(s) serve them.
var (
	//go:embed schemas/task-schema.json
	taskSchema []byte
	//go:embed schemas/tasks-schema.json
	tasksSchema []byte
)

func (s *Server) schemaTask(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	return rawJSON(w, taskSchema)
}

func (s *Server) schemaTasks(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	return rawJSON(w, tasksSchema)
}

// taskTime is Glance's timeutils.isotime.
func taskTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// taskView is a task as GET /v2/tasks/{id} shows it; stub, as a listing
// shows it (without input, result and message).
func taskView(t *meta.Task, stub bool) map[string]any {
	v := map[string]any{
		"id":         t.ID,
		"type":       t.Type,
		"status":     t.Status,
		"owner":      t.Owner,
		"created_at": taskTime(t.CreatedAt),
		"updated_at": taskTime(t.UpdatedAt),
		"self":       "/v2/tasks/" + t.ID,
		"schema":     "/v2/schemas/task",
	}
	if t.ExpiresAt != nil {
		v["expires_at"] = taskTime(*t.ExpiresAt)
	}
	if stub {
		return v
	}
	v["input"], v["result"], v["message"] = t.Input, t.Result, t.Message
	if t.ImageID != "" {
		v["image_id"] = t.ImageID
	}
	if t.RequestID != "" {
		v["request_id"] = t.RequestID
	}
	if t.UserID != "" {
		v["user_id"] = t.UserID
	}
	return v
}

// taskError gives the tasks API's refusals Glance's messages: a task not
// found (id), and the access rule's refusal.
func taskError(id string, err error) error {
	switch {
	case errors.Is(err, lifecycle.ErrNotFound):
		return errorf(http.StatusNotFound, "Could not find task %s", id)
	case errors.Is(err, lifecycle.ErrForbidden):
		return errorf(http.StatusForbidden, "You are not authorized to complete tasks_api_access action.")
	}
	return err
}

// createTask is POST /v2/tasks.
func (s *Server) createTask(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	// As Glance, the access rule is checked before the body is read.
	if err := s.tasks.APIAccess(p); err != nil {
		return taskError("", err)
	}
	var body map[string]any
	if err := readJSON(r, &body); err != nil {
		return err
	}
	for _, k := range []string{"type", "input"} {
		if _, ok := body[k]; !ok {
			return errorf(http.StatusBadRequest, "Task '%s' is required", k)
		}
	}
	for k := range body {
		if k != "type" && k != "input" {
			return errorf(http.StatusBadRequest, "Provided object does not match schema 'task': Additional properties are not allowed ('%s' was unexpected)", k)
		}
	}
	typ, ok := body["type"].(string)
	if !ok {
		return errorf(http.StatusBadRequest, "Provided object does not match schema 'task': %s is not of type 'string'", jsonRepr(body["type"]))
	}
	if typ != "import" && typ != "api_image_import" {
		return errorf(http.StatusBadRequest, "Provided object does not match schema 'task': '%s' is not one of ['import', 'api_image_import']", typ)
	}
	input, ok := body["input"].(map[string]any)
	if !ok && body["input"] != nil {
		return errorf(http.StatusBadRequest, "Provided object does not match schema 'task': %s is not of type 'null', 'object'", jsonRepr(body["input"]))
	}
	if typ != "import" {
		// Glance runs api_image_import tasks for its own image import;
		// they are not created through this API.
		return errorf(http.StatusBadRequest, "Task type %s cannot be created through the tasks API: use image import (POST /v2/images/{image_id}/import).", typ)
	}
	from, _ := input["import_from"].(string)
	u, err := s.checkURL(from)
	if err != nil {
		return err
	}
	job := lifecycle.ImportTask{From: u}
	props, ok := input["image_properties"].(map[string]any)
	if !ok && input["image_properties"] != nil {
		job.ImageErr = errors.New("input.image_properties must be an object")
	}
	if props == nil {
		props = map[string]any{}
	}
	// Glance's legacy import takes the disk format from import_from_format
	// when the properties do not name one.
	if f, ok := input["import_from_format"].(string); ok && f != "" {
		if _, set := props["disk_format"]; !set {
			props = cloneMap(props)
			props["disk_format"] = f
		}
	}
	if job.ImageErr == nil {
		job.Image, job.ImageErr = s.createSpec(props, p)
	}
	task, err := s.tasks.CreateImport(r.Context(), p, input, job, w.Header().Get("X-Openstack-Request-Id"))
	if err != nil {
		return taskError("", err)
	}
	w.Header().Set("Location", "/v2/tasks/"+task.ID)
	writeJSON(w, http.StatusCreated, taskView(task, false))
	return nil
}

func cloneMap(m map[string]any) map[string]any {
	c := make(map[string]any, len(m)+1)
	for k, v := range m {
		c[k] = v
	}
	return c
}

// jsonRepr is a JSON value as Python's jsonschema messages quote it.
func jsonRepr(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case string:
		return "'" + x + "'"
	case bool:
		if x {
			return "True"
		}
		return "False"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// showTask is GET /v2/tasks/{id}.
func (s *Server) showTask(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	id := r.PathValue("id")
	task, err := s.tasks.Get(r.Context(), p, id)
	if err != nil {
		return taskError(id, err)
	}
	writeJSON(w, http.StatusOK, taskView(task, false))
	return nil
}

// deleteTask is DELETE /v2/tasks/{id}: refused, as Glance refuses it.
func (s *Server) deleteTask(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	if err := s.tasks.APIAccess(p); err != nil {
		return taskError("", err)
	}
	w.Header().Set("Allow", "GET")
	return errorf(http.StatusMethodNotAllowed, "This operation is currently not permitted on Glance Tasks. They are auto deleted after reaching the time based on their expires_at property.")
}

// listTasksAPI is GET /v2/tasks: filters type, status (and owner), sort_key
// and sort_dir (created_at desc by default), limit/marker paging with a
// next link when a page is full.
func (s *Server) listTasksAPI(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	if err := s.tasks.APIAccess(p); err != nil {
		return taskError("", err)
	}
	v := r.URL.Query()
	q := lifecycle.TaskQuery{SortKey: "created_at", Desc: true, Limit: defaultLimit,
		Type: v.Get("type"), Status: v.Get("status"), Owner: v.Get("owner"), Marker: v.Get("marker")}
	if d := v.Get("sort_dir"); d != "" {
		if d != "asc" && d != "desc" {
			return errorf(http.StatusBadRequest, "Invalid sort direction: %s", d)
		}
		q.Desc = d == "desc"
	}
	if k := v.Get("sort_key"); k != "" {
		if !slices.Contains(lifecycle.TaskSortKeys, k) {
			return errorf(http.StatusBadRequest, "Unsupported sort_key: %s", k)
		}
		q.SortKey = k
	}
	if q.Status != "" && !slices.Contains(lifecycle.TaskStatuses, q.Status) {
		return errorf(http.StatusBadRequest, "Invalid status value: %s", q.Status)
	}
	if q.Type != "" && !slices.Contains(lifecycle.TaskTypes, q.Type) {
		return errorf(http.StatusBadRequest, "Invalid type value: %s", q.Type)
	}
	if q.Marker != "" && !lifecycle.ValidID(q.Marker) {
		return errorf(http.StatusBadRequest, "Invalid marker format")
	}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil {
			return errorf(http.StatusBadRequest, "limit param must be an integer")
		}
		if n < 0 {
			return errorf(http.StatusBadRequest, "limit param must be positive")
		}
		q.Limit = min(n, maxLimit)
	}
	var tasks []*meta.Task
	full := false
	if q.Limit > 0 { // limit=0 lists nothing, as in Glance
		var err error
		if tasks, full, err = s.tasks.List(r.Context(), p, q); err != nil {
			return taskError("", err)
		}
	}
	views := make([]map[string]any, 0, len(tasks))
	for _, t := range tasks {
		views = append(views, taskView(t, true))
	}
	params := url.Values{}
	for k, vs := range v {
		if k != "marker" {
			params[k] = vs
		}
	}
	body := map[string]any{"tasks": views, "first": "/v2/tasks", "schema": "/v2/schemas/tasks"}
	if len(params) > 0 {
		body["first"] = "/v2/tasks?" + params.Encode()
	}
	// Glance offers a next page whenever a page is full (limit 0 lists
	// nothing, and offers nothing more).
	if full && len(tasks) > 0 {
		params.Set("marker", tasks[len(tasks)-1].ID)
		body["next"] = "/v2/tasks?" + params.Encode()
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}
