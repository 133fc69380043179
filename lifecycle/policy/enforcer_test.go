package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The personas of Glance's secure-RBAC tests: an admin, a member and a
// reader of project p1, and a member of another project p2. Roles carry
// their implied roles, as Keystone's tokens do.
var (
	adminCreds  = Creds{ProjectID: "adminproj", Roles: []string{"admin", "member", "reader"}}
	memberP1    = Creds{ProjectID: "p1", Roles: []string{"member", "reader"}}
	readerP1    = Creds{ProjectID: "p1", Roles: []string{"reader"}}
	memberP2    = Creds{ProjectID: "p2", Roles: []string{"member", "reader"}}
	readerP2    = Creds{ProjectID: "p2", Roles: []string{"reader"}}
	serviceUser = Creds{ProjectID: "service", Roles: []string{"service"}}
	noRoles     = Creds{ProjectID: "p1"}
)

// Targets: p1's private image, p3's public, community and shared images
// (p2 a member of the shared one, so its target names p2 as member_id, as
// Glance's image target does for the member asking), and a new image p1
// creates for itself or for p2.
var (
	privateP1   = Target{"project_id": "p1", "owner": "p1", "visibility": "private"}
	publicP3    = Target{"project_id": "p3", "owner": "p3", "visibility": "public"}
	communityP3 = Target{"project_id": "p3", "owner": "p3", "visibility": "community"}
	sharedP3    = Target{"project_id": "p3", "owner": "p3", "visibility": "shared", "member_id": "p2"}
	sharedP3Own = Target{"project_id": "p3", "owner": "p3", "visibility": "shared"}
	newForP1    = Target{"project_id": "p1", "owner": "p1", "visibility": "shared"}
	newForP2    = Target{"project_id": "p2", "owner": "p2", "visibility": "shared"}
	publicNS    = Target{"project_id": "p3", "visibility": "public"}
	privateNSP1 = Target{"project_id": "p1", "visibility": "private"}
)

type persona struct {
	name  string
	creds Creds
}

var personas = []persona{
	{"admin", adminCreds}, {"member of p1", memberP1}, {"reader of p1", readerP1},
	{"member of p2", memberP2}, {"reader of p2", readerP2}, {"service", serviceUser}, {"no roles", noRoles},
}

