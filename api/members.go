package api

import (
	"net/http"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
)

// The image members API (glance/api/v2/image_members.py): the handlers
// decode the body with Glance's messages and leave every rule to
// lifecycle.Members.

func memberView(m *meta.Member) map[string]any {
	return map[string]any{
		"member_id":  m.MemberID,
		"image_id":   m.ImageID,
		"status":     m.Status,
		"created_at": lifecycle.FormatTime(m.CreatedAt),
		"updated_at": lifecycle.FormatTime(m.UpdatedAt),
		"schema":     "/v2/schemas/member",
	}
}

func (s *Server) listMembers(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	members, err := s.svc.Members().List(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	views := make([]map[string]any, 0, len(members))
	for _, m := range members {
		views = append(views, memberView(m))
	}
	writeJSON(w, http.StatusOK, map[string]any{"members": views, "schema": "/v2/schemas/members"})
	return nil
}

// addMember answers 200, not 201, as Glance (gophercloud requires it).
func (s *Server) addMember(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	var body any
	if err := readJSON(r, &body); err != nil {
		return err
	}
	obj, ok := body.(map[string]any)
	if !ok {
		return errorf(http.StatusBadRequest, `Expected a member in the form: {"member": "image_id"}`)
	}
	v, ok := obj["member"]
	if !ok {
		return errorf(http.StatusBadRequest, "Member to be added not specified")
	}
	if empty(v) {
		return errorf(http.StatusBadRequest, "Member can't be empty")
	}
	member, ok := v.(string)
	if !ok {
		// Glance would store the text of a number or a list; a project id
		// is a string.
		return errorf(http.StatusBadRequest, `Expected a member in the form: {"member": "image_id"}`)
	}
	m, err := s.svc.Members().Add(r.Context(), p, r.PathValue("id"), member)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, memberView(m))
	return nil
}

// empty is Python's falsiness of a decoded JSON value (Glance's "if not
// member_id").
func empty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case bool:
		return !x
	case map[string]any:
		return len(x) == 0
	case []any:
		return len(x) == 0
	}
	if n, ok := v.(interface{ String() string }); ok { // json.Number
		f := n.String()
		return f == "0" || f == "0.0" || f == "-0"
	}
	return false
}

func (s *Server) showMember(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	m, err := s.svc.Members().Get(r.Context(), p, r.PathValue("id"), r.PathValue("member"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, memberView(m))
	return nil
}

func (s *Server) updateMember(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	var body any
	if err := readJSON(r, &body); err != nil {
		return err
	}
	obj, ok := body.(map[string]any)
	if !ok {
		return errorf(http.StatusBadRequest, `Expected a status in the form: {"status": "status"}`)
	}
	v, ok := obj["status"]
	if !ok {
		return errorf(http.StatusBadRequest, "Status not specified")
	}
	status, _ := v.(string) // anything else is not a status: the lifecycle says so
	m, err := s.svc.Members().SetStatus(r.Context(), p, r.PathValue("id"), r.PathValue("member"), status)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, memberView(m))
	return nil
}

func (s *Server) deleteMember(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	if err := s.svc.Members().Remove(r.Context(), p, r.PathValue("id"), r.PathValue("member")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
