package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/metadefs"
)

// The metadata definitions API (/v2/metadefs) and its schemas, as Glance 25
// serves them. The rules and storage are package metadefs'; these handlers
// decode, call it, and shape the answers as Glance's serializers do.

func (s *Server) metadefRoutes() {
	if s.md == nil {
		return
	}
	m := s.mux
	for _, name := range metadefs.SchemaNames {
		m.Handle("GET /v2/schemas/metadefs/"+name, s.api(noBody(s.metadefSchema(name))))
	}
	const ns = "/v2/metadefs/namespaces/{namespace}"
	m.Handle("GET /v2/metadefs/resource_types", s.api(noBody(s.listResourceTypes)))
	m.Handle("GET /v2/metadefs/namespaces", s.api(noBody(s.listNamespaces)))
	m.Handle("POST /v2/metadefs/namespaces", s.api(s.createNamespace))
	m.Handle("GET "+ns, s.api(noBody(s.showNamespace)))
	m.Handle("PUT "+ns, s.api(s.updateNamespace))
	m.Handle("DELETE "+ns, s.api(noBody(s.deleteNamespace)))

	m.Handle("GET "+ns+"/resource_types", s.api(noBody(s.listAssociations)))
	m.Handle("POST "+ns+"/resource_types", s.api(s.createAssociation))
	m.Handle("DELETE "+ns+"/resource_types/{name}", s.api(noBody(s.deleteRecord(s.md.Dissociate))))

	m.Handle("GET "+ns+"/objects", s.api(noBody(s.listObjects)))
	m.Handle("POST "+ns+"/objects", s.api(s.createObject))
	m.Handle("DELETE "+ns+"/objects", s.api(noBody(s.deleteContents(metadefs.Objects))))
	m.Handle("GET "+ns+"/objects/{name}", s.api(noBody(s.showObject)))
	m.Handle("PUT "+ns+"/objects/{name}", s.api(s.updateObject))
	m.Handle("DELETE "+ns+"/objects/{name}", s.api(noBody(s.deleteRecord(s.md.DeleteObject))))

	m.Handle("GET "+ns+"/properties", s.api(noBody(s.listProperties)))
	m.Handle("POST "+ns+"/properties", s.api(s.createProperty))
	m.Handle("DELETE "+ns+"/properties", s.api(noBody(s.deleteContents(metadefs.Properties))))
	m.Handle("GET "+ns+"/properties/{name}", s.api(noBody(s.showProperty)))
	m.Handle("PUT "+ns+"/properties/{name}", s.api(s.updateProperty))
	m.Handle("DELETE "+ns+"/properties/{name}", s.api(noBody(s.deleteRecord(s.md.DeleteProperty))))

	m.Handle("GET "+ns+"/tags", s.api(noBody(s.listTags)))
	m.Handle("POST "+ns+"/tags", s.api(s.createTags))
	m.Handle("DELETE "+ns+"/tags", s.api(noBody(s.deleteContents(metadefs.Tags))))
	m.Handle("GET "+ns+"/tags/{name}", s.api(noBody(s.showTag)))
	m.Handle("POST "+ns+"/tags/{name}", s.api(s.createTag))
	m.Handle("PUT "+ns+"/tags/{name}", s.api(s.updateTag))
	m.Handle("DELETE "+ns+"/tags/{name}", s.api(noBody(s.deleteRecord(s.md.DeleteTag))))
}

func (s *Server) metadefSchema(name string) handler {
	return func(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
		return rawJSON(w, metadefs.Schema(name))
	}
}

// decodeBody reads a JSON request body and decodes it with package
// metadefs' checks, which refuse in Glance's words.
func decodeBody[T any](r *http.Request, decode func([]byte) (T, error)) (T, error) {
	var raw json.RawMessage
	if err := readJSON(r, &raw); err != nil {
		var zero T
		return zero, err
	}
	return decode(raw)
}

// answer writes v with status once the call that returned it succeeded.
func answer(w http.ResponseWriter, status int, v any, err error) error {
	if err != nil {
		return err
	}
	writeJSON(w, status, v)
	return nil
}

