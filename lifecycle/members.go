package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"unicode/utf8"

	"github.com/glimpse-project/glimpse/lifecycle/policy"
	"github.com/glimpse-project/glimpse/meta"
)

// Image sharing, as Glance 25 (Zed) does it with its default configuration
// (enforce_new_defaults off, so each member rule is its new default or'ed
// with the deprecated "rule:default", and the ownership checks of
// glance/api/v2/image_members.py decide): an image whose visibility is
// "shared" can have members, projects that may then see and download it;
// a member's image is listed for it once it accepted the image. Only the
// owner (or an admin) adds and removes members; only the member (or an
// admin) changes a membership's status, never the owner.

// DefaultMemberLimit is Glance's image_member_quota: the most members one
// image may have.
const DefaultMemberLimit = 128

// maxMemberID is the length of Glance's image_members.member column.
const maxMemberID = 255

// Members is the sharing of images with other projects. It is safe for
// concurrent use.
type Members struct {
	svc *Service
	// limit is the most members an image may have; negative: no limit.
	limit int
}

// Members returns the image sharing of s's catalogue.
func (s *Service) Members() *Members { return &Members{svc: s, limit: s.memberLimit} }

// refusal is an error whose text is Glance's message for it, classified by
// one of the lifecycle's errors for the faces to map.
type refusal struct {
	kind error
	msg  string
}

func (r *refusal) Error() string { return r.msg }
func (r *refusal) Unwrap() error { return r.kind }

