package metadefs

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/glimpse-project/glimpse/lifecycle"
)

// The schemas are the documents Glance 25.1 serves at
// /v2/schemas/metadefs/*, each request body is checked against its own as
// Glance does.
//
//go:embed schemas/*.json
var schemaFiles embed.FS

// SchemaNames are the schemas served under /v2/schemas/metadefs/.
var SchemaNames = []string{"namespace", "namespaces", "object", "objects", "property", "properties", "tag", "tags", "resource_type", "resource_types"}

// Schema returns the JSON document of the named schema, or nil.
func Schema(name string) []byte {
	if !slices.Contains(SchemaNames, name) {
		return nil
	}
	raw, err := schemaFiles.ReadFile("schemas/" + name + ".json")
	if err != nil {
		panic("metadefs: embedded schema " + name + ": " + err.Error()) // built in; tests read every one
	}
	return raw
}

// validate checks a decoded JSON body against the named schema with the
// parts of JSON Schema (draft 4) that Glance's metadefs schemas use, and
// answers as Glance does: "Provided object does not match schema ...".
func validate(schemaName string, body any) error {
	var root map[string]any
	if err := json.Unmarshal(Schema(schemaName), &root); err != nil {
		panic("metadefs: embedded schema " + schemaName + ": " + err.Error())
	}
	title, _ := root["name"].(string)
	if msg := check(root, root, body); msg != "" {
		return refuse(lifecycle.ErrInvalid, "Provided object does not match schema '%s': %s", title, msg)
	}
	return nil
}

// decodeBody parses a request body as JSON, keeping numbers exact.
func decodeBody(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, refuse(lifecycle.ErrInvalid, "Malformed JSON in request body.")
	}
	if dec.More() {
		return nil, refuse(lifecycle.ErrInvalid, "Malformed JSON in request body.")
	}
	return v, nil
}

func repr(v any) string {
	switch x := v.(type) {
	case string:
		if len(x) > 80 {
			x = x[:80] + "..."
		}
		return "'" + x + "'"
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case json.Number:
		return x.String()
	}
	raw, _ := json.Marshal(v)
	if len(raw) > 80 {
		raw = append(raw[:80], "..."...)
	}
	return string(raw)
}

func typeOK(t string, v any) bool {
	switch t {
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "null":
		return v == nil
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		f, err := n.Float64()
		return err == nil && f == math.Trunc(f)
	}
	return true
}

// check returns why v does not satisfy schema s, or "".
func check(root, s map[string]any, v any) string {
	if ref, ok := s["$ref"].(string); ok {
		name, found := strings.CutPrefix(ref, "#/definitions/")
		defs, _ := root["definitions"].(map[string]any)
		target, _ := defs[name].(map[string]any)
		if !found || target == nil {
			return "unresolvable reference " + ref
		}
		return check(root, target, v)
	}
	if all, ok := s["allOf"].([]any); ok {
		for _, sub := range all {
			if m, ok := sub.(map[string]any); ok {
				if msg := check(root, m, v); msg != "" {
					return msg
				}
			}
		}
	}
	switch t := s["type"].(type) {
	case string:
		if !typeOK(t, v) {
			return fmt.Sprintf("%s is not of type '%s'", repr(v), t)
		}
	case []any:
		ok := false
		var names []string
		for _, x := range t {
			name, _ := x.(string)
			names = append(names, "'"+name+"'")
			ok = ok || typeOK(name, v)
		}
		if !ok {
			return fmt.Sprintf("%s is not of type %s", repr(v), strings.Join(names, ", "))
		}
	}
	if enum, ok := s["enum"].([]any); ok {
		found := false
		for _, e := range enum {
			found = found || equalJSON(e, v)
		}
		if !found {
			return fmt.Sprintf("%s is not one of %s", repr(v), repr(enum))
		}
	}
	switch x := v.(type) {
	case string:
		if n, ok := number(s["maxLength"]); ok && float64(utf8.RuneCountInString(x)) > n {
			return fmt.Sprintf("%s is too long", repr(x))
		}
		if n, ok := number(s["minLength"]); ok && float64(utf8.RuneCountInString(x)) < n {
			return fmt.Sprintf("%s is too short", repr(x))
		}
	case json.Number:
		f, _ := x.Float64()
		if n, ok := number(s["minimum"]); ok && f < n {
			return fmt.Sprintf("%s is less than the minimum of %v", x, n)
		}
		if n, ok := number(s["maximum"]); ok && f > n {
			return fmt.Sprintf("%s is greater than the maximum of %v", x, n)
		}
	case []any:
		if n, ok := number(s["maxItems"]); ok && float64(len(x)) > n {
			return fmt.Sprintf("%s is too long", repr(x))
		}
		if n, ok := number(s["minItems"]); ok && float64(len(x)) < n {
			return fmt.Sprintf("%s is too short", repr(x))
		}
		if u, _ := s["uniqueItems"].(bool); u {
			// One pass over canonical forms: a body may hold millions
			// of items, and pairwise comparison would be quadratic.
			seen := make(map[string]bool, len(x))
			for _, e := range x {
				c := canonical(e)
				if seen[c] {
					return fmt.Sprintf("%s has non-unique elements", repr(x))
				}
				seen[c] = true
			}
		}
		if items, ok := s["items"].(map[string]any); ok {
			for _, e := range x {
				if msg := check(root, items, e); msg != "" {
					return msg
				}
			}
		}
	case map[string]any:
		if req, ok := s["required"].([]any); ok {
			for _, r := range req {
				name, _ := r.(string)
				if _, ok := x[name]; !ok {
					return fmt.Sprintf("'%s' is a required property", name)
				}
			}
		}
		props, _ := s["properties"].(map[string]any)
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var extra []string
		for _, k := range keys {
			if sub, ok := props[k].(map[string]any); ok {
				if msg := check(root, sub, x[k]); msg != "" {
					return msg
				}
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case bool:
				if !ap {
					extra = append(extra, "'"+k+"'")
				}
			case map[string]any:
				if msg := check(root, ap, x[k]); msg != "" {
					return msg
				}
			}
		}
		if len(extra) == 1 {
			return fmt.Sprintf("Additional properties are not allowed (%s was unexpected)", extra[0])
		}
		if len(extra) > 1 {
			return fmt.Sprintf("Additional properties are not allowed (%s were unexpected)", strings.Join(extra, ", "))
		}
	}
	return ""
}

func number(v any) (float64, bool) {
	f, ok := v.(float64)
	return f, ok
}

func equalJSON(a, b any) bool { return canonical(a) == canonical(b) }

// canonical is v's JSON with numbers as float64 and object keys sorted
// (encoding/json sorts map keys).
func canonical(v any) string {
	raw, _ := json.Marshal(normal(v))
	return string(raw)
}

// normal makes numbers from the schema (float64) and from a body
// (json.Number) compare alike.
func normal(v any) any {
	switch x := v.(type) {
	case json.Number:
		f, _ := x.Float64()
		return f
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = normal(x[i])
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k := range x {
			out[k] = normal(x[k])
		}
		return out
	}
	return v
}