// TestDefaultsByRole decides each rule family on Glance's defaults for
// every persona; allowed lists who may, everyone else may not.
func TestDefaultsByRole(t *testing.T) {
	cases := []struct {
		rule    string
		target  Target
		allowed []string
	}{
		// Images.
		{AddImage, newForP1, []string{"admin", "member of p1"}},
		{AddImage, newForP2, []string{"admin", "member of p2"}}, // a member creating for another project: no
		{GetImages, nil, []string{"admin", "member of p1", "reader of p1", "member of p2", "reader of p2"}},
		{GetImage, privateP1, []string{"admin", "member of p1", "reader of p1"}},
		{GetImage, publicP3, []string{"admin", "member of p1", "reader of p1", "member of p2", "reader of p2"}},
		{GetImage, communityP3, []string{"admin", "member of p1", "reader of p1", "member of p2", "reader of p2"}},
		{GetImage, sharedP3, []string{"admin", "member of p1", "reader of p1", "member of p2", "reader of p2"}},
		{ModifyImage, privateP1, []string{"admin", "member of p1"}},
		{ModifyImage, publicP3, []string{"admin"}},
		{DeleteImage, privateP1, []string{"admin", "member of p1"}},
		{UploadImage, privateP1, []string{"admin", "member of p1"}},
		{DownloadImage, privateP1, []string{"admin", "member of p1"}},
		{DownloadImage, publicP3, []string{"admin", "member of p1", "member of p2"}},
		{DownloadImage, sharedP3, []string{"admin", "member of p1", "member of p2"}},
		{DownloadFromStore, privateP1, []string{"admin", "member of p1"}},
		{PublicizeImage, privateP1, []string{"admin"}},
		{CommunitizeImage, privateP1, []string{"admin", "member of p1"}},
		{Deactivate, privateP1, []string{"admin", "member of p1"}},
		{Reactivate, privateP1, []string{"admin", "member of p1"}},
		{Deactivate, publicP3, []string{"admin"}},
		{CopyImage, privateP1, []string{"admin"}},
		// Locations.
		{GetImageLocation, privateP1, []string{"admin", "member of p1", "reader of p1"}},
		{GetImageLocation, publicP3, []string{"admin"}},
		{SetImageLocation, privateP1, []string{"admin", "member of p1"}},
		{DeleteImageLocation, privateP1, []string{"admin"}},
		{AddImageLocation, privateP1, []string{"admin", "member of p1", "service"}},
		{FetchImageLocation, privateP1, []string{"admin", "service"}},
		// Members: the owner's project manages them, the member answers.
		{AddMember, privateP1, []string{"admin", "member of p1"}},
		{DeleteMember, privateP1, []string{"admin", "member of p1"}},
		{GetMembers, sharedP3, []string{"admin", "member of p2", "reader of p2"}},
		{GetMember, sharedP3Own, []string{"admin"}},
		{GetMembers, privateP1, []string{"admin", "member of p1", "reader of p1"}},
		{ModifyMember, sharedP3, []string{"admin", "member of p2"}},
		{ModifyMember, privateP1, []string{"admin"}},
		// Cache.
		{ManageImageCache, nil, []string{"admin"}},
		{CacheImage, privateP1, []string{"admin"}},
		{CacheList, nil, []string{"admin"}},
		{CacheDelete, nil, []string{"admin"}},
		{CacheClean, nil, []string{"admin"}},
		{CachePrune, nil, []string{"admin"}},
		{ListCachedNodes, privateP1, []string{"admin"}},
		// Tasks: the API is admin's; the internal task rules allow all.
		{TasksAPIAccess, nil, []string{"admin"}},
		{GetTask, nil, []string{"admin", "member of p1", "reader of p1", "member of p2", "reader of p2", "service", "no roles"}},
		{AddTask, nil, []string{"admin", "member of p1", "reader of p1", "member of p2", "reader of p2", "service", "no roles"}},
		// Metadefs: readers see public namespaces and their own; admins write.
		{GetMetadefNamespace, publicNS, []string{"admin", "member of p1", "reader of p1", "member of p2", "reader of p2"}},
		{GetMetadefNamespace, privateNSP1, []string{"admin", "member of p1", "reader of p1"}},
		{GetMetadefNamespaces, Target{"project_id": "p1"}, []string{"admin", "member of p1", "reader of p1"}},
		{GetMetadefObject, privateNSP1, []string{"admin", "member of p1", "reader of p1"}},
		{GetMetadefProperties, publicNS, []string{"admin", "member of p1", "reader of p1", "member of p2", "reader of p2"}},
		{ListMetadefResourceTypes, publicNS, []string{"admin", "member of p1", "reader of p1", "member of p2", "reader of p2"}},
		{GetMetadefTags, privateNSP1, []string{"admin", "member of p1", "reader of p1"}},
		{AddMetadefNamespace, privateNSP1, []string{"admin"}},
		{ModifyMetadefObject, privateNSP1, []string{"admin"}},
		{RemoveMetadefProperty, privateNSP1, []string{"admin"}},
		{AddMetadefTags, privateNSP1, []string{"admin"}},
		{AddMetadefResourceTypeAssociation, privateNSP1, []string{"admin"}},
		// Stores.
		{StoresInfoDetail, nil, []string{"admin", "service"}},
	}
	e := NewDefault()
	families := map[string]bool{}
	byName := map[string]Rule{}
	for _, r := range Defaults {
		byName[r.Name] = r
	}
	for _, c := range cases {
		families[byName[c.rule].Family] = true
		for _, p := range personas {
			target := c.target
			if target == nil {
				target = Target{"project_id": p.creds.ProjectID}
			}
			creds := e.Credentials(p.creds.ProjectID, p.creds.UserID, p.creds.Roles)
			want := false
			for _, a := range c.allowed {
				want = want || a == p.name
			}
			if got := e.Allowed(c.rule, creds, target); got != want {
				t.Errorf("%s by %s on %v: allowed %v, want %v", c.rule, p.name, c.target, got, want)
			}
		}
	}
	for _, f := range []string{"images", "locations", "members", "cache", "tasks", "metadefs", "stores"} {
		if !families[f] {
			t.Errorf("no case for the %s rules", f)
		}
	}
}

