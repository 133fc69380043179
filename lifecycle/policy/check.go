package policy

import (
	"strconv"
	"strings"
)

// Creds are the caller's attributes that checks match: oslo.policy's
// credentials (the request context's policy values).
type Creds struct {
	ProjectID string
	UserID    string
	// Roles are the caller's role names, implied ones included.
	Roles []string
	// IsAdmin is what the rule context_is_admin says of the caller; the
	// Enforcer's Credentials sets it.
	IsAdmin bool
}

// value returns the credential a generic check's KEY names, as text (or,
// for roles, as a list), the way oslo.context's policy values name them.
func (c Creds) value(key string) (text string, list []string, ok bool) {
	switch key {
	case "project_id", "tenant", "tenant_id":
		return c.ProjectID, nil, c.ProjectID != ""
	case "user_id", "user":
		return c.UserID, nil, c.UserID != ""
	case "roles":
		return "", c.Roles, true
	case "is_admin":
		return pyBool(c.IsAdmin), nil, true
	}
	return "", nil, false
}

// Target holds the attributes of what the caller acts on (an image, a
// member, a namespace), as text: Python's str() of Glance's values, so
// booleans are True and False.
type Target map[string]string

// pyBool renders b as Python's str(bool).
func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// Bool renders b as a Target value.
func Bool(b bool) string { return pyBool(b) }

// Int renders n as a Target value.
func Int(n int64) string { return strconv.FormatInt(n, 10) }

// Check is one parsed check string.
type Check interface {
	eval(e *evaluation) bool
	String() string
}

// evaluation is one Allowed call: the rules that rule: checks resolve, the
// caller, the target, and how many rule: hops deep it is.
type evaluation struct {
	rules  map[string]Check
	creds  Creds
	target Target
	hops   int
}

// maxHops bounds rule: indirection. Rules are checked for cycles when
// they are loaded, so this only guards against a bug there.
const maxHops = 64

type always struct{}

func (always) eval(*evaluation) bool { return true }
func (always) String() string        { return "@" }

type never struct{}

func (never) eval(*evaluation) bool { return false }
func (never) String() string        { return "!" }

type not struct{ c Check }

func (n not) eval(e *evaluation) bool { return !n.c.eval(e) }
func (n not) String() string          { return "not " + n.c.String() }

type allOf []Check

func (a allOf) eval(e *evaluation) bool {
	for _, c := range a {
		if !c.eval(e) {
			return false
		}
	}
	return true
}
func (a allOf) String() string { return join(a, " and ") }

type anyOf []Check

func (a anyOf) eval(e *evaluation) bool {
	for _, c := range a {
		if c.eval(e) {
			return true
		}
	}
	return false
}
func (a anyOf) String() string { return join(a, " or ") }

func join(cs []Check, sep string) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.String()
	}
	return "(" + strings.Join(parts, sep) + ")"
}

// ruleCheck is rule:NAME. A name the rules lack fails closed, as in
// oslo.policy (the Enforcer refuses to load such rules in the first place).
type ruleCheck struct{ name string }

func (r ruleCheck) eval(e *evaluation) bool {
	c, ok := e.rules[r.name]
	if !ok || e.hops >= maxHops {
		return false
	}
	e.hops++
	defer func() { e.hops-- }()
	return c.eval(e)
}
func (r ruleCheck) String() string { return "rule:" + r.name }

// roleCheck is role:NAME, matched without regard to case.
type roleCheck struct{ role template }

func (r roleCheck) eval(e *evaluation) bool {
	want, ok := r.role.fill(e.target)
	if !ok {
		return false
	}
	for _, have := range e.creds.Roles {
		if strings.EqualFold(have, want) {
			return true
		}
	}
	return false
}
func (r roleCheck) String() string { return "role:" + r.role.String() }

// literalCheck is 'LITERAL':%(ATTR)s: the filled right side equals the
// literal.
type literalCheck struct {
	literal string
	match   template
}

func (l literalCheck) eval(e *evaluation) bool {
	got, ok := l.match.fill(e.target)
	return ok && got == l.literal
}
func (l literalCheck) String() string {
	// A literal holds at most one kind of quote (Parse refuses the one
	// that encloses it), so the other kind encloses it here.
	q := "'"
	if strings.Contains(l.literal, "'") {
		q = `"`
	}
	return q + l.literal + q + ":" + l.match.String()
}

// credCheck is KEY:VALUE: the caller's credential KEY (any element of a
// list credential such as roles) equals the filled VALUE, exactly.
type credCheck struct {
	path  []string
	match template
}

func (c credCheck) eval(e *evaluation) bool {
	want, ok := c.match.fill(e.target)
	if !ok || len(c.path) != 1 {
		// Nested credentials (a.b) do not exist in glimpse's credentials.
		return false
	}
	text, list, ok := e.creds.value(c.path[0])
	switch {
	case !ok:
		return false
	case list != nil:
		for _, v := range list {
			if v == want {
				return true
			}
		}
		return false
	}
	return text == want
}
func (c credCheck) String() string { return strings.Join(c.path, ".") + ":" + c.match.String() }

// references calls fn with every rule name c refers to.
func references(c Check, fn func(string)) {
	switch c := c.(type) {
	case ruleCheck:
		fn(c.name)
	case not:
		references(c.c, fn)
	case allOf:
		for _, x := range c {
			references(x, fn)
		}
	case anyOf:
		for _, x := range c {
			references(x, fn)
		}
	}
}
