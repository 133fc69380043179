package lifecycle_test

import (
	"context"
	"errors"
	"testing"

	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/lifecycletest"
	"github.com/glimpse-project/glimpse/meta"
)

func newService(t *testing.T) *lifecycle.Service {
	t.Helper()
	return lifecycletest.New(t, lifecycle.Config{}).Service
}

var admin = lifecycletest.Admin

func names(imgs []*meta.Image) []string {
	var out []string
	for _, img := range imgs {
		out = append(out, img.Name)
	}
	return out
}

func TestListFiltersSortPaging(t *testing.T) {
	ctx := context.Background()
	s := newService(t)
	p1 := lifecycle.Principal{Project: "p1"}
	for _, n := range []string{"c", "a", "e", "b", "d"} {
		if _, err := s.Create(ctx, p1, lifecycle.CreateSpec{Name: n, DiskFormat: "raw", Visibility: "private", Tags: []string{"t-" + n}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Create(ctx, lifecycle.Principal{Project: "p2"}, lifecycle.CreateSpec{Name: "other", Visibility: "private"}); err != nil {
		t.Fatal(err)
	}
	byName := []lifecycle.SortKey{{Key: "name"}}
	var got []string
	marker := ""
	for {
		page, full, err := s.List(ctx, p1, lifecycle.ListQuery{Sort: byName, Limit: 2, Marker: marker})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, names(page)...)
		if !full {
			break
		}
		marker = page[len(page)-1].ID
	}
	if want := "[a b c d e]"; fmtList(got) != want {
		t.Fatalf("paged listing = %v, want %v", got, want)
	}
	all, _, err := s.List(ctx, admin, lifecycle.ListQuery{Sort: []lifecycle.SortKey{{Key: "name", Desc: true}}})
	if err != nil || fmtList(names(all)) != "[other e d c b a]" {
		t.Fatalf("admin listing = %v, %v", names(all), err)
	}
	in, _, err := s.List(ctx, p1, lifecycle.ListQuery{Sort: byName, Filters: []lifecycle.Filter{{Key: "name", Op: "in", Values: []string{"b", "d", "other"}}}})
	if err != nil || fmtList(names(in)) != "[b d]" {
		t.Fatalf("in: filter = %v, %v", names(in), err)
	}
	tagged, _, err := s.List(ctx, p1, lifecycle.ListQuery{Tags: []string{"t-e"}})
	if err != nil || fmtList(names(tagged)) != "[e]" {
		t.Fatalf("tag filter = %v, %v", names(tagged), err)
	}
	if _, _, err := s.List(ctx, p1, lifecycle.ListQuery{Marker: lifecycle.NewID()}); !errors.Is(err, lifecycle.ErrInvalid) {
		t.Fatalf("unknown marker: %v, want ErrInvalid", err)
	}
	if _, _, err := s.List(ctx, p1, lifecycle.ListQuery{Sort: []lifecycle.SortKey{{Key: "owner"}}}); !errors.Is(err, lifecycle.ErrInvalid) {
		t.Fatalf("bad sort key: %v, want ErrInvalid", err)
	}
}

func fmtList(s []string) string {
	out := "["
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out + "]"
}

func TestPatchSemantics(t *testing.T) {
	ctx := context.Background()
	s := newService(t)
	img, err := s.Create(ctx, admin, lifecycle.CreateSpec{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Patch(ctx, admin, img.ID, []lifecycle.Op{{Op: "replace", Key: "nope", Value: "v"}}); !errors.Is(err, lifecycle.ErrNoProperty) {
		t.Fatalf("replace of a missing property: %v", err)
	}
	if _, err := s.Patch(ctx, admin, img.ID, []lifecycle.Op{{Op: "add", Key: "k", Value: "v"}, {Op: "replace", Key: "k", Value: "w"}, {Op: "replace", Key: "name", Value: "y"}}); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get(ctx, admin, img.ID)
	if got.Properties["k"] != "w" || got.Name != "y" {
		t.Fatalf("after patch: %+v", got)
	}
	if _, err := s.AddTag(ctx, admin, img.ID, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveTag(ctx, admin, img.ID, "b"); !errors.Is(err, lifecycle.ErrNoProperty) {
		t.Fatalf("remove missing tag: %v", err)
	}
	if got, err := s.RemoveTag(ctx, admin, img.ID, "a"); err != nil || len(got.Tags) != 0 {
		t.Fatalf("remove tag: %v %v", got, err)
	}
}

// Killed images are listed, as Glance lists them: unfiltered, and with
// status=killed, so a failed upload can be found and deleted.
func TestListShowsKilledImages(t *testing.T) {
	ctx := context.Background()
	s := newService(t)
	ok, err := s.Create(ctx, admin, lifecycle.CreateSpec{Name: "queued", DiskFormat: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.Create(ctx, admin, lifecycle.CreateSpec{Name: "failed", DiskFormat: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	up, err := s.BeginUpload(ctx, admin, img.ID)
	if err != nil {
		t.Fatal(err)
	}
	up.Abort(ctx, "the writer went away")
	if got, _ := s.Get(ctx, admin, img.ID); got.Status != meta.Killed {
		t.Fatalf("aborted upload left the image %s", got.Status)
	}
	all, _, err := s.List(ctx, admin, lifecycle.ListQuery{Sort: []lifecycle.SortKey{{Key: "name"}}})
	if err != nil || fmtList(names(all)) != "[failed queued]" {
		t.Fatalf("unfiltered listing = %v, %v; want the killed image in it", names(all), err)
	}
	killed, _, err := s.List(ctx, admin, lifecycle.ListQuery{Filters: []lifecycle.Filter{{Key: "status", Op: "eq", Values: []string{"killed"}}}})
	if err != nil || len(killed) != 1 || killed[0].ID != img.ID {
		t.Fatalf("status=killed listing = %v, %v", names(killed), err)
	}
	if err := s.Delete(ctx, admin, img.ID); err != nil {
		t.Fatalf("delete the killed image: %v", err)
	}
	if all, _, _ := s.List(ctx, admin, lifecycle.ListQuery{}); len(all) != 1 || all[0].ID != ok.ID {
		t.Fatalf("after deleting the killed image: %v", names(all))
	}
}
