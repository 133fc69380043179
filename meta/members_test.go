package meta

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/glimpse-project/glimpse/meta/kv"
)

func TestMembersAddUpdateDelete(t *testing.T) {
	stores(t, func(t *testing.T, s *Store) {
		img, err := s.Create(ctx, &Image{ID: "11111111-1111-4111-8111-111111111111", Status: Active, Owner: "p1", Visibility: "shared"})
		if err != nil {
			t.Fatal(err)
		}
		var events []Event
		s.Subscribe(func(ev Event) { events = append(events, ev) })
		// A member id with a slash must not leak into another's index.
		for _, m := range []string{"p2", "p2/x", "p3"} {
			got, err := s.AddMember(ctx, img.ID, m, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != MemberPending || got.CreatedAt.IsZero() || !got.UpdatedAt.Equal(got.CreatedAt) {
				t.Fatalf("new member %+v", got)
			}
		}
		if _, err := s.AddMember(ctx, img.ID, "p2", nil); !errors.Is(err, ErrMemberExists) {
			t.Fatalf("duplicate: %v", err)
		}
		if _, err := s.AddMember(ctx, "22222222-2222-4222-8222-222222222222", "p2", nil); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing image: %v", err)
		}
		refused := errors.New("refused")
		if _, err := s.AddMember(ctx, img.ID, "p4", func(_ *Image, ms []*Member) error {
			if len(ms) != 3 {
				t.Errorf("check saw %d members", len(ms))
			}
			return refused
		}); !errors.Is(err, refused) {
			t.Fatalf("check: %v", err)
		}
		m, err := s.UpdateMember(ctx, img.ID, "p2", func(_ *Image, m *Member) error { m.Status = MemberAccepted; return nil })
		if err != nil || m.Status != MemberAccepted {
			t.Fatalf("update: %+v %v", m, err)
		}
		if _, err := s.UpdateMember(ctx, img.ID, "p2", func(_ *Image, m *Member) error { m.Status = "maybe"; return nil }); err == nil {
			t.Fatal("invalid status stored")
		}
		if _, err := s.UpdateMember(ctx, img.ID, "p9", func(*Image, *Member) error { return nil }); !errors.Is(err, ErrNoMember) {
			t.Fatalf("update of a non-member: %v", err)
		}
		shared, err := s.SharedWith("p2")
		if err != nil || len(shared) != 1 || shared[img.ID] != MemberAccepted {
			t.Fatalf("shared with p2: %v %v", shared, err)
		}
		_, got, err := s.Member(img.ID, "p2/x")
		if err != nil || got.Status != MemberPending {
			t.Fatalf("member p2/x: %+v %v", got, err)
		}
		if err := s.DeleteMember(ctx, img.ID, "p3", nil); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Member(img.ID, "p3"); !errors.Is(err, ErrNoMember) {
			t.Fatalf("deleted member: %v", err)
		}
		if len(events) != 5 || events[len(events)-1].New == nil || events[len(events)-1].New.ID != img.ID || events[0].New.ID != img.ID {
			t.Fatalf("events: %d", len(events))
		}
		_, ms, err := s.Members(img.ID)
		if err != nil || len(ms) != 2 || ms[0].MemberID != "p2" || ms[1].MemberID != "p2/x" {
			t.Fatalf("members: %v %v", ms, err)
		}
	})
}

func TestDeleteImageRemovesItsMembers(t *testing.T) {
	stores(t, func(t *testing.T, s *Store) {
		img, _ := s.Create(ctx, &Image{ID: "11111111-1111-4111-8111-111111111111", Status: Queued, Owner: "p1", Visibility: "shared"})
		other, _ := s.Create(ctx, &Image{ID: "33333333-3333-4333-8333-333333333333", Status: Queued, Owner: "p1", Visibility: "shared"})
		for _, id := range []string{img.ID, other.ID} {
			if _, err := s.AddMember(ctx, id, "p2", nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Delete(ctx, img.ID, nil); err != nil {
			t.Fatal(err)
		}
		shared, _ := s.SharedWith("p2")
		if len(shared) != 1 || shared[other.ID] == "" {
			t.Fatalf("shared with p2 after delete: %v", shared)
		}
		left := 0
		s.kv.View(context.Background(), func(tx kv.Txn) error {
			return tx.Scan(memberPrefix(img.ID), func(_, _ []byte) error { left++; return nil })
		})
		if left != 0 {
			t.Fatalf("%d member records of a deleted image left", left)
		}
	})
}

func TestConcurrentAddsRespectTheCheck(t *testing.T) {
	stores(t, func(t *testing.T, s *Store) {
		img, _ := s.Create(ctx, &Image{ID: "11111111-1111-4111-8111-111111111111", Status: Queued, Owner: "p1", Visibility: "shared"})
		full := errors.New("full")
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.AddMember(ctx, img.ID, fmt.Sprintf("p%d", i), func(_ *Image, ms []*Member) error {
					if len(ms) >= 5 {
						return full
					}
					return nil
				})
			}()
		}
		wg.Wait()
		if _, ms, _ := s.Members(img.ID); len(ms) != 5 {
			t.Fatalf("%d members, the check allows 5", len(ms))
		}
	})
}

// An image shared with as many projects as the default member limit
// allows (128) is deleted, members and all, in one transaction that every
// engine takes.
func TestDeleteImageWithManyMembers(t *testing.T) {
	stores(t, func(t *testing.T, s *Store) {
		img, _ := s.Create(ctx, &Image{ID: "11111111-1111-4111-8111-111111111111", Status: Queued, Owner: "p1", Visibility: "shared"})
		for i := range 128 {
			if _, err := s.AddMember(ctx, img.ID, fmt.Sprintf("project-%03d", i), nil); err != nil {
				t.Fatalf("member %d: %v", i, err)
			}
		}
		if _, err := s.Delete(ctx, img.ID, nil); err != nil {
			t.Fatalf("delete of an image with 128 members: %v", err)
		}
		if shared, _ := s.SharedWith("project-000"); len(shared) != 0 {
			t.Fatalf("shared with project-000 after delete: %v", shared)
		}
		again, err := s.Create(ctx, &Image{ID: img.ID, Status: Queued, Owner: "p1", Visibility: "shared"})
		if err != nil {
			t.Fatal(err)
		}
		if _, ms, err := s.Members(again.ID); err != nil || len(ms) != 0 {
			t.Fatalf("a new image of the same id has members %v (%v)", ms, err)
		}
	})
}
