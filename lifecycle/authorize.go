package lifecycle

import (
	"fmt"
	"slices"
	"strings"

	"github.com/glimpse-project/glimpse/lifecycle/policy"
	"github.com/glimpse-project/glimpse/meta"
)

// Authorizer decides who may do what, by Glance's rule names, through the
// policy Enforcer: it turns a Principal into policy credentials and an
// image into a policy target. The lifecycle asks it before every change;
// the members and metadefs APIs ask it with their own rules and targets.
type Authorizer struct {
	enforcer *policy.Enforcer
	// getImageIsDefault: get_image is Glance's default, which lets admins
	// see every image, so an admin's listing needs no check per image.
	getImageIsDefault bool
}

// NewAuthorizer returns an Authorizer on e (nil: Glance's defaults).
func NewAuthorizer(e *policy.Enforcer) *Authorizer {
	if e == nil {
		e = policy.NewDefault()
	}
	return &Authorizer{enforcer: e, getImageIsDefault: !slices.Contains(e.Overridden(), policy.GetImage)}
}

// Enforcer is the policy the Authorizer enforces.
func (a *Authorizer) Enforcer() *policy.Enforcer { return a.enforcer }

// Credentials are p's policy credentials. Roles carry the roles they imply
// in Keystone's default hierarchy (admin implies member, member implies
// reader), as Keystone's tokens list them, so that a token file saying
// "member" can read what it owns. A Principal without roles (no
// authentication, the mount, tools) holds the roles its Admin and ReadOnly
// flags describe.
func (a *Authorizer) Credentials(p Principal) policy.Creds {
	roles := slices.Clone(p.Roles)
	if len(roles) == 0 {
		switch {
		case p.Admin:
			roles = []string{"admin"}
		case !p.ReadOnly:
			roles = []string{"member"}
		default:
			roles = []string{"reader"}
		}
	}
	for _, r := range []struct{ role, implies string }{{"admin", "member"}, {"member", "reader"}} {
		if hasRole(roles, r.role) && !hasRole(roles, r.implies) {
			roles = append(roles, r.implies)
		}
	}
	return a.enforcer.Credentials(p.Project, p.User, roles)
}

func hasRole(roles []string, role string) bool {
	return slices.ContainsFunc(roles, func(r string) bool { return strings.EqualFold(r, role) })
}

// IsAdmin reports whether p is an admin as the rule context_is_admin
// decides (Glance's request context is_admin): admins see every image and
// download deactivated ones.
func (a *Authorizer) IsAdmin(p Principal) bool { return a.Credentials(p).IsAdmin }

// Allowed reports whether rule lets p act on target.
func (a *Authorizer) Allowed(p Principal, rule string, target policy.Target) bool {
	return a.enforcer.Allowed(rule, a.Credentials(p), target)
}

// Authorize is Allowed as an error: ErrForbidden with Glance's message.
func (a *Authorizer) Authorize(p Principal, rule string, target policy.Target) error {
	if a.Allowed(p, rule, target) {
		return nil
	}
	return Forbidden(rule)
}

// Forbidden is the error of a rule that did not allow, in Glance's words.
func Forbidden(rule string) error {
	return fmt.Errorf("%w: You are not authorized to complete %s action.", ErrForbidden, rule)
}

// ImageTarget is img as the target of p's request, as Glance's image
// target shows it to the rules: project_id is the owner; member_id is p's
// project when img is shared and p is not its owner (the registry found
// it because p is a member); booleans read True and False; custom
// properties are there by their keys.
func ImageTarget(p Principal, img *meta.Image) policy.Target {
	t := make(policy.Target, 16+len(img.Properties))
	for k, v := range img.Properties {
		t[k] = v
	}
	t["id"] = img.ID
	t["name"] = img.Name
	t["status"] = string(img.Status)
	t["visibility"] = img.Visibility
	t["protected"] = policy.Bool(img.Protected)
	t["os_hidden"] = policy.Bool(img.OSHidden)
	t["owner"] = img.Owner
	t["project_id"] = img.Owner
	t["min_disk"] = policy.Int(img.MinDisk)
	t["min_ram"] = policy.Int(img.MinRAM)
	if img.DiskFormat != "" {
		t["disk_format"] = img.DiskFormat
	}
	if img.ContainerFormat != "" {
		t["container_format"] = img.ContainerFormat
	}
	if img.Visibility == "shared" && img.Owner != p.Project {
		t["member_id"] = p.Project
	}
	return t
}