// noContent answers 204 once the deletion succeeded.
func noContent(w http.ResponseWriter, err error) error {
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteRecord is DELETE of the namespace's object, property, tag or
// resource type association that the path names.
func (s *Server) deleteRecord(del func(ctx context.Context, p lifecycle.Principal, ns, name string) error) handler {
	return func(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
		return noContent(w, del(r.Context(), p, r.PathValue("namespace"), r.PathValue("name")))
	}
}

// Answers, as Glance's wsme models serialize.

func namespaceHref(ns string) string { return "/v2/metadefs/namespaces/" + ns }

type namespaceOut struct {
	metadefs.Namespace
	Self                     string                       `json:"self"`
	Schema                   string                       `json:"schema"`
	ResourceTypeAssociations []metadefs.Association       `json:"resource_type_associations,omitempty"`
	Properties               map[string]metadefs.Property `json:"properties,omitempty"`
	Objects                  []objectOut                  `json:"objects,omitempty"`
	Tags                     []tagName                    `json:"tags,omitempty"`
}

type objectOut struct {
	metadefs.Object
	Self   string `json:"self"`
	Schema string `json:"schema"`
}

type tagName struct {
	Name string `json:"name"`
}

type resourceTypeOut struct {
	Name      string `json:"name"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

func newObjectOut(ns string, o metadefs.Object) objectOut {
	return objectOut{Object: o, Self: namespaceHref(ns) + "/objects/" + o.Name, Schema: "/v2/schemas/metadefs/object"}
}

// propertyMap shows properties keyed by name, without the name inside.
func propertyMap(props []metadefs.Property) map[string]metadefs.Property {
	if len(props) == 0 {
		return nil
	}
	out := make(map[string]metadefs.Property, len(props))
	for _, p := range props {
		name := p.Name
		p.Name = ""
		out[name] = p
	}
	return out
}

func tagNames(tags []metadefs.Tag) []tagName {
	out := make([]tagName, 0, len(tags))
	for _, t := range tags {
		out = append(out, tagName{Name: t.Name})
	}
	return out
}

// newNamespaceOut shows d; with a resource type, property names take the
// prefix of the namespace's association with it (Glance's show with
// ?resource_type=).
func newNamespaceOut(d *metadefs.Detail, resourceType string) namespaceOut {
	out := namespaceOut{
		Namespace:                d.Namespace,
		Self:                     namespaceHref(d.Namespace.Namespace),
		Schema:                   "/v2/schemas/metadefs/namespace",
		ResourceTypeAssociations: d.Associations,
		Properties:               propertyMap(d.Properties),
	}
	prefix := ""
	for _, a := range d.Associations {
		if resourceType != "" && a.Name == resourceType {
			prefix = a.Prefix
		}
	}
	if prefix != "" {
		renamed := make(map[string]metadefs.Property, len(out.Properties))
		for k, v := range out.Properties {
			renamed[prefix+k] = v
		}
		out.Properties = renamed
	}
	for _, o := range d.Objects {
		if prefix != "" {
			props := make(map[string]metadefs.Property, len(o.Properties))
			for k, v := range o.Properties {
				props[prefix+k] = v
			}
			o.Properties = props
			req := make([]string, len(o.Required))
			for i, r := range o.Required {
				req[i] = prefix + r
			}
			o.Required = req
		}
		out.Objects = append(out.Objects, newObjectOut(d.Namespace.Namespace, o))
	}
	if len(d.Tags) > 0 {
		out.Tags = tagNames(d.Tags)
	}
	return out
}

// Namespaces.

// Glance's limit_param_default and api_limit_max.
const (
	metadefLimitDefault = 25
	metadefLimitMax     = 1000
)

func (s *Server) listNamespaces(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	q := r.URL.Query()
	o := metadefs.ListOptions{
		Marker:     q.Get("marker"),
		SortKey:    q.Get("sort_key"),
		SortDir:    q.Get("sort_dir"),
		Visibility: q.Get("visibility"),
		Limit:      metadefLimitDefault,
	}
	if v := q.Get("resource_types"); v != "" {
		o.ResourceTypes = strings.Split(v, ",")
	}
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil {
			return errorf(http.StatusBadRequest, "limit param must be an integer")
		}
		if n < 0 {
			return errorf(http.StatusBadRequest, "limit param must be positive")
		}
		o.Limit = n
	}
	o.Limit = min(o.Limit, metadefLimitMax)
	empty := o.Limit == 0 // an empty page, as Glance's query gives
	o.Limit = max(o.Limit, 1)
	list, err := s.md.ListNamespaces(r.Context(), p, o)
	if err != nil {
		return err
	}
	if empty {
		list = nil
	}
	out := struct {
		Namespaces []namespaceOut `json:"namespaces"`
		First      string         `json:"first"`
		Schema     string         `json:"schema"`
		Next       string         `json:"next,omitempty"`
	}{Namespaces: []namespaceOut{}, First: "/v2/metadefs/namespaces", Schema: "/v2/schemas/metadefs/namespaces"}
	for i := range list {
		out.Namespaces = append(out.Namespaces, newNamespaceOut(&list[i], ""))
	}
	params := url.Values{}
	for k, v := range q {
		if k != "marker" {
			params[k] = v
		}
	}
	if len(params) > 0 {
		out.First += "?" + params.Encode()
	}
	if len(list) > 0 && len(list) == o.Limit {
		params.Set("marker", list[len(list)-1].Namespace.Namespace)
		out.Next = "/v2/metadefs/namespaces?" + params.Encode()
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) createNamespace(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	d, err := decodeBody(r, metadefs.DecodeNamespace)
	if err != nil {
		return err
	}
	created, err := s.md.CreateNamespace(r.Context(), p, d)
	if err != nil {
		return err
	}
	w.Header().Set("Location", namespaceHref(created.Namespace.Namespace))
	writeJSON(w, http.StatusCreated, newNamespaceOut(created, ""))
	return nil
}

func (s *Server) showNamespace(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	d, err := s.md.GetNamespace(r.Context(), p, r.PathValue("namespace"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newNamespaceOut(d, r.URL.Query().Get("resource_type")))
	return nil
}

func (s *Server) updateNamespace(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	d, err := decodeBody(r, metadefs.DecodeNamespace)
	if err != nil {
		return err
	}
	ns, err := s.md.UpdateNamespace(r.Context(), p, r.PathValue("namespace"), d.Namespace)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newNamespaceOut(&metadefs.Detail{Namespace: *ns}, ""))
	return nil
}

func (s *Server) deleteNamespace(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	return noContent(w, s.md.DeleteNamespace(r.Context(), p, r.PathValue("namespace")))
}

func (s *Server) deleteContents(k metadefs.Kind) handler {
	return func(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
		return noContent(w, s.md.DeleteContents(r.Context(), p, r.PathValue("namespace"), k))
	}
}

// Resource types and associations.

func (s *Server) listResourceTypes(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	list, err := s.md.ListResourceTypes(r.Context(), p)
	if err != nil {
		return err
	}
	out := []resourceTypeOut{}
	for _, rt := range list {
		out = append(out, resourceTypeOut{Name: rt.Name, CreatedAt: lifecycle.FormatTime(rt.CreatedAt), UpdatedAt: lifecycle.FormatTime(rt.UpdatedAt)})
	}
	writeJSON(w, http.StatusOK, map[string]any{"resource_types": out})
	return nil
}

func (s *Server) listAssociations(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	list, err := s.md.ListAssociations(r.Context(), p, r.PathValue("namespace"))
	if err != nil {
		return err
	}
	if list == nil {
		list = []metadefs.Association{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"resource_type_associations": list})
	return nil
}

func (s *Server) createAssociation(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	a, err := decodeBody(r, metadefs.DecodeAssociation)
	if err != nil {
		return err
	}
	created, err := s.md.Associate(r.Context(), p, r.PathValue("namespace"), a)
	return answer(w, http.StatusCreated, created, err)
}

// recordPage reads the paging parameters of an object or tag listing;
// limitOK is the deserializer's own check (objects refuse 0, tags take it
// as no limit).
func recordPage(r *http.Request, limitOK func(int) bool) (metadefs.Page, error) {
	q := r.URL.Query()
	pg := metadefs.Page{Marker: q.Get("marker"), SortKey: q.Get("sort_key"), SortDir: q.Get("sort_dir")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return pg, errorf(http.StatusBadRequest, "limit param must be an integer")
		}
		if !limitOK(n) {
			return pg, errorf(http.StatusBadRequest, "limit param must be positive")
		}
		pg.Limit = n
	}
	if v := q.Get("visibility"); v != "" && v != "public" && v != "private" && v != "shared" {
		return pg, errorf(http.StatusBadRequest, "Invalid visibility value: %s", v)
	}
	return pg, nil
}

// Objects.

func (s *Server) listObjects(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	ns := r.PathValue("namespace")
	pg, err := recordPage(r, func(n int) bool { return n > 0 })
	if err != nil {
		return err
	}
	list, err := s.md.ListObjects(r.Context(), p, ns, pg)
	if err != nil {
		return err
	}
	out := []objectOut{}
	for _, o := range list {
		out = append(out, newObjectOut(ns, o))
	}
	writeJSON(w, http.StatusOK, map[string]any{"objects": out, "schema": "v2/schemas/metadefs/objects"})
	return nil
}

func (s *Server) createObject(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	o, err := decodeBody(r, func(raw []byte) (metadefs.Object, error) { return metadefs.DecodeObject(raw, true) })
	if err != nil {
		return err
	}
	ns := r.PathValue("namespace")
	created, err := s.md.CreateObject(r.Context(), p, ns, o)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, newObjectOut(ns, *created))
	return nil
}

func (s *Server) showObject(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	ns := r.PathValue("namespace")
	o, err := s.md.GetObject(r.Context(), p, ns, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newObjectOut(ns, *o))
	return nil
}

func (s *Server) updateObject(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	o, err := decodeBody(r, func(raw []byte) (metadefs.Object, error) { return metadefs.DecodeObject(raw, false) })
	if err != nil {
		return err
	}
	ns := r.PathValue("namespace")
	updated, err := s.md.UpdateObject(r.Context(), p, ns, r.PathValue("name"), o)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newObjectOut(ns, *updated))
	return nil
}

// Properties.

func (s *Server) listProperties(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	list, err := s.md.ListProperties(r.Context(), p, r.PathValue("namespace"))
	if err != nil {
		return err
	}
	props := propertyMap(list)
	if props == nil {
		props = map[string]metadefs.Property{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"properties": props})
	return nil
}

func (s *Server) createProperty(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	pr, err := decodeBody(r, metadefs.DecodeProperty)
	if err != nil {
		return err
	}
	created, err := s.md.CreateProperty(r.Context(), p, r.PathValue("namespace"), pr)
	return answer(w, http.StatusCreated, created, err)
}

func (s *Server) showProperty(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	pr, err := s.md.GetProperty(r.Context(), p, r.PathValue("namespace"), r.PathValue("name"), r.URL.Query().Get("resource_type"))
	return answer(w, http.StatusOK, pr, err)
}

func (s *Server) updateProperty(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	pr, err := decodeBody(r, metadefs.DecodeProperty)
	if err != nil {
		return err
	}
	updated, err := s.md.UpdateProperty(r.Context(), p, r.PathValue("namespace"), r.PathValue("name"), pr)
	return answer(w, http.StatusOK, updated, err)
}

// Tags.

func (s *Server) listTags(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	pg, err := recordPage(r, func(n int) bool { return n >= 0 })
	if err != nil {
		return err
	}
	list, err := s.md.ListTags(r.Context(), p, r.PathValue("namespace"), pg)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"tags": tagNames(list)})
	return nil
}

func (s *Server) showTag(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	t, err := s.md.GetTag(r.Context(), p, r.PathValue("namespace"), r.PathValue("name"))
	return answer(w, http.StatusOK, t, err)
}

// createTag is POST .../tags/{name}: the body, if any, is ignored, as
// Glance does.
func (s *Server) createTag(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	name := r.PathValue("name")
	if err := metadefs.CheckTagName(name); err != nil {
		return err
	}
	t, err := s.md.CreateTag(r.Context(), p, r.PathValue("namespace"), name)
	return answer(w, http.StatusCreated, t, err)
}

func (s *Server) createTags(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	names, err := decodeBody(r, metadefs.DecodeTags)
	if err != nil {
		return err
	}
	appending, _ := strconv.ParseBool(strings.TrimSpace(r.Header.Get("X-Openstack-Append")))
	if v := strings.ToLower(strings.TrimSpace(r.Header.Get("X-Openstack-Append"))); v == "yes" || v == "on" || v == "y" {
		appending = true // oslo's bool_from_string
	}
	created, err := s.md.CreateTags(r.Context(), p, r.PathValue("namespace"), names, appending)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"tags": tagNames(created)})
	return nil
}

func (s *Server) updateTag(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	name, err := decodeBody(r, metadefs.DecodeTag)
	if err != nil {
		return err
	}
	t, err := s.md.UpdateTag(r.Context(), p, r.PathValue("namespace"), r.PathValue("name"), name)
	return answer(w, http.StatusOK, t, err)
}
