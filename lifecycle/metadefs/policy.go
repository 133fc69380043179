package metadefs

import (
	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/policy"
)

// Who may do what: every decision is one of Glance's metadef rules
// (glance/policies/metadef.py), asked of the daemon's policy Enforcer, so
// that Glance's defaults and an operator's --policy-file decide here as
// they do for images.

// namespaceTarget is the policy target of a request on ns, as Glance's
// MetadefAPIPolicy builds it: the namespace's owner and visibility, or,
// with no namespace (listing, creating), the caller's own project.
func namespaceTarget(p lifecycle.Principal, ns *Namespace) policy.Target {
	if ns == nil {
		return policy.Target{"project_id": p.Project}
	}
	return policy.Target{"project_id": ns.Owner, "visibility": ns.Visibility}
}

// allowed reports whether rule lets p act on ns (nil: no namespace yet).
func (s *Service) allowed(p lifecycle.Principal, rule string, ns *Namespace) bool {
	return s.auth.Allowed(p, rule, namespaceTarget(p, ns))
}

// authorize is allowed as an error, in Glance's words.
func (s *Service) authorize(p lifecycle.Principal, rule string, ns *Namespace) error {
	if s.allowed(p, rule, ns) {
		return nil
	}
	return refuse(lifecycle.ErrForbidden, "You are not authorized to complete %s action.", rule)
}
