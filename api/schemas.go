package api

import (
	_ "embed"
	"net/http"

	"github.com/glimpse-project/glimpse/lifecycle"
)

// The image schemas are Glance's, minus the read-only "stores" property
// that breaks glanceclient 4.1 (argument --stores conflicts with
// image-create-via-import's own option).
var (
	//go:embed schemas/image-schema.json
	imageSchema []byte
	//go:embed schemas/images-schema.json
	imagesSchema []byte
)

const memberSchema = `{"name": "member", "properties": {` +
	`"member_id": {"type": "string", "description": "An identifier for the image member (tenantId)"}, ` +
	`"image_id": {"type": "string", "description": "An identifier for the image", "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"}, ` +
	`"created_at": {"type": "string", "description": "Date and time of image member creation"}, ` +
	`"updated_at": {"type": "string", "description": "Date and time of last modification of image member"}, ` +
	`"status": {"type": "string", "description": "The status of this image member", "enum": ["pending", "accepted", "rejected"]}, ` +
	`"schema": {"readOnly": true, "type": "string"}}}`

func rawJSON(w http.ResponseWriter, body []byte) error {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_, err := w.Write(body)
	return err
}

func (s *Server) schemaImage(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	return rawJSON(w, imageSchema)
}

func (s *Server) schemaImages(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	return rawJSON(w, imagesSchema)
}

func (s *Server) schemaMember(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	return rawJSON(w, []byte(memberSchema))
}

func (s *Server) schemaMembers(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	return rawJSON(w, []byte(`{"name": "members", "properties": {"members": {"type": "array", "items": `+memberSchema+`}, "schema": {"type": "string"}}, "links": [{"rel": "describedby", "href": "{schema}"}]}`))
}