// newImageTarget is the target of a create: the image as proposed, with
// its owner (Glance's target for an image not yet created).
func newImageTarget(owner, visibility string) policy.Target {
	return policy.Target{"project_id": owner, "owner": owner, "visibility": visibility}
}

// inRegistry reports whether p finds img in the registry at all, before
// any rule: admins find every image, others their own project's and public
// or community ones. (Glance's database layer decides this; its get_image
// rule then decides on what was found. Private images of other projects
// are not found.)
func (a *Authorizer) inRegistry(p Principal, admin bool, img *meta.Image) bool {
	return admin || img.Owner == p.Project || img.Visibility == "public" || img.Visibility == "community"
}

// CanSee reports whether p may see img: the registry finds it for p and
// get_image allows.
func (a *Authorizer) CanSee(p Principal, img *meta.Image) bool {
	c := a.Credentials(p)
	return a.inRegistry(p, c.IsAdmin, img) && a.enforcer.Allowed(policy.GetImage, c, ImageTarget(p, img))
}

// viewer is CanSee for many images by one caller, with its credentials
// worked out once.
type viewer struct {
	a        *Authorizer
	p        Principal
	creds    policy.Creds
	seesAll  bool // an admin under the default get_image: no check per image
	listable error
}

func (a *Authorizer) viewer(p Principal) *viewer {
	c := a.Credentials(p)
	v := &viewer{a: a, p: p, creds: c, seesAll: c.IsAdmin && a.getImageIsDefault}
	if !a.enforcer.Allowed(policy.GetImages, c, policy.Target{"project_id": p.Project}) {
		v.listable = Forbidden(policy.GetImages)
	}
	return v
}

func (v *viewer) sees(img *meta.Image) bool {
	if v.seesAll {
		return true
	}
	return v.a.inRegistry(v.p, v.creds.IsAdmin, img) && v.a.enforcer.Allowed(policy.GetImage, v.creds, ImageTarget(v.p, img))
}

// CanSeeLocations reports whether p may see where img's content is
// (get_image_location: admins and the owner's project by default). Others,
// who may see a public image, do not learn where its bytes live.
func (a *Authorizer) CanSeeLocations(p Principal, img *meta.Image) bool {
	return a.Allowed(p, policy.GetImageLocation, ImageTarget(p, img))
}

// mayDo says whether p, who sees img, may do to it what rule governs.
func (a *Authorizer) mayDo(p Principal, rule string, img *meta.Image) error {
	if err := a.Authorize(p, rule, ImageTarget(p, img)); err != nil {
		return fmt.Errorf("image %s: %w", img.ID, err)
	}
	return nil
}

// grants answers the rules that a property change consults (publicize,
// communitize) for one caller and image.
type grants func(rule string) bool

func (a *Authorizer) grants(p Principal, target policy.Target) grants {
	c := a.Credentials(p)
	return func(rule string) bool { return a.enforcer.Allowed(rule, c, target) }
}

// setOwner applies a change of owner (Glance: only admins, "Owner can't be
// updated by non admin."). The owner cannot be removed.
func setOwner(img *meta.Image, op Op, admin bool) error {
	switch {
	case op.Op == "remove":
		return fmt.Errorf("%w: owner cannot be removed", ErrReadOnly)
	case !admin:
		return fmt.Errorf("%w: Owner can't be updated by non admin.", ErrForbidden)
	}
	owner, err := ownerValue(op.Value)
	if err != nil {
		return err
	}
	img.Owner = owner
	return nil
}

// ownerValue checks an owner: a project id, 1 to 255 characters (Glance's
// schema allows null and empty; glimpse keeps every image owned).
func ownerValue(v any) (string, error) {
	s, ok := v.(string)
	if !ok || s == "" {
		return "", fmt.Errorf("%w: owner must be a project id", ErrInvalid)
	}
	if err := ValidName(s); err != nil {
		return "", fmt.Errorf("%w: owner is at most %d characters", ErrInvalid, MaxNameLength)
	}
	return s, nil
}
