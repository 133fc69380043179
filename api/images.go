package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
)

// maxJSONBody bounds a JSON request body (128 properties of 64 KiB fit).
const maxJSONBody = 16 << 20

// importMethods are the import methods this listener offers.
var importMethods = []string{"glance-direct", "web-download"}

// imageView renders img as Glance's image JSON for p: every base key
// present (null when unset), custom properties as top-level strings,
// locations for those who may see them.
func (s *Server) imageView(img *meta.Image, p lifecycle.Principal) map[string]any {
	v := map[string]any{}
	s.addLocationsView(v, p, img)
	for k, val := range img.Properties {
		v[k] = val
	}
	if img.Error != "" {
		v["glimpse.error"] = img.Error
	}
	if img.DetectedFormat != "" {
		v["glimpse.detected_format"] = img.DetectedFormat
	}
	nullable := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	var size, vsize any
	if img.Size != nil {
		size = *img.Size
	}
	if img.VirtualSize != nil {
		vsize = *img.VirtualSize
	}
	tags := img.Tags
	if tags == nil {
		tags = []string{}
	}
	for k, val := range map[string]any{
		"id":               img.ID,
		"name":             img.Name,
		"status":           string(img.Status),
		"visibility":       img.Visibility,
		"protected":        img.Protected,
		"os_hidden":        img.OSHidden,
		"owner":            nullable(img.Owner),
		"disk_format":      nullable(img.DiskFormat),
		"container_format": nullable(img.ContainerFormat),
		"size":             size,
		"virtual_size":     vsize,
		"checksum":         nullable(img.Checksum),
		"os_hash_algo":     nullable(img.OSHashAlgo),
		"os_hash_value":    nullable(img.OSHashValue),
		"min_disk":         img.MinDisk,
		"min_ram":          img.MinRAM,
		"tags":             tags,
		"created_at":       lifecycle.FormatTime(img.CreatedAt),
		"updated_at":       lifecycle.FormatTime(img.UpdatedAt),
		"self":             "/v2/images/" + img.ID,
		"file":             "/v2/images/" + img.ID + "/file",
		"schema":           "/v2/schemas/image",
	} {
		v[k] = val
	}
	return v
}

// readJSON decodes a JSON body into v, with Glance's messages.
func readJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxJSONBody+1))
	if err != nil {
		var he *httpError
		if errors.As(err, &he) {
			return err // the client stalled (408)
		}
		return errorf(http.StatusBadRequest, "Could not read the request body: %v", err)
	}
	if len(body) > maxJSONBody {
		return errorf(http.StatusRequestEntityTooLarge, "Request body larger than %d bytes.", maxJSONBody)
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return errorf(http.StatusBadRequest, "Body expected in request.")
	}
	if !utf8.Valid(body) {
		// Glance decodes the body as UTF-8 before parsing; Go's decoder
		// would quietly replace the bad bytes instead.
		return errorf(http.StatusBadRequest, "Malformed JSON in request body: it is not valid UTF-8.")
	}
	if hasLoneSurrogate(body) {
		// Go's decoder would turn \udc80 into U+FFFD, so two different
		// keys could become one; Python's keeps the surrogate, which
		// cannot be stored as UTF-8. Refuse it as the bytes it stands for.
		return errorf(http.StatusBadRequest, "Malformed JSON in request body: a \\u escape is a lone UTF-16 surrogate, not a character.")
	}
	if string(trimmed) == "null" {
		return errorf(http.StatusBadRequest, "Unexpected body type. Expected list/dict.")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return errorf(http.StatusBadRequest, "Unexpected body type. Expected list/dict.")
		}
		return errorf(http.StatusBadRequest, "Malformed JSON in request body.")
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "Malformed JSON in request body.")
	}
	return nil
}

// Keys a create request may not carry (glance/api/v2/images.py).
var (
	createDisallowed = []string{"direct_url", "self", "file", "schema", "stores"}
	createReadOnly   = []string{"created_at", "updated_at", "status", "checksum", "size", "virtual_size", "os_hash_algo", "os_hash_value"}
	reservedKeys     = []string{"location", "locations", "deleted", "deleted_at"}
)