func TestDefaultsAreGlances(t *testing.T) {
	e := NewDefault()
	if len(Defaults) != 67 {
		t.Errorf("%d default rules, Glance defines 67", len(Defaults))
	}
	seen := map[string]bool{}
	for _, r := range Defaults {
		if seen[r.Name] {
			t.Errorf("rule %s defined twice", r.Name)
		}
		seen[r.Name] = true
	}
	// Spot checks against glance/policies/*.py, as oslopolicy-sample-generator prints them.
	for rule, want := range map[string]string{
		AddImage:       "rule:context_is_admin or (role:member and project_id:%(project_id)s and project_id:%(owner)s)",
		GetImage:       "rule:context_is_admin or (role:reader and (project_id:%(project_id)s or project_id:%(member_id)s or 'community':%(visibility)s or 'public':%(visibility)s or 'shared':%(visibility)s))",
		Deactivate:     "rule:context_is_admin or (role:member and project_id:%(project_id)s)",
		GetMembers:     "rule:context_is_admin or role:reader and (project_id:%(project_id)s or project_id:%(member_id)s)",
		ServiceAPI:     "role:service or role:admin",
		MetadefAdmin:   "rule:context_is_admin",
		GetTasks:       "rule:default",
		PublicizeImage: "rule:context_is_admin",
	} {
		if got, _ := e.CheckString(rule); got != want {
			t.Errorf("%s = %q, want %q", rule, got, want)
		}
	}
}

func TestCredentialsIsAdminFollowsContextIsAdmin(t *testing.T) {
	if c := NewDefault().Credentials("p1", "u", []string{"admin"}); !c.IsAdmin {
		t.Error("role admin is not admin under the defaults")
	}
	e, err := New(map[string]string{ContextIsAdmin: "role:cloud_admin"})
	if err != nil {
		t.Fatal(err)
	}
	if c := e.Credentials("p1", "u", []string{"admin"}); c.IsAdmin {
		t.Error("role admin is still admin once context_is_admin asks for cloud_admin")
	}
	c := e.Credentials("p1", "u", []string{"cloud_admin"})
	if !c.IsAdmin || !e.Allowed(PublicizeImage, c, privateP1) {
		t.Error("cloud_admin is not admin under the override")
	}
	if !e.Allowed(Default, c, nil) || e.Allowed("no_such_rule", c, nil) {
		t.Error("an unknown rule must never allow, the empty default always")
	}
}

