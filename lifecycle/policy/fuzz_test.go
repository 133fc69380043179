package policy

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary check strings to the parser: it must return a
// check or an ErrSyntax error, never panic or run away; a check's String
// must parse back to the same check; and evaluating it (rule: checks
// resolved against Glance's defaults) must terminate.
func FuzzParse(f *testing.F) {
	for _, r := range Defaults {
		f.Add(r.Check)
	}
	for _, s := range []string{
		"", "@", "!", "not", "()", "((role:a)", "role:a and or role:b", "'public':%(visibility)s",
		"is_admin:True", "project_id:%(project_id)s%%", "%(x", "rule:rule:x", "NOT NOT role:A",
		strings.Repeat("(", 40) + "@", strings.Repeat("not ", 40) + "@", "a.b.c:d", "\"x\":y", "-1:%(n)s",
	} {
		f.Add(s)
	}
	e := NewDefault()
	creds := Creds{ProjectID: "p1", UserID: "u1", Roles: []string{"member", "reader"}, IsAdmin: false}
	target := Target{"project_id": "p1", "owner": "p1", "visibility": "public", "member_id": "p2"}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := Parse(text)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q): error %v does not wrap ErrSyntax", text, err)
			}
			return
		}
		again, err := Parse(c.String())
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q does not parse: %v", text, c.String(), err)
		}
		if again.String() != c.String() {
			t.Fatalf("Parse(%q) prints as %q, which parses to %q", text, c.String(), again.String())
		}
		ev := &evaluation{rules: e.rules, creds: creds, target: target}
		if c.eval(ev) != again.eval(&evaluation{rules: e.rules, creds: creds, target: target}) {
			t.Fatalf("%q and its printed form %q decide differently", text, c.String())
		}
		// As an override of a base rule it must load or be refused, and
		// then decide every rule without running away.
		if o, err := New(map[string]string{ContextIsAdmin: text}); err == nil {
			for _, r := range Defaults {
				o.Allowed(r.Name, o.Credentials("p1", "u1", creds.Roles), target)
			}
		}
	})
}