func (s *Server) createImage(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	var body map[string]any
	if err := readJSON(r, &body); err != nil {
		return err
	}
	spec, err := s.createSpec(body, p)
	if err != nil {
		return err
	}
	img, err := s.svc.Create(r.Context(), p, spec)
	if err != nil {
		return err
	}
	w.Header().Set("Location", baseURL(r)+"/v2/images/"+img.ID)
	w.Header().Set("OpenStack-image-import-methods", strings.Join(importMethods, ","))
	writeJSON(w, http.StatusCreated, s.imageView(img, p))
	return nil
}

// createSpec is the new image a create body (or an import task's
// image_properties) describes, checked as Glance's image schema checks it.
func (s *Server) createSpec(body map[string]any, p lifecycle.Principal) (lifecycle.CreateSpec, error) {
	spec := lifecycle.CreateSpec{Properties: map[string]string{}}
	for k, v := range body {
		var err error
		switch {
		case slices.Contains(createDisallowed, k), slices.Contains(createReadOnly, k):
			err = errorf(http.StatusForbidden, "Attribute '%s' is read-only.", k)
		case slices.Contains(reservedKeys, k), strings.HasPrefix(k, "os_glance"):
			err = errorf(http.StatusForbidden, "Attribute '%s' is reserved.", k)
		case k == "owner":
			// Admins may give the image to another project; the lifecycle
			// decides (add_image). null: the caller's project.
			if v != nil {
				if spec.Owner, err = str(k, v, false); err == nil && spec.Owner == "" {
					err = errorf(http.StatusBadRequest, "Provided object does not match schema 'image': owner must be a project id, not empty")
				}
			}
		case k == "id":
			spec.ID, err = str(k, v, false)
		case k == "name":
			spec.Name, err = str(k, v, true)
		case k == "disk_format":
			spec.DiskFormat, err = str(k, v, true)
		case k == "container_format":
			spec.ContainerFormat, err = str(k, v, true)
		case k == "visibility":
			spec.Visibility, err = str(k, v, false)
		case k == "protected":
			spec.Protected, err = boolean(k, v)
		case k == "os_hidden":
			spec.OSHidden, err = boolean(k, v)
		case k == "min_disk":
			spec.MinDisk, err = integer(k, v)
		case k == "min_ram":
			spec.MinRAM, err = integer(k, v)
		case k == "tags":
			spec.Tags, err = stringList(k, v)
		default:
			if len(k) > lifecycle.MaxKeyLength {
				err = errorf(http.StatusBadRequest, "Provided object does not match schema 'image': '%.40s...' does not match any of the regexes: property key too long (over %d characters)", k, lifecycle.MaxKeyLength)
				break
			}
			if spec.Properties[k], err = str(k, v, false); err == nil {
				err = s.checkProperty(k, v)
			}
		}
		if err != nil {
			return spec, err
		}
	}
	if len(spec.Properties) > lifecycle.MaxProperties {
		return spec, errorf(http.StatusRequestEntityTooLarge, "Maximum number of image properties exceeded: %d > %d.", len(spec.Properties), lifecycle.MaxProperties)
	}
	return spec, nil
}

func invalidType(k, want string) error {
	return errorf(http.StatusBadRequest, "Provided object does not match schema 'image': %s is not of type %s", k, want)
}

func str(k string, v any, nullable bool) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case nil:
		if nullable {
			return "", nil
		}
	}
	return "", invalidType(k, "'string'")
}

func boolean(k string, v any) (bool, error) {
	b, ok := v.(bool)
	if !ok {
		return false, invalidType(k, "'boolean'")
	}
	return b, nil
}

func integer(k string, v any) (int64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, invalidType(k, "'integer'")
	}
	i, err := n.Int64()
	if err != nil {
		return 0, invalidType(k, "'integer'")
	}
	if i < 0 {
		return 0, errorf(http.StatusBadRequest, "Provided object does not match schema 'image': %s %d is less than the minimum of 0", k, i)
	}
	return i, nil
}