func TestOverrides(t *testing.T) {
	e, err := New(map[string]string{PublicizeImage: "role:member", DeleteImage: "!"})
	if err != nil {
		t.Fatal(err)
	}
	member := e.Credentials("p1", "", memberP1.Roles)
	adm := e.Credentials("adminproj", "", adminCreds.Roles)
	if !e.Allowed(PublicizeImage, member, privateP1) {
		t.Error("publicize_image: role:member does not let a member publicize")
	}
	if e.Allowed(DeleteImage, adm, privateP1) {
		t.Error(`delete_image: "!" still lets the admin delete`)
	}
	if !e.Allowed(ModifyImage, member, privateP1) {
		t.Error("an override changed a rule it does not name")
	}
	if got := e.Overridden(); strings.Join(got, ",") != "delete_image,publicize_image" {
		t.Errorf("Overridden = %v", got)
	}
	// An override can reshape a base rule that others refer to.
	e, err = New(map[string]string{ContextIsAdmin: "role:admin and project_id:adminproj"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Allowed(PublicizeImage, e.Credentials("p1", "", []string{"admin"}), privateP1) {
		t.Error("an admin of another project still passes a project-scoped context_is_admin")
	}
}

func TestOverrideErrors(t *testing.T) {
	cases := []struct {
		overrides map[string]string
		says      string
	}{
		{map[string]string{"publicise_image": "role:admin"}, `rule "publicise_image" is not one of Glance's rules that glimpse knows (did you mean "publicize_image"?)`},
		{map[string]string{"frobnicate": "@"}, `rule "frobnicate" is not one of Glance's rules`},
		{map[string]string{DeleteImage: "rule:admin_or_owner"}, `rule "delete_image" refers to rule:admin_or_owner, which does not exist`},
		{map[string]string{DeleteImage: "role:admin and"}, `rule "delete_image": policy syntax error`},
		{map[string]string{ContextIsAdmin: "rule:default", Default: "rule:context_is_admin"}, "cycle: context_is_admin -> default -> context_is_admin"},
		{map[string]string{Default: "rule:default"}, "cycle: default -> default"},
	}
	for _, c := range cases {
		_, err := New(c.overrides)
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("New(%v) = %v, want an error saying %q", c.overrides, err, c.says)
		}
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	yamlFile := write("policy.yaml", `# Glance's sample file is all comments but the lines an operator uncomments.
#"get_image": "..."
"publicize_image": "role:member"
delete_image: '!'
"communitize_image": >-
  rule:context_is_admin or
  role:member
`)
	e, err := LoadFile(yamlFile)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := e.CheckString(CommunitizeImage); s != "rule:context_is_admin or role:member" {
		t.Errorf("folded YAML check = %q", s)
	}
	if e.Allowed(DeleteImage, adminCreds, privateP1) {
		t.Error("delete_image '!' from YAML allows")
	}
	jsonFile := write("policy.json", `{"publicize_image": "role:member", "delete_image": "!"}`)
	if e, err = LoadFile(jsonFile); err != nil || len(e.Overridden()) != 2 {
		t.Errorf("JSON policy file: %v, %v", e, err)
	}
	for name, text := range map[string]string{"empty.yaml": "", "comments.yaml": "# nothing\n", "null.yaml": "~\n"} {
		if e, err := LoadFile(write(name, text)); err != nil || len(e.Overridden()) != 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
	bad := []struct{ text, says string }{
		{"- role:admin\n", "want a map of rule names to check strings"},
		{"delete_image: !\n", `rule "delete_image" has no check string (quote it: "!" allows no one`},
		{"delete_image:\n", `rule "delete_image" has no check string`},
		{"delete_image: [role:admin]\n", "a list (the old list syntax is not supported)"},
		{"delete_image: 1\n", "the check is a string (quote it), not a int"},
		{"delete_image: '@'\ndelete_image: '!'\n", `rule "delete_image" is given twice`},
		{"{", "not YAML or JSON"},
		{"no_such_rule: '@'\n", `rule "no_such_rule" is not one of Glance's rules`},
	}
	for i, b := range bad {
		p := write("bad"+string(rune('a'+i))+".yaml", b.text)
		_, err := LoadFile(p)
		if err == nil || !strings.Contains(err.Error(), b.says) || !strings.HasPrefix(err.Error(), p+": ") {
			t.Errorf("LoadFile(%q) = %v, want an error naming the file and saying %q", b.text, err, b.says)
		}
	}
	if _, err := LoadFile(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a missing policy file loads")
	}
}

// BenchmarkAllowedGetImage: the costliest default, decided for a caller
// that is not admin (every branch of the or is tried).
func BenchmarkAllowedGetImage(b *testing.B) {
	e := NewDefault()
	c := e.Credentials("p2", "u", []string{"member", "reader"})
	b.ReportAllocs()
	for b.Loop() {
		if !e.Allowed(GetImage, c, sharedP3) {
			b.Fatal("denied")
		}
	}
}
