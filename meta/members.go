package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/glimpse-project/glimpse/meta/kv"
)

// The statuses of an image membership (Glance's image sharing): a new
// member is pending until the member project accepts or rejects the image.
const (
	MemberPending  = "pending"
	MemberAccepted = "accepted"
	MemberRejected = "rejected"
)

// MemberStatuses lists the statuses a membership can hold.
var MemberStatuses = []string{MemberPending, MemberAccepted, MemberRejected}

var (
	// ErrNoMember: the image has no member of that id.
	ErrNoMember = errors.New("image member not found")
	// ErrMemberExists: the project is already a member of the image.
	ErrMemberExists = errors.New("image member already exists")
)

// Member is one project an image is shared with. It is stored as JSON (see
// keys.go), beside an index entry for the member project's listing.
type Member struct {
	ImageID   string    `json:"image_id"`
	MemberID  string    `json:"member_id"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ValidMemberID reports whether id can name a member in the registry's
// keys: not empty, and without NUL (the index's separator).
func ValidMemberID(id string) bool { return id != "" && !strings.ContainsRune(id, 0) }

// AddMember makes project member a member of image imageID, pending. check,
// if not nil, sees the image and its current members inside the same
// transaction and may refuse with an error, returned as is (so that a
// member limit cannot be overrun by concurrent adds). A project that is
// already a member gets ErrMemberExists.
func (s *Store) AddMember(ctx context.Context, imageID, member string, check func(*Image, []*Member) error) (*Member, error) {
	if !ValidMemberID(member) {
		return nil, fmt.Errorf("add member %q to image %s: invalid member id", member, imageID)
	}
	var img *Image
	m := &Member{ImageID: imageID, MemberID: member, Status: MemberPending, CreatedAt: s.now()}
	m.UpdatedAt = m.CreatedAt
	rev, err := s.kv.Update(ctx, func(tx kv.Txn) error {
		var err error
		if img, err = getImage(tx, imageID); err != nil {
			return err
		}
		members, err := listMembers(tx, imageID)
		if err != nil {
			return err
		}
		if err := countMembers(tx, imageID, len(members)+1); err != nil {
			return err
		}
		if check != nil {
			if err := check(img, members); err != nil {
				return err
			}
		}
		if slices.ContainsFunc(members, func(o *Member) bool { return o.MemberID == member }) {
			return ErrMemberExists
		}
		if err := touchImage(tx, imageID); err != nil {
			return err
		}
		return putMember(tx, m)
	})
	if err != nil {
		return nil, fmt.Errorf("add member %s to image %s: %w", member, imageID, err)
	}
	s.await(ctx, rev)
	return m, nil
}

// Members returns image imageID and its members (by member id), read
// together.
func (s *Store) Members(imageID string) (*Image, []*Member, error) {
	var img *Image
	var members []*Member
	err := s.kv.View(context.Background(), func(tx kv.Txn) error {
		var err error
		if img, err = getImage(tx, imageID); err != nil {
			return err
		}
		members, err = listMembers(tx, imageID)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("members of image %s: %w", imageID, err)
	}
	return img, members, nil
}

// Member returns image imageID and its member's record, read together;
// ErrNoMember when the project is not a member.
func (s *Store) Member(imageID, member string) (*Image, *Member, error) {
	var img *Image
	var m *Member
	err := s.kv.View(context.Background(), func(tx kv.Txn) error {
		var err error
		if img, err = getImage(tx, imageID); err != nil {
			return err
		}
		m, err = getMember(tx, imageID, member)
		return err
	})
	if err != nil {
		return img, nil, fmt.Errorf("member %s of image %s: %w", member, imageID, err)
	}
	return img, m, nil
}

// UpdateMember applies fn to the membership of member in image imageID and
// stores the result atomically (UpdatedAt set to now). fn may run more than
// once and may only change the member's Status; its error aborts the update
// and is returned as is.
func (s *Store) UpdateMember(ctx context.Context, imageID, member string, fn func(*Image, *Member) error) (*Member, error) {
	var img *Image
	var m *Member
	rev, err := s.kv.Update(ctx, func(tx kv.Txn) error {
		var err error
		if img, err = getImage(tx, imageID); err != nil {
			return err
		}
		old, err := getMember(tx, imageID, member)
		if err != nil {
			return err
		}
		m = old.clone()
		if err := fn(img, m); err != nil {
			return err
		}
		if !slices.Contains(MemberStatuses, m.Status) {
			return fmt.Errorf("invalid member status %q", m.Status)
		}
		m.ImageID, m.MemberID, m.CreatedAt, m.UpdatedAt = old.ImageID, old.MemberID, old.CreatedAt, s.now()
		if err := touchImage(tx, imageID); err != nil {
			return err
		}
		return putMember(tx, m)
	})
	if err != nil {
		return nil, fmt.Errorf("update member %s of image %s: %w", member, imageID, err)
	}
	s.await(ctx, rev)
	return m, nil
}

// DeleteMember removes member from image imageID. check, if not nil, sees
// the image and the membership in the same transaction and may refuse
// with an error, returned as is.
func (s *Store) DeleteMember(ctx context.Context, imageID, member string, check func(*Image, *Member) error) error {
	var img *Image
	var m *Member
	rev, err := s.kv.Update(ctx, func(tx kv.Txn) error {
		var err error
		if img, err = getImage(tx, imageID); err != nil {
			return err
		}
		if m, err = getMember(tx, imageID, member); err != nil {
			return err
		}
		if check != nil {
			if err := check(img, m); err != nil {
				return err
			}
		}
		members, err := listMembers(tx, imageID)
		if err != nil {
			return err
		}
		if err := countMembers(tx, imageID, len(members)-1); err != nil {
			return err
		}
		if err := touchImage(tx, imageID); err != nil {
			return err
		}
		return deleteMember(tx, m)
	})
	if err != nil {
		return fmt.Errorf("delete member %s of image %s: %w", member, imageID, err)
	}
	s.await(ctx, rev)
	return nil
}

// SharedWith returns the images that project member is a member of, each
// with its membership status.
func (s *Store) SharedWith(member string) (map[string]string, error) {
	shared := map[string]string{}
	if !ValidMemberID(member) {
		return shared, nil
	}
	prefix := sharedPrefix(member)
	err := s.kv.View(context.Background(), func(tx kv.Txn) error {
		return tx.Scan(prefix, func(k, v []byte) error {
			shared[string(k[len(prefix):])] = string(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("images shared with %s: %w", member, err)
	}
	return shared, nil
}

func (m *Member) clone() *Member {
	c := *m
	return &c
}

func getMember(tx kv.Txn, imageID, member string) (*Member, error) {
	if !ValidMemberID(member) {
		return nil, ErrNoMember
	}
	v, err := tx.Get(memberKey(imageID, member))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, ErrNoMember
	}
	if err != nil {
		return nil, err
	}
	return decodeMember(v)
}

func listMembers(tx kv.Txn, imageID string) ([]*Member, error) {
	var members []*Member
	err := tx.Scan(memberPrefix(imageID), func(_, v []byte) error {
		m, err := decodeMember(v)
		if err != nil {
			return err
		}
		members = append(members, m)
		return nil
	})
	return members, err
}

func decodeMember(v []byte) (*Member, error) {
	var m Member
	if err := json.Unmarshal(v, &m); err != nil {
		return nil, fmt.Errorf("decode member record: %w", err)
	}
	return &m, nil
}

// putMember writes m and its index entry, whose value is the status.
func putMember(tx kv.Txn, m *Member) error {
	v, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := tx.Set(memberKey(m.ImageID, m.MemberID), v); err != nil {
		return err
	}
	return tx.Set(sharedKey(m.MemberID, m.ImageID), []byte(m.Status))
}

func deleteMember(tx kv.Txn, m *Member) error {
	if err := tx.Delete(memberKey(m.ImageID, m.MemberID)); err != nil {
		return err
	}
	return tx.Delete(sharedKey(m.MemberID, m.ImageID))
}

// deleteMembers removes every member of image imageID (the image is being
// deleted in the same transaction).
// membersPerTxn bounds the members one transaction removes: each is two
// keys (the record and its M/ index entry), and a transaction writes at
// most kv.MaxTxnOps keys, the image's own among them.
const membersPerTxn = (kv.MaxTxnOps - 16) / 2

// deleteMembers removes up to membersPerTxn of the image's members and
// reports whether more are left (for sweepMembers, after the image is
// gone: a member of a missing image sees nothing).
func deleteMembers(tx kv.Txn, imageID string) (more bool, err error) {
	members, err := listMembers(tx, imageID)
	if err != nil {
		return false, err
	}
	if len(members) > membersPerTxn {
		members, more = members[:membersPerTxn], true
	}
	for _, m := range members {
		if err := deleteMember(tx, m); err != nil {
			return false, err
		}
	}
	if more {
		return true, nil
	}
	return false, tx.Delete(memberCountKey(imageID))
}

// sweepMembers removes what members a deleted image has left, a
// transaction at a time, stopping if an image of that id exists again
// (Create refuses the id until the sweep is done).
func (s *Store) sweepMembers(ctx context.Context, imageID string) error {
	for more := true; more; {
		_, err := s.kv.Update(commitContext(ctx), func(tx kv.Txn) error {
			if _, err := tx.Get(imageKey(imageID)); err == nil {
				more = false
				return nil
			} else if !errors.Is(err, kv.ErrNotFound) {
				return err
			}
			var err error
			more, err = deleteMembers(tx, imageID)
			return err
		})
		if err != nil {
			return fmt.Errorf("remove the members of deleted image %s: %w", imageID, err)
		}
	}
	return nil
}

// hasMembers reports whether the image id has member records (a deleted
// image's, not yet swept).
func hasMembers(tx kv.Txn, imageID string) (bool, error) {
	found := false
	err := tx.Scan(memberPrefix(imageID), func(_, _ []byte) error {
		found = true
		return errStopScan
	})
	if errors.Is(err, errStopScan) {
		err = nil
	}
	return found, err
}

var (
	errStopScan    = errors.New("stop scan")
	errMembersLeft = errors.New("a deleted image's members are left")
)

// countMembers reads the image's member count and writes n in its place:
// two transactions changing the same image's members conflict on it.
func countMembers(tx kv.Txn, imageID string, n int) error {
	if _, err := tx.Get(memberCountKey(imageID)); err != nil && !errors.Is(err, kv.ErrNotFound) {
		return err
	}
	if n <= 0 {
		return tx.Delete(memberCountKey(imageID))
	}
	return tx.Set(memberCountKey(imageID), []byte(strconv.Itoa(n)))
}

// touchImage writes image id's record again, unchanged, in a member
// change's transaction: the change feed follows the image records only,
// so this is what tells every daemon's mount (and this one's) that who
// sees the image changed.
func touchImage(tx kv.Txn, id string) error {
	raw, err := tx.Get(imageKey(id))
	if err != nil {
		return err
	}
	return tx.Set(imageKey(id), raw)
}