func stringList(k string, v any) ([]string, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, invalidType(k, "'array'")
	}
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, ok := x.(string)
		if !ok {
			return nil, invalidType(k+" item", "'string'")
		}
		out = append(out, s)
	}
	return out, nil
}

func (s *Server) showImage(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	img, err := s.svc.Get(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return notFound(r.PathValue("id"), err)
	}
	writeJSON(w, http.StatusOK, s.imageView(img, p))
	return nil
}

// notFound gives ErrNotFound Glance's message.
func notFound(id string, err error) error {
	if errors.Is(err, lifecycle.ErrNotFound) {
		return errorf(http.StatusNotFound, "No image found with ID %s", id)
	}
	return err
}

const (
	patchV21 = "application/openstack-images-v2.1-json-patch"
	patchV20 = "application/openstack-images-v2.0-json-patch"
)

func (s *Server) patchImage(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != patchV21 && mt != patchV20 {
		w.Header().Set("Accept-Patch", patchV20+", "+patchV21)
		return errorf(http.StatusUnsupportedMediaType, "The request media type %s is not supported by this server: use %s.", mt, patchV21)
	}
	var raw []map[string]any
	if err := readJSON(r, &raw); err != nil {
		return err
	}
	// Changes of /locations go to the lifecycle one by one (they probe
	// a URL); the others, in runs between them, atomically.
	type step struct {
		ops []lifecycle.Op
		loc *locationChange
	}
	var steps []step
	for _, change := range raw {
		lc, isLoc, err := decodeLocationChange(change, mt == patchV20)
		if err != nil {
			return err
		}
		if isLoc {
			steps = append(steps, step{loc: &lc})
			continue
		}
		op, err := decodeChange(change, mt == patchV20)
		if err != nil {
			return err
		}
		if op.Op != "remove" {
			if err := s.checkProperty(op.Key, op.Value); err != nil {
				return err
			}
		}
		if len(steps) == 0 || steps[len(steps)-1].loc != nil {
			steps = append(steps, step{})
		}
		steps[len(steps)-1].ops = append(steps[len(steps)-1].ops, op)
	}
	id := r.PathValue("id")
	var img *meta.Image
	var err error
	for _, st := range steps {
		if st.loc != nil {
			img, err = s.applyLocationChange(r, p, id, *st.loc)
		} else {
			img, err = s.svc.Patch(r.Context(), p, id, st.ops)
		}
		if err != nil {
			return notFound(id, err)
		}
	}
	if img == nil {
		if img, err = s.svc.Get(r.Context(), p, id); err != nil {
			return notFound(id, err)
		}
	}
	writeJSON(w, http.StatusOK, s.imageView(img, p))
	return nil
}

// decodeChange reads one JSON-patch change: v2.1 {"op", "path", "value"}
// or the v2.0 draft form {"replace": "/path", "value"}.
func decodeChange(c map[string]any, v20 bool) (lifecycle.Op, error) {
	var op, path string
	if v20 {
		for _, o := range []string{"add", "replace", "remove"} {
			if v, ok := c[o].(string); ok {
				op, path = o, v
			}
		}
		if op == "" {
			return lifecycle.Op{}, errorf(http.StatusBadRequest, "Unable to find `op` in JSON Schema change. It must be one of the following: add, remove, replace.")
		}
	} else {
		o, ok := c["op"].(string)
		if !ok {
			return lifecycle.Op{}, errorf(http.StatusBadRequest, "Unable to find `op` in JSON Schema change. It must be one of the following: add, remove, replace.")
		}
		if o != "add" && o != "replace" && o != "remove" {
			return lifecycle.Op{}, errorf(http.StatusBadRequest, "Invalid operation: `%s`. It must be one of the following: add, remove, replace.", o)
		}
		op = o
		if path, ok = c["path"].(string); !ok {
			return lifecycle.Op{}, errorf(http.StatusBadRequest, "Unable to find '%s' in JSON Schema change", "path")
		}
	}
	key, err := decodePointer(path)
	if err != nil {
		return lifecycle.Op{}, err
	}
	value, hasValue := c["value"]
	if op != "remove" && !hasValue {
		return lifecycle.Op{}, errorf(http.StatusBadRequest, "Unable to find '%s' in JSON Schema change", "value")
	}
	if (key == "min_disk" || key == "min_ram") && op != "remove" {
		if _, err := integer(key, value); err != nil {
			return lifecycle.Op{}, err
		}
	}
	return lifecycle.Op{Op: op, Key: key, Value: value}, nil
}

