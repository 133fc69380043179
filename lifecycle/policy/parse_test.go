package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestParseForms(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", "@"},
		{"   ", "@"},
		{"@", "@"},
		{"!", "!"},
		{"role:admin", "role:admin"},
		{"rule:context_is_admin", "rule:context_is_admin"},
		{"project_id:%(project_id)s", "project_id:%(project_id)s"},
		{"'public':%(visibility)s", "'public':%(visibility)s"},
		{`"public":%(visibility)s`, "'public':%(visibility)s"},
		{`"it's":%(name)s`, `"it's":%(name)s`},
		{"True:%(protected)s", "'True':%(protected)s"},
		{"42:%(min_ram)s", "'42':%(min_ram)s"},
		{"is_admin:True", "is_admin:True"},
		{"role:a and role:b or role:c", "((role:a and role:b) or role:c)"},
		{"role:a or role:b and role:c", "(role:a or (role:b and role:c))"},
		{"role:a AND role:b OR role:c", "((role:a and role:b) or role:c)"},
		{"not role:a and role:b", "(not role:a and role:b)"},
		{"not (role:a or role:b)", "not (role:a or role:b)"},
		{"not not role:a", "not not role:a"},
		{"((role:a))", "role:a"},
		{"(role:a or role:b) and role:c", "((role:a or role:b) and role:c)"},
		{"role:a and (project_id:%(project_id)s or 'public':%(visibility)s)", "(role:a and (project_id:%(project_id)s or 'public':%(visibility)s))"},
		{"role:x:y", "role:x:y"},
		{"user_id:%(owner)s-%(id)s", "user_id:%(owner)s-%(id)s"},
		{"project_id:100%%", "project_id:100%%"},
	}
	for _, c := range cases {
		got, err := Parse(c.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		if got.String() != c.want {
			t.Errorf("Parse(%q) = %s, want %s", c.in, got, c.want)
		}
		again, err := Parse(got.String())
		if err != nil || again.String() != got.String() {
			t.Errorf("Parse(%q).String() = %s does not parse back to itself: %v, %v", c.in, got, again, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ in, says string }{
		{"role:a and", "ends where a check is expected"},
		{"or role:a", `unexpected "or"`},
		{"role:a role:b", `unexpected "role:b"`},
		{"(role:a", `"(" is not closed`},
		{"role:a)", `unexpected ")"`},
		{"()", `unexpected ")"`},
		{"not", "ends where a check is expected"},
		{"admin", `"admin" is not a check`},
		{"'admin'", `is not a check`},
		{":admin", "no kind before the colon"},
		{"rule:", "a rule check names a rule"},
		{"rule:%(x)s", "a rule check names a rule"},
		{"http://example.com/check:x", "remote (http) checks are not supported"},
		{"project_id:%(project_id)d", "%(NAME)s"},
		{"project_id:%(project_id", "%(NAME)s"},
		{"project_id:50%", "lone %"},
		{"project_id:%()s", "names no target attribute"},
		{"'public:%(visibility)s", "unterminated quoted literal"},
		{"1.5:%(x)s", "not a literal"},
		{"a..b:x", "neither a literal nor a credential name"},
		{strings.Repeat("(", MaxDepth+1) + "@" + strings.Repeat(")", MaxDepth+1), "nest deeper than"},
		{strings.Repeat("not ", MaxDepth+1) + "@", "nest deeper than"},
		{strings.Repeat("@ or ", maxCheckLength/5+1) + "@", "bytes (at most"},
	}
	for _, c := range cases {
		_, err := Parse(c.in)
		if err == nil {
			t.Errorf("Parse(%.60q) succeeded, want an error saying %q", c.in, c.says)
			continue
		}
		if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("Parse(%.60q) = %v, want ErrSyntax saying %q", c.in, err, c.says)
		}
	}
	// Nesting right at the bound is fine.
	if _, err := Parse(strings.Repeat("(", MaxDepth) + "@" + strings.Repeat(")", MaxDepth)); err != nil {
		t.Errorf("%d nested parentheses: %v", MaxDepth, err)
	}
}

// TestChecksMatch evaluates each kind of check against credentials and a
// target, both ways.
func TestChecksMatch(t *testing.T) {
	creds := Creds{ProjectID: "p1", UserID: "u1", Roles: []string{"Member", "reader"}}
	target := Target{"project_id": "p1", "owner": "p2", "visibility": "public", "protected": "True", "user": "u1"}
	cases := []struct {
		check string
		want  bool
	}{
		{"@", true},
		{"!", false},
		{"role:member", true}, // roles match in any case
		{"role:MEMBER", true},
		{"role:admin", false},
		{"roles:Member", true}, // a generic check on a list matches exactly
		{"roles:member", false},
		{"project_id:%(project_id)s", true},
		{"project_id:%(owner)s", false},
		{"project_id:%(missing)s", false}, // a target without the key fails
		{"user_id:%(user)s", true},
		{"user_id:u1", true},
		{"tenant:p1", true},
		{"domain_id:d1", false}, // credentials glimpse does not carry fail
		{"'public':%(visibility)s", true},
		{"'private':%(visibility)s", false},
		{"True:%(protected)s", true},
		{"False:%(protected)s", false},
		{"is_admin:True", false},
		{"is_admin:False", true},
		{"not role:admin", true},
		{"role:admin or project_id:%(project_id)s", true},
		{"role:admin and project_id:%(project_id)s", false},
		{"not (role:admin or role:reader)", false},
		{"role:%(missing)s", false},
	}
	e := NewDefault()
	for _, c := range cases {
		check, err := Parse(c.check)
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.check, err)
		}
		if got := check.eval(&evaluation{rules: e.rules, creds: creds, target: target}); got != c.want {
			t.Errorf("%s with %+v on %v = %v, want %v", c.check, creds, target, got, c.want)
		}
	}
}
