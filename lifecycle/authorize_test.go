package lifecycle_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/lifecycletest"
	"github.com/glimpse-project/glimpse/lifecycle/policy"
	"github.com/glimpse-project/glimpse/meta"
)

func TestCredentialsImplyRoles(t *testing.T) {
	a := lifecycle.NewAuthorizer(nil)
	for _, c := range []struct {
		p     lifecycle.Principal
		roles []string
		admin bool
	}{
		{lifecycle.Principal{Project: "admin", Admin: true}, []string{"admin", "member", "reader"}, true}, // no auth, the mount
		{lifecycle.Principal{Project: "p1"}, []string{"member", "reader"}, false},
		{lifecycle.Principal{Project: "p1", ReadOnly: true}, []string{"reader"}, false},
		{lifecycle.Principal{Project: "p1", Roles: []string{"admin"}}, []string{"admin", "member", "reader"}, true},
		{lifecycle.Principal{Project: "p1", Roles: []string{"Member"}}, []string{"Member", "reader"}, false},
		{lifecycle.Principal{Project: "p1", Roles: []string{"reader", "member"}}, []string{"reader", "member"}, false},
		{lifecycle.Principal{Project: "p1", Roles: []string{"service"}}, []string{"service"}, false},
	} {
		got := a.Credentials(c.p)
		if !slices.Equal(got.Roles, c.roles) || got.IsAdmin != c.admin || got.ProjectID != c.p.Project {
			t.Errorf("Credentials(%+v) = %+v, want roles %v, admin %v", c.p, got, c.roles, c.admin)
		}
	}
}

func TestImageTarget(t *testing.T) {
	img := &meta.Image{ID: "i", Owner: "p1", Visibility: "shared", Protected: true, MinRAM: 512, Properties: map[string]string{"os_distro": "debian"}}
	got := lifecycle.ImageTarget(lifecycle.Principal{Project: "p2"}, img)
	for k, want := range map[string]string{"project_id": "p1", "owner": "p1", "visibility": "shared", "protected": "True", "os_hidden": "False", "min_ram": "512", "member_id": "p2", "os_distro": "debian"} {
		if got[k] != want {
			t.Errorf("target[%s] = %q, want %q", k, got[k], want)
		}
	}
	if _, ok := lifecycle.ImageTarget(lifecycle.Principal{Project: "p1"}, img)["member_id"]; ok {
		t.Error("the owner asking is given a member_id")
	}
}

