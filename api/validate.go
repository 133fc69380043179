package api

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
)

// propRule is what the image schema says about one custom property
// (kernel_id's UUID pattern, cinder_encryption_key_deletion_policy's enum):
// glanceclient validates the images it reads against the schema, so a
// value the schema refuses must not get in.
type propRule struct {
	pattern *regexp.Regexp
	enum    []string
}

// schemaRules reads the custom-property rules from the served schema.
func schemaRules() map[string]propRule {
	var schema struct {
		Properties map[string]struct {
			Pattern string   `json:"pattern"`
			Enum    []string `json:"enum"`
			IsBase  *bool    `json:"is_base"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(imageSchema, &schema); err != nil {
		panic("embedded image schema: " + err.Error()) // built into the binary; tests catch it
	}
	rules := map[string]propRule{}
	for k, p := range schema.Properties {
		if p.IsBase == nil || *p.IsBase || (p.Pattern == "" && p.Enum == nil) {
			continue
		}
		r := propRule{enum: p.Enum}
		if p.Pattern != "" {
			r.pattern = regexp.MustCompile(p.Pattern)
		}
		rules[k] = r
	}
	return rules
}

// checkProperty validates a custom property's value against the schema.
func (s *Server) checkProperty(key string, value any) error {
	r, ok := s.rules[key]
	if !ok {
		return nil
	}
	v, ok := value.(string)
	if !ok {
		return nil // the lifecycle refuses non-strings
	}
	if r.pattern != nil && !r.pattern.MatchString(v) {
		return errorf(http.StatusBadRequest, "Provided object does not match schema 'image': '%s' does not match '%s'", v, r.pattern)
	}
	if r.enum != nil && !slices.Contains(r.enum, v) {
		return errorf(http.StatusBadRequest, "Provided object does not match schema 'image': '%s' is not one of %s", v, pythonList(r.enum))
	}
	return nil
}

// pythonList renders list as Python's repr of a list of strings, as
// Glance's jsonschema messages show an enum.
func pythonList(list []string) string {
	quoted := make([]string, len(list))
	for i, s := range list {
		quoted[i] = "'" + s + "'"
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}
