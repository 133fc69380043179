// Package policy is glimpse's "policy home": Glance's authorization rules
// with their in-code defaults, oslo.policy's check language to write
// them, and the loading of an operator's overrides from a Glance-style
// policy.yaml. The lifecycle asks its Enforcer, by Glance's rule names,
// whether a caller may act on a target; the faces never decide.
package policy

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Enforcer answers whether rules allow callers to act on targets. It is
// immutable once built and safe for concurrent use.
type Enforcer struct {
	rules map[string]Check
	text  map[string]string // each rule's effective check string
	// overridden are the rules a policy file changed, sorted.
	overridden []string
}

// NewDefault returns an Enforcer of Glance's default rules.
func NewDefault() *Enforcer {
	e, err := New(nil)
	if err != nil {
		panic("glance's default policy does not load: " + err.Error()) // a test catches it
	}
	return e
}

// New returns an Enforcer of Glance's default rules with the check strings
// in overrides (rule name -> check string) in their place. A name that is
// not one of Glance's rules, a check that does not parse, a rule: naming
// no rule and rules that refer to each other in a cycle are errors.
func New(overrides map[string]string) (*Enforcer, error) {
	e := &Enforcer{rules: map[string]Check{}, text: map[string]string{}}
	for _, r := range Defaults {
		e.text[r.Name] = r.Check
	}
	names := make([]string, 0, len(overrides))
	for name := range overrides {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, ok := e.text[name]; !ok {
			return nil, fmt.Errorf("rule %q is not one of Glance's rules that glimpse knows%s", name, suggestion(name))
		}
		e.text[name] = overrides[name]
		e.overridden = append(e.overridden, name)
	}
	for name, text := range e.text {
		c, err := Parse(text)
		if err != nil {
			return nil, fmt.Errorf("rule %q: %w", name, err)
		}
		e.rules[name] = c
	}
	if err := e.checkReferences(); err != nil {
		return nil, err
	}
	return e, nil
}

// LoadFile returns an Enforcer with the overrides in the policy file at
// path: Glance's policy.yaml (or the older policy.json, which is YAML
// too), a map of rule name to check string. An empty file overrides
// nothing.
func LoadFile(path string) (*Enforcer, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	overrides, err := parseFile(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	e, err := New(overrides)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return e, nil
}

func parseFile(raw []byte) (map[string]string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("not YAML or JSON: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil, nil // empty, or only comments (Glance's sample file)
	}
	top := doc.Content[0]
	if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
		return nil, nil
	}
	if top.Kind != yaml.MappingNode {
		return nil, errors.New("want a map of rule names to check strings")
	}
	out := map[string]string{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: a rule name is a string", k.Line)
		}
		if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
			// oslo.policy lets a null allow everyone; but YAML reads a
			// bare ! as null too, so a rule meant to allow no one would
			// allow all. The operator says which.
			return nil, fmt.Errorf("line %d: rule %q has no check string (quote it: \"!\" allows no one, \"\" everyone; a bare ! is YAML for nothing)", v.Line, k.Value)
		}
		if v.Kind != yaml.ScalarNode || v.Tag != "!!str" {
			return nil, fmt.Errorf("line %d: rule %q: the check is a string (quote it), not %s", v.Line, k.Value, describe(v))
		}
		if _, dup := out[k.Value]; dup {
			return nil, fmt.Errorf("line %d: rule %q is given twice", k.Line, k.Value)
		}
		out[k.Value] = v.Value
	}
	return out, nil
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list (the old list syntax is not supported)"
	case yaml.MappingNode:
		return "a map"
	}
	return "a " + strings.TrimPrefix(n.Tag, "!!")
}

// suggestion names a known rule close to name, for the error message.
func suggestion(name string) string {
	best, bestDist := "", 3
	for _, r := range Defaults {
		if d := distance(name, r.Name); d < bestDist {
			best, bestDist = r.Name, d
		}
	}
	if best == "" {
		return " (see the rule table in docs/rest.md)"
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// checkReferences refuses rule: checks that name no rule, and cycles.
func (e *Enforcer) checkReferences() error {
	names := make([]string, 0, len(e.rules))
	for name := range e.rules {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		var err error
		references(e.rules[name], func(ref string) {
			if _, ok := e.rules[ref]; !ok && err == nil {
				err = fmt.Errorf("rule %q refers to rule:%s, which does not exist", name, ref)
			}
		})
		if err != nil {
			return err
		}
	}
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[string]int{}
	var path []string
	var visit func(string) error
	visit = func(name string) error {
		switch state[name] {
		case visiting:
			i := slices.Index(path, name)
			return fmt.Errorf("rules refer to each other in a cycle: %s", strings.Join(append(path[i:], name), " -> "))
		case done:
			return nil
		}
		state[name] = visiting
		path = append(path, name)
		var refs []string
		references(e.rules[name], func(ref string) { refs = append(refs, ref) })
		for _, ref := range refs {
			if err := visit(ref); err != nil {
				return err
			}
		}
		path = path[:len(path)-1]
		state[name] = done
		return nil
	}
	for _, name := range names {
		if err := visit(name); err != nil {
			return err
		}
	}
	return nil
}

// Allowed reports whether rule allows the caller c to act on target t. A
// rule name the Enforcer does not know never allows (callers name rules by
// this package's constants).
func (e *Enforcer) Allowed(rule string, c Creds, t Target) bool {
	check, ok := e.rules[rule]
	if !ok {
		return false
	}
	return check.eval(&evaluation{rules: e.rules, creds: c, target: t})
}

// Credentials returns the credentials of a caller in project with the
// given user and roles, with IsAdmin decided by the rule context_is_admin
// as Glance's request context decides it (its target is the caller's own
// attributes).
func (e *Enforcer) Credentials(project, user string, roles []string) Creds {
	c := Creds{ProjectID: project, UserID: user, Roles: roles}
	self := Target{"project_id": project, "user_id": user}
	c.IsAdmin = e.Allowed(ContextIsAdmin, c, self)
	return c
}

// CheckString returns the effective check string of rule ("" and false
// for a rule the Enforcer does not know).
func (e *Enforcer) CheckString(rule string) (string, bool) {
	s, ok := e.text[rule]
	return s, ok
}

// Overridden lists the rules whose check strings a policy file replaced.
func (e *Enforcer) Overridden() []string { return slices.Clone(e.overridden) }