func mustPolicy(t *testing.T, overrides map[string]string) *policy.Enforcer {
	t.Helper()
	e, err := policy.New(overrides)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// An override of get_image hides images from everyone it denies, admins
// included, on every path that shows images.
func TestGetImageOverrideHidesEverywhere(t *testing.T) {
	ctx := context.Background()
	env := lifecycletest.New(t, lifecycle.Config{Policy: mustPolicy(t, map[string]string{policy.GetImage: "'public':%(visibility)s"})})
	svc := env.Service
	admin := lifecycletest.Admin
	hidden, err := svc.Create(ctx, admin, lifecycle.CreateSpec{Name: "hidden"})
	if err != nil {
		t.Fatal(err)
	}
	shown, err := svc.Create(ctx, admin, lifecycle.CreateSpec{Name: "shown", Visibility: "public"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Get(ctx, admin, hidden.ID); !errors.Is(err, lifecycle.ErrNotFound) {
		t.Errorf("Get of a non-public image under get_image=public-only: %v", err)
	}
	if _, err := svc.Get(ctx, admin, shown.ID); err != nil {
		t.Errorf("Get of the public image: %v", err)
	}
	imgs, _, err := svc.List(ctx, admin, lifecycle.ListQuery{})
	if err != nil || len(imgs) != 1 || imgs[0].ID != shown.ID {
		t.Errorf("List: %v %v", imgs, err)
	}
	var names []string
	svc.Entries(ctx, admin, meta.Queued, func(e meta.Entry) error { names = append(names, e.Name); return nil })
	if !slices.Equal(names, []string{"shown"}) {
		t.Errorf("Entries (the mount's listing): %v", names)
	}
	if err := svc.Delete(ctx, admin, hidden.ID); !errors.Is(err, lifecycle.ErrNotFound) {
		t.Errorf("Delete of an image get_image hides: %v", err)
	}
}

// context_is_admin decides who is admin, for the rules and for glimpse's
// own admin operations.
func TestContextIsAdminOverride(t *testing.T) {
	ctx := context.Background()
	env := lifecycletest.New(t, lifecycle.Config{Policy: mustPolicy(t, map[string]string{policy.ContextIsAdmin: "role:cloud_admin"})})
	svc := env.Service
	owner := lifecycle.Principal{Project: "p1", Roles: []string{"member"}}
	img, err := svc.Create(ctx, owner, lifecycle.CreateSpec{Name: "mine"})
	if err != nil {
		t.Fatal(err)
	}
	oldAdmin := lifecycle.Principal{Project: "ops", Roles: []string{"admin"}}
	if _, err := svc.Get(ctx, oldAdmin, img.ID); !errors.Is(err, lifecycle.ErrNotFound) {
		t.Errorf("role admin still sees other projects' images: %v", err)
	}
	if _, err := svc.Scrub(ctx, oldAdmin, false); !errors.Is(err, lifecycle.ErrForbidden) {
		t.Errorf("role admin still scrubs: %v", err)
	}
	cloudAdmin := lifecycle.Principal{Project: "ops", Roles: []string{"cloud_admin"}}
	if _, err := svc.Get(ctx, cloudAdmin, img.ID); err != nil {
		t.Errorf("cloud_admin: %v", err)
	}
	if _, err := svc.Patch(ctx, cloudAdmin, img.ID, []lifecycle.Op{{Op: "replace", Key: "owner", Value: "p2"}}); err != nil {
		t.Errorf("cloud_admin changing the owner: %v", err)
	}
	_, err = svc.Patch(ctx, owner, img.ID, []lifecycle.Op{{Op: "replace", Key: "owner", Value: "p1"}})
	if !errors.Is(err, lifecycle.ErrNotFound) {
		t.Errorf("the former owner patching: %v", err)
	}
}

// The owner is the admin's to change, through Patch (REST) only: Update
// (the mount's setfattr) keeps it read-only even for admins.
func TestOwnerChanges(t *testing.T) {
	ctx := context.Background()
	svc := lifecycletest.New(t, lifecycle.Config{}).Service
	admin, member := lifecycletest.Admin, lifecycle.Principal{Project: "p1"}
	img, err := svc.Create(ctx, admin, lifecycle.CreateSpec{Name: "x", Owner: "p1"})
	if err != nil || img.Owner != "p1" {
		t.Fatalf("admin create for p1: %+v %v", img, err)
	}
	if _, err := svc.Create(ctx, member, lifecycle.CreateSpec{Name: "x", Owner: "p2"}); !errors.Is(err, lifecycle.ErrForbidden) || !strings.Contains(err.Error(), "owned by 'p2'") {
		t.Errorf("member create for p2: %v", err)
	}
	if _, err := svc.Patch(ctx, member, img.ID, []lifecycle.Op{{Op: "replace", Key: "owner", Value: "p2"}}); !errors.Is(err, lifecycle.ErrForbidden) {
		t.Errorf("member patching owner: %v", err)
	}
	if _, err := svc.Update(ctx, admin, img.ID, []lifecycle.Op{{Op: "replace", Key: "owner", Value: "p2"}}); !errors.Is(err, lifecycle.ErrReadOnly) {
		t.Errorf("Update (the mount) of owner: %v", err)
	}
	for _, bad := range []any{"", 7, nil, strings.Repeat("p", 256)} {
		if _, err := svc.Patch(ctx, admin, img.ID, []lifecycle.Op{{Op: "replace", Key: "owner", Value: bad}}); !errors.Is(err, lifecycle.ErrInvalid) {
			t.Errorf("owner %v: %v", bad, err)
		}
	}
	if got, _ := svc.Get(ctx, admin, img.ID); got.Owner != "p1" {
		t.Errorf("refused changes changed the owner to %q", got.Owner)
	}
}
