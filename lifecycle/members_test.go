package lifecycle_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
)

var (
	owner    = lifecycle.Principal{Project: "p1", Roles: []string{"member"}}
	consumer = lifecycle.Principal{Project: "p2", Roles: []string{"member"}}
	stranger = lifecycle.Principal{Project: "p3", Roles: []string{"member"}}
)

func listIDs(t *testing.T, s *lifecycle.Service, p lifecycle.Principal, memberStatus string) []string {
	t.Helper()
	imgs, _, err := s.List(context.Background(), p, lifecycle.ListQuery{MemberStatus: memberStatus})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, img := range imgs {
		ids = append(ids, img.ID)
	}
	return ids
}

func entries(t *testing.T, s *lifecycle.Service, p lifecycle.Principal) []string {
	t.Helper()
	var names []string
	if err := s.Entries(context.Background(), p, meta.Queued, func(e meta.Entry) error {
		names = append(names, e.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return names
}

// What a member sees follows its membership: shown and downloadable in any
// status, listed (and in the mount's status directories) once accepted.
func TestSharedImageVisibilityFollowsMembership(t *testing.T) {
	ctx := context.Background()
	s := newService(t)
	m := s.Members()
	img, err := s.Create(ctx, owner, lifecycle.CreateSpec{Name: "shared-disk"})
	if err != nil {
		t.Fatal(err)
	}
	if img.Visibility != "shared" {
		t.Fatalf("default visibility %q, Glance's is shared", img.Visibility)
	}
	if _, err := s.Get(ctx, consumer, img.ID); !errors.Is(err, lifecycle.ErrNotFound) {
		t.Fatalf("before sharing, p2 gets %v", err)
	}
	if _, err := m.Add(ctx, owner, img.ID, "p2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, consumer, img.ID); err != nil {
		t.Fatalf("a pending member cannot show the image: %v", err)
	}
	if _, err := s.Get(ctx, stranger, img.ID); !errors.Is(err, lifecycle.ErrNotFound) {
		t.Fatalf("p3 gets %v", err)
	}
	if got := listIDs(t, s, consumer, ""); len(got) != 0 {
		t.Fatalf("pending image listed by default: %v", got)
	}
	if got := listIDs(t, s, consumer, "pending"); !slices.Equal(got, []string{img.ID}) {
		t.Fatalf("member_status=pending: %v", got)
	}
	if got := entries(t, s, consumer); len(got) != 0 {
		t.Fatalf("pending image in the mount's listing: %v", got)
	}
	if _, err := m.SetStatus(ctx, consumer, img.ID, "p2", "accepted"); err != nil {
		t.Fatal(err)
	}
	if got := listIDs(t, s, consumer, ""); !slices.Equal(got, []string{img.ID}) {
		t.Fatalf("accepted image not listed: %v", got)
	}
	if got := listIDs(t, s, consumer, "rejected"); len(got) != 0 {
		t.Fatalf("member_status=rejected: %v", got)
	}
	if got := entries(t, s, consumer); !slices.Equal(got, []string{"shared-disk"}) {
		t.Fatalf("mount listing: %v", got)
	}
	// A member sees the image but may not change it: 403, not 404.
	if _, err := s.Update(ctx, consumer, img.ID, []lifecycle.Op{{Op: "replace", Key: "name", Value: "x"}}); !errors.Is(err, lifecycle.ErrForbidden) {
		t.Fatalf("member's update: %v", err)
	}
	if err := s.Delete(ctx, consumer, img.ID); !errors.Is(err, lifecycle.ErrForbidden) {
		t.Fatalf("member's delete: %v", err)
	}
	// Private: members are kept but see nothing; shared again, they do.
	if _, err := s.Update(ctx, owner, img.ID, []lifecycle.Op{{Op: "replace", Key: "visibility", Value: "private"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, consumer, img.ID); !errors.Is(err, lifecycle.ErrNotFound) {
		t.Fatalf("private image, member gets %v", err)
	}
	if _, err := m.List(ctx, owner, img.ID); !errors.Is(err, lifecycle.ErrForbidden) {
		t.Fatalf("members of a private image: %v", err)
	}
	if _, err := s.Update(ctx, owner, img.ID, []lifecycle.Op{{Op: "replace", Key: "visibility", Value: "shared"}}); err != nil {
		t.Fatal(err)
	}
	if got := listIDs(t, s, consumer, ""); !slices.Equal(got, []string{img.ID}) {
		t.Fatalf("shared again, membership lost: %v", got)
	}
	if err := s.Delete(ctx, owner, img.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Add(ctx, owner, img.ID, "p3"); !errors.Is(err, lifecycle.ErrNotFound) {
		t.Fatalf("member of a deleted image: %v", err)
	}
}

func TestMemberRules(t *testing.T) {
	ctx := context.Background()
	s := newService(t)
	m := s.Members()
	img, _ := s.Create(ctx, owner, lifecycle.CreateSpec{Name: "x"})
	reader := lifecycle.Principal{Project: "p1", ReadOnly: true, Roles: []string{"reader"}}
	for _, c := range []struct {
		name string
		err  error
		want error
	}{
		{"stranger adds", func() error { _, err := m.Add(ctx, stranger, img.ID, "p2"); return err }(), lifecycle.ErrNotFound},
		{"reader adds", func() error { _, err := m.Add(ctx, reader, img.ID, "p2"); return err }(), lifecycle.ErrForbidden},
		{"owner adds p2", func() error { _, err := m.Add(ctx, owner, img.ID, "p2"); return err }(), nil},
		{"owner adds itself", func() error { _, err := m.Add(ctx, owner, img.ID, "p1"); return err }(), nil},
		{"owner adds p2 again", func() error { _, err := m.Add(ctx, owner, img.ID, "p2"); return err }(), lifecycle.ErrMemberExists},
		{"member adds", func() error { _, err := m.Add(ctx, consumer, img.ID, "p3"); return err }(), lifecycle.ErrForbidden},
		{"owner accepts for p2", func() error { _, err := m.SetStatus(ctx, owner, img.ID, "p2", "accepted"); return err }(), lifecycle.ErrForbidden},
		{"owner accepts its own image", func() error { _, err := m.SetStatus(ctx, owner, img.ID, "p1", "accepted"); return err }(), lifecycle.ErrForbidden},
		{"member sets a bad status", func() error { _, err := m.SetStatus(ctx, consumer, img.ID, "p2", "maybe"); return err }(), lifecycle.ErrInvalid},
		{"member accepts", func() error { _, err := m.SetStatus(ctx, consumer, img.ID, "p2", "accepted"); return err }(), nil},
		{"member changes another's", func() error { _, err := m.SetStatus(ctx, consumer, img.ID, "p1", "rejected"); return err }(), lifecycle.ErrNoMember},
		{"admin rejects for p2", func() error { _, err := m.SetStatus(ctx, admin, img.ID, "p2", "rejected"); return err }(), nil},
		{"member removes", func() error { return m.Remove(ctx, consumer, img.ID, "p2") }(), lifecycle.ErrForbidden},
		{"member shows another", func() error { _, err := m.Get(ctx, consumer, img.ID, "p1"); return err }(), lifecycle.ErrNoMember},
		{"owner removes a non-member", func() error { return m.Remove(ctx, owner, img.ID, "p9") }(), lifecycle.ErrNoMember},
		{"member id of 256 characters", func() error { _, err := m.Add(ctx, owner, img.ID, strings.Repeat("a", 256)); return err }(), lifecycle.ErrInvalid},
		{"member id with NUL", func() error { _, err := m.Add(ctx, owner, img.ID, "p\x00"); return err }(), lifecycle.ErrInvalid},
		{"member id with a 4-byte character", func() error { _, err := m.Add(ctx, owner, img.ID, "p\U0001F600"); return err }(), lifecycle.ErrInvalid},
	} {
		if !errors.Is(c.err, c.want) || (c.want == nil) != (c.err == nil) {
			t.Errorf("%s: %v, want %v", c.name, c.err, c.want)
		}
	}
	got, err := m.List(ctx, consumer, img.ID)
	if err != nil || len(got) != 1 || got[0].MemberID != "p2" || got[0].Status != "rejected" {
		t.Fatalf("a member lists only itself: %+v %v", got, err)
	}
	if got, _ := m.List(ctx, owner, img.ID); len(got) != 2 {
		t.Fatalf("the owner lists %d members", len(got))
	}
}

func TestMemberLimit(t *testing.T) {
	ctx := context.Background()
	s := newService(t)
	m := s.Members()
	img, _ := s.Create(ctx, owner, lifecycle.CreateSpec{Name: "x"})
	for i := range lifecycle.DefaultMemberLimit {
		if _, err := m.Add(ctx, owner, img.ID, "project-"+string(rune('a'+i/26))+string(rune('a'+i%26))); err != nil {
			t.Fatalf("member %d: %v", i+1, err)
		}
	}
	_, err := m.Add(ctx, owner, img.ID, "one-more")
	if !errors.Is(err, lifecycle.ErrOverQuota) {
		t.Fatalf("member %d: %v", lifecycle.DefaultMemberLimit+1, err)
	}
	if got, _ := m.List(ctx, owner, img.ID); len(got) != lifecycle.DefaultMemberLimit {
		t.Fatalf("%d members after the refusal", len(got))
	}
}