// decodePointer checks a JSON pointer as Glance does (depth 1, ~0 and ~1
// escapes) and returns the property it names.
func decodePointer(path string) (string, error) {
	bad := errorf(http.StatusBadRequest, "Invalid JSON pointer for this resource: '%s'", path)
	if !strings.HasPrefix(path, "/") || strings.HasSuffix(path, "/") || strings.Contains(path, "//") {
		return "", bad
	}
	seg := path[1:]
	if strings.Contains(seg, "/") {
		return "", bad
	}
	for i := 0; i < len(seg); i++ {
		if seg[i] == '~' && (i+1 >= len(seg) || (seg[i+1] != '0' && seg[i+1] != '1')) {
			return "", errorf(http.StatusBadRequest, "Invalid JSON pointer for this resource: '%s': ~ must be followed by 0 or 1", path)
		}
	}
	seg = strings.ReplaceAll(strings.ReplaceAll(seg, "~1", "/"), "~0", "~")
	seg = strings.TrimSpace(seg)
	if seg == "" {
		return "", bad
	}
	return seg, nil
}

func (s *Server) deleteImage(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	id := r.PathValue("id")
	if err := s.svc.Delete(r.Context(), p, id); err != nil {
		if errors.Is(err, lifecycle.ErrProtected) {
			return errorf(http.StatusForbidden, "Image %s is protected and cannot be deleted.", id)
		}
		return notFound(id, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) deactivate(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	return s.action(w, r, p, s.svc.Deactivate, "deactivate")
}

func (s *Server) reactivate(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	return s.action(w, r, p, s.svc.Reactivate, "reactivate")
}

func (s *Server) action(w http.ResponseWriter, r *http.Request, p lifecycle.Principal, do func(ctx context.Context, p lifecycle.Principal, id string) (*meta.Image, error), name string) error {
	id := r.PathValue("id")
	if _, err := do(r.Context(), p, id); err != nil {
		if errors.Is(err, lifecycle.ErrConflict) {
			// Glance answers 403 for a status that cannot be (re)activated.
			img, gerr := s.svc.Get(r.Context(), p, id)
			if gerr == nil {
				return errorf(http.StatusForbidden, "Not allowed to %s image in status '%s'", name, img.Status)
			}
		}
		return notFound(id, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) addTag(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	id := r.PathValue("id")
	if _, err := s.svc.AddTag(r.Context(), p, id, r.PathValue("tag")); err != nil {
		return notFound(id, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) removeTag(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	id, tag := r.PathValue("id"), r.PathValue("tag")
	if _, err := s.svc.RemoveTag(r.Context(), p, id, tag); err != nil {
		if errors.Is(err, lifecycle.ErrNoProperty) {
			return errorf(http.StatusNotFound, "Tag %s not found.", tag)
		}
		return notFound(id, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listTasks is GET /v2/images/{id}/tasks: the tasks of an image's import.
// glimpse's imports (glance-direct, web-download) run without a task
// record, so the list is empty; the tasks API's own import tasks are
// listed by GET /v2/tasks.
func (s *Server) listTasks(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	if _, err := s.svc.Get(r.Context(), p, r.PathValue("id")); err != nil {
		return notFound(r.PathValue("id"), err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"tasks": []any{}})
	return nil
}

func (s *Server) infoImport(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	writeJSON(w, http.StatusOK, map[string]any{"import-methods": map[string]any{
		"description": "Import methods available.", "type": "array", "value": importMethods,
	}})
	return nil
}

func (s *Server) infoStores(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	return errorf(http.StatusNotFound, "Multi backend is not supported at this site.")
}

func (s *Server) infoUsage(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	writeJSON(w, http.StatusOK, map[string]any{"usage": map[string]any{}})
	return nil
}