func refuse(kind error, format string, args ...any) error {
	return &refusal{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// refusalIn returns the refusal that err wraps, without the registry's
// context around it (the caller gets Glance's message as it is), or err.
func refusalIn(err error) error {
	var r *refusal
	if errors.As(err, &r) {
		return r
	}
	return err
}

// The rules: each is one of Glance's member policy rules, asked of the
// policy Enforcer, together with the ownership checks Glance's members
// controller makes whatever the policy says (glance/api/v2/image_members.py).
// status is the caller's membership of the image ("" when it has none).

// memberTarget is img as the target of a member rule: member_id is the
// membership's project when the rule is about one member.
func memberTarget(p Principal, img *meta.Image, memberID string) policy.Target {
	t := ImageTarget(p, img)
	if memberID != "" {
		t["member_id"] = memberID
	}
	return t
}

// addMember is add_member (by default admins, or the owning project's
// members; readers change nothing).
func (m *Members) addMember(p Principal, img *meta.Image) bool {
	return m.svc.auth.Allowed(p, policy.AddMember, memberTarget(p, img, ""))
}

// getMembers is get_members, for whoever sees the shared image (admins,
// the owning project, its members).
func (m *Members) getMembers(p Principal, img *meta.Image, status string) bool {
	owns := m.svc.auth.IsAdmin(p) || img.Owner == p.Project || status != ""
	return owns && m.svc.auth.Allowed(p, policy.GetMembers, memberTarget(p, img, ""))
}

// getMember is get_member, applied to each membership: admins and the
// owning project see every member, a member project only its own.
func (m *Members) getMember(p Principal, img *meta.Image, mem *meta.Member) bool {
	owns := m.svc.auth.IsAdmin(p) || img.Owner == p.Project || mem.MemberID == p.Project
	return owns && m.svc.auth.Allowed(p, policy.GetMember, memberTarget(p, img, mem.MemberID))
}

// modifyMember is modify_member: admins, or the member project itself,
// never the owner (not even when it made itself a member), and not its
// readers.
func (m *Members) modifyMember(p Principal, img *meta.Image, mem *meta.Member) bool {
	if !m.svc.auth.IsAdmin(p) && (img.Owner == p.Project || mem.MemberID != p.Project) {
		return false
	}
	return m.svc.auth.Allowed(p, policy.ModifyMember, memberTarget(p, img, mem.MemberID))
}

// deleteMember is delete_member: admins, or the owning project's members.
func (m *Members) deleteMember(p Principal, img *meta.Image, mem *meta.Member) bool {
	return m.svc.auth.Allowed(p, policy.DeleteMember, memberTarget(p, img, mem.MemberID))
}

// Add shares image id with project member (pending until it accepts).
func (m *Members) Add(ctx context.Context, p Principal, id, member string) (*meta.Member, error) {
	img, err := m.svc.store.Get(id)
	if err != nil || !m.svc.sees(p, img) {
		return nil, imageNotFound(id, err)
	}
	if !meta.ValidMemberID(member) {
		return nil, validMemberID(member) // the registry cannot even look it up
	}
	forbidden := refuse(ErrForbidden, "Not allowed to create members for image %s.", id)
	added, err := m.svc.store.AddMember(ctx, id, member, func(img *meta.Image, members []*meta.Member) error {
		if img.Visibility != "shared" || !m.addMember(p, img) {
			return forbidden
		}
		if m.limit >= 0 && len(members)+1 > m.limit {
			return refuse(ErrOverQuota, "Image member limit exceeded for image %s: The limit has been exceeded on the number of allowed image members for this image. Attempted: %d, Maximum: %d:", id, len(members)+1, m.limit)
		}
		if slices.ContainsFunc(members, func(o *meta.Member) bool { return o.MemberID == member }) {
			return refuse(ErrMemberExists, "Member %s is duplicated for image %s", member, id)
		}
		return validMemberID(member)
	})
	if errors.Is(err, meta.ErrNotFound) {
		return nil, imageNotFound(id, err)
	}
	return added, refusalIn(err)
}

// validMemberID refuses the member ids Glance's database refuses (4-byte
// characters, more than its column holds) and those the registry's keys
// cannot hold (NUL).
func validMemberID(member string) error {
	switch {
	case member == "":
		return refuse(ErrInvalid, "Member can't be empty")
	case !utf8.ValidString(member):
		return refuse(ErrInvalid, "Member is not valid UTF-8.")
	case hasFourByte(member):
		return refuse(ErrInvalid, "Member can't contain 4 byte unicode characters.")
	case utf8.RuneCountInString(member) > maxMemberID:
		return refuse(ErrInvalid, "Member is longer than %d characters.", maxMemberID)
	case !meta.ValidMemberID(member):
		return refuse(ErrInvalid, "Member can't contain NUL characters.")
	}
	return nil
}

func hasFourByte(s string) bool {
	for _, r := range s {
		if utf8.RuneLen(r) == 4 {
			return true
		}
	}
	return false
}

// List returns the members of image id that p may see: all of them for
// admins and the owner, its own membership for a member project.
func (m *Members) List(ctx context.Context, p Principal, id string) ([]*meta.Member, error) {
	img, members, err := m.svc.store.Members(id)
	if err != nil || !m.svc.sees(p, img) {
		return nil, imageNotFound(id, err)
	}
	if img.Visibility != "shared" {
		return nil, refuse(ErrForbidden, "Not allowed to list members for image %s: Only shared images have members.", id)
	}
	if !m.getMembers(p, img, m.svc.memberStatus(p, img)) {
		return nil, refuse(ErrForbidden, "Not allowed to list members for image %s.", id)
	}
	var out []*meta.Member
	for _, mem := range members {
		if m.getMember(p, img, mem) {
			out = append(out, mem)
		}
	}
	// In the order they were added, as Glance's database returns them.
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

// Get returns the membership of project member in image id. Glance answers
// "not found" wherever it refuses here, so as not to tell what exists.
func (m *Members) Get(ctx context.Context, p Principal, id, member string) (*meta.Member, error) {
	img, mem, err := m.svc.store.Member(id, member)
	if img == nil || !m.svc.sees(p, img) {
		return nil, imageNotFound(id, err)
	}
	if img.Visibility != "shared" {
		return nil, refuse(ErrNotFound, "Only shared images have members.")
	}
	if err != nil || !m.getMember(p, img, mem) {
		return nil, memberNotFound(id, member, err)
	}
	return mem, nil
}

// SetStatus changes the status of project member's membership of image id
// to status (pending, accepted or rejected).
func (m *Members) SetStatus(ctx context.Context, p Principal, id, member, status string) (*meta.Member, error) {
	img, err := m.svc.store.Get(id)
	if err != nil || !m.svc.sees(p, img) {
		return nil, imageNotFound(id, err)
	}
	forbidden := refuse(ErrForbidden, "Not allowed to update members for image %s.", id)
	updated, err := m.svc.store.UpdateMember(ctx, id, member, func(img *meta.Image, mem *meta.Member) error {
		switch {
		case img.Visibility != "shared", !m.svc.auth.IsAdmin(p) && img.Owner == p.Project:
			return forbidden
		case !m.getMember(p, img, mem):
			return refuse(meta.ErrNoMember, "%s not found in the member list of the image %s.", member, id)
		case !m.modifyMember(p, img, mem):
			return forbidden
		case !slices.Contains(meta.MemberStatuses, status):
			return refuse(ErrInvalid, `Incorrect request: Status must be "pending", "accepted" or "rejected".`)
		}
		mem.Status = status
		return nil
	})
	switch {
	case errors.Is(err, meta.ErrNotFound):
		return nil, imageNotFound(id, err)
	case errors.Is(err, meta.ErrNoMember):
		// Glance checks visibility and ownership before it looks the
		// member up.
		if img.Visibility != "shared" || !m.svc.auth.IsAdmin(p) && img.Owner == p.Project {
			return nil, forbidden
		}
		return nil, memberNotFound(id, member, err)
	}
	return updated, refusalIn(err)
}

// Remove stops sharing image id with project member.
func (m *Members) Remove(ctx context.Context, p Principal, id, member string) error {
	img, err := m.svc.store.Get(id)
	if err != nil || !m.svc.sees(p, img) {
		return imageNotFound(id, err)
	}
	forbidden := refuse(ErrForbidden, "Not allowed to delete members for image %s.", id)
	if img.Visibility != "shared" || !m.svc.auth.IsAdmin(p) && img.Owner != p.Project {
		return forbidden // before the member is looked up, as Glance
	}
	err = m.svc.store.DeleteMember(ctx, id, member, func(img *meta.Image, mem *meta.Member) error {
		switch {
		case img.Visibility != "shared":
			return forbidden
		case !m.getMember(p, img, mem):
			return refuse(meta.ErrNoMember, "%s not found in the member list of the image %s.", member, id)
		case !m.deleteMember(p, img, mem):
			return forbidden
		}
		return nil
	})
	switch {
	case errors.Is(err, meta.ErrNotFound):
		return imageNotFound(id, err)
	case errors.Is(err, meta.ErrNoMember):
		return memberNotFound(id, member, err)
	}
	return refusalIn(err)
}

func imageNotFound(id string, err error) error {
	if err != nil && !errors.Is(err, meta.ErrNotFound) {
		return err
	}
	return refuse(ErrNotFound, "Image %s not found.", id)
}

func memberNotFound(id, member string, err error) error {
	if err != nil && !errors.Is(err, meta.ErrNoMember) {
		return err
	}
	return refuse(ErrNoMember, "%s not found in the member list of the image %s.", member, id)
}

// memberStatus is p's membership status of img: "" unless img is shared
// and p's project is one of its members. Admins and the owner need none.
func (s *Service) memberStatus(p Principal, img *meta.Image) string {
	if img.Visibility != "shared" || img.Owner == p.Project {
		return ""
	}
	_, mem, err := s.store.Member(img.ID, p.Project)
	if err != nil {
		if !errors.Is(err, meta.ErrNoMember) && !errors.Is(err, meta.ErrNotFound) {
			s.log.Warn("reading a membership; the image stays hidden", "image", img.ID, "project", p.Project, "err", err)
		}
		return ""
	}
	return mem.Status
}

// sees is Glance's is_image_visible: what the Authorizer lets p see, or,
// for a member of the shared image in any status (a pending member can
// show and download it), what get_image lets a member see.
func (s *Service) sees(p Principal, img *meta.Image) bool {
	return s.auth.CanSee(p, img) || s.seesAsMember(p, img)
}

// seesAsMember: p is a member of shared img and get_image allows members.
func (s *Service) seesAsMember(p Principal, img *meta.Image) bool {
	return s.memberStatus(p, img) != "" && s.auth.Allowed(p, policy.GetImage, ImageTarget(p, img))
}

// listing decides what p's image listings include: what p sees without
// membership, and the shared images p is a member of whose membership
// status is memberStatus ("accepted" by default, as Glance's image list;
// "all" for any).
type listing struct {
	v      *viewer
	shared map[string]string // image id -> p's membership status; nil for admins
	status string
}

func (s *Service) listing(p Principal, memberStatus string) (listing, error) {
	l := listing{v: s.auth.viewer(p), status: memberStatus}
	if l.status == "" {
		l.status = meta.MemberAccepted
	}
	if l.v.creds.IsAdmin {
		return l, nil
	}
	var err error
	l.shared, err = s.store.SharedWith(p.Project)
	return l, err
}

func (l listing) includes(img *meta.Image) bool {
	if l.v.sees(img) {
		return true
	}
	st, ok := l.shared[img.ID]
	return ok && img.Visibility == "shared" && (l.status == "all" || st == l.status) &&
		l.v.a.enforcer.Allowed(policy.GetImage, l.v.creds, ImageTarget(l.v.p, img))
}
