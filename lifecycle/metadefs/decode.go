package metadefs

import (
	"encoding/json"
	"slices"
	"sort"

	"github.com/glimpse-project/glimpse/lifecycle"
)

// Request bodies, checked as Glance's deserializers do: read-only
// attributes refused (403), then the schema (400), then the fields taken.

func checkReadOnly(body any, keys ...string) error {
	m, ok := body.(map[string]any)
	if !ok {
		return nil // the schema refuses it
	}
	for _, k := range keys {
		if _, ok := m[k]; ok {
			return refuse(lifecycle.ErrForbidden, "Attribute '%s' is read-only.", k)
		}
	}
	return nil
}

// decodeChecked parses raw, refuses the read-only keys, validates it
// against the schema and unmarshals it into out.
func decodeChecked(raw []byte, schema string, out any, readOnly ...string) (any, error) {
	body, err := decodeBody(raw)
	if err != nil {
		return nil, err
	}
	if err := checkReadOnly(body, readOnly...); err != nil {
		return nil, err
	}
	if err := validate(schema, body); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, refuse(lifecycle.ErrInvalid, "Invalid input: %v", err)
	}
	return body, nil
}

// checkPropertyEntries validates each entry of an object's "properties"
// against the property schema, its name being its key, as Glance's object
// create does (get_schema(require_name=False)).
func checkPropertyEntries(body any) error {
	m, _ := body.(map[string]any)
	props, _ := m["properties"].(map[string]any)
	names := make([]string, 0, len(props))
	for k := range props {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		entry, ok := props[k].(map[string]any)
		if !ok {
			continue // the object schema refused it already
		}
		if _, ok := entry["name"]; !ok {
			entry = mapWith(entry, "name", k)
		}
		if err := validate("property", entry); err != nil {
			return err
		}
	}
	return nil
}

func mapWith(m map[string]any, k string, v any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for key, val := range m {
		out[key] = val
	}
	out[k] = v
	return out
}

type namespaceBody struct {
	Namespace                string              `json:"namespace"`
	DisplayName              string              `json:"display_name"`
	Description              string              `json:"description"`
	Visibility               string              `json:"visibility"`
	Protected                *bool               `json:"protected"`
	Owner                    string              `json:"owner"`
	ResourceTypeAssociations []Association       `json:"resource_type_associations"`
	Properties               map[string]Property `json:"properties"`
	Objects                  []Object            `json:"objects"`
	Tags                     []Tag               `json:"tags"`
}

// DecodeNamespace reads a namespace body (create, update, or a Glance
// definition file) with its contents.
func DecodeNamespace(raw []byte) (Detail, error) {
	var b namespaceBody
	if _, err := decodeChecked(raw, "namespace", &b, "self", "schema", "created_at", "updated_at"); err != nil {
		return Detail{}, err
	}
	d := Detail{Namespace: Namespace{
		Namespace: b.Namespace, DisplayName: b.DisplayName, Description: b.Description,
		Visibility: b.Visibility, Protected: b.Protected != nil && *b.Protected, Owner: b.Owner,
	}}
	d.Associations = b.ResourceTypeAssociations
	d.Objects = b.Objects
	d.Tags = b.Tags
	for name, p := range b.Properties {
		p.Name = name
		d.Properties = append(d.Properties, p)
	}
	slices.SortFunc(d.Properties, func(a, b Property) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	for i := range d.Objects {
		for name, p := range d.Objects[i].Properties {
			p.Name = ""
			d.Objects[i].Properties[name] = p
		}
	}
	return d, nil
}

// DecodeObject reads an object body.
func DecodeObject(raw []byte, creating bool) (Object, error) {
	var o Object
	body, err := decodeChecked(raw, "object", &o, "self", "schema", "created_at", "updated_at")
	if err == nil && creating {
		err = checkPropertyEntries(body)
	}
	for name, p := range o.Properties {
		p.Name = ""
		o.Properties[name] = p
	}
	return o, err
}

// DecodeProperty reads a property body.
func DecodeProperty(raw []byte) (Property, error) {
	var p Property
	_, err := decodeChecked(raw, "property", &p, "created_at", "updated_at")
	return p, err
}

// DecodeTag reads a tag body (an update's new name).
func DecodeTag(raw []byte) (string, error) {
	var t Tag
	_, err := decodeChecked(raw, "tag", &t, "created_at", "updated_at")
	return t.Name, err
}

// CheckTagName checks a tag name given in a URL, against the tag schema.
func CheckTagName(name string) error {
	return validate("tag", map[string]any{"name": name})
}

// DecodeTags reads a bulk tag body: {"tags": [{"name": ...}, ...]}.
func DecodeTags(raw []byte) ([]string, error) {
	body, err := decodeBody(raw)
	if err != nil {
		return nil, err
	}
	if err := checkReadOnly(body, "created_at", "updated_at"); err != nil {
		return nil, err
	}
	m, ok := body.(map[string]any)
	if !ok {
		return nil, refuse(lifecycle.ErrInvalid, "Provided object does not match schema 'tags': %s is not of type 'object'", repr(body))
	}
	for k := range m {
		if k != "tags" {
			return nil, refuse(lifecycle.ErrInvalid, "Provided object does not match schema 'tags': Additional properties are not allowed ('%s' was unexpected)", k)
		}
	}
	list, ok := m["tags"].([]any)
	if !ok && m["tags"] != nil {
		return nil, refuse(lifecycle.ErrInvalid, "Provided object does not match schema 'tags': %s is not of type 'array'", repr(m["tags"]))
	}
	var names []string
	for _, e := range list {
		em, ok := e.(map[string]any)
		if !ok {
			return nil, refuse(lifecycle.ErrInvalid, "Provided object does not match schema 'tags': %s is not of type 'object'", repr(e))
		}
		if err := validate("tag", em); err != nil {
			return nil, refuse(lifecycle.ErrInvalid, "Provided object does not match schema 'tags': %s", err.Error()[len("Provided object does not match schema 'tag': "):])
		}
		names = append(names, em["name"].(string))
	}
	return names, nil
}

// DecodeAssociation reads a resource type association body.
func DecodeAssociation(raw []byte) (Association, error) {
	var a Association
	_, err := decodeChecked(raw, "resource_type", &a, "created_at", "updated_at")
	return a, err
}
