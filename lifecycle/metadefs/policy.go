package metadefs

import "github.com/glimpse-project/glimpse/lifecycle"

// Who may do what. Each function is one of Glance's policy rules
// (glance/policies/metadef.py), named after it, deciding as its Glance 25
// default does: reads for whoever can see the namespace (an admin, the
// owning project, anyone for a public one), writes for admins only
// ("rule:metadef_admin"). Every decision goes through exactly one of them,
// so that a policy engine can take their place rule by rule.

// canSeeNamespace is Glance's ADMIN_OR_PROJECT_READER_GET_NAMESPACE check
// string, which every read rule below uses. Every authenticated caller has
// the reader role (member and admin imply it).
func canSeeNamespace(p lifecycle.Principal, ns *Namespace) bool {
	return p.Admin || ns.Visibility == "public" || (p.Project != "" && p.Project == ns.Owner)
}

func metadefAdmin(p lifecycle.Principal) error {
	if p.Admin {
		return nil
	}
	return refuse(lifecycle.ErrForbidden, "You are not authorized to complete this action.")
}

// get_metadef_namespace: see one namespace (and, in a list, each one).
func getMetadefNamespace(p lifecycle.Principal, ns *Namespace) bool { return canSeeNamespace(p, ns) }

// get_metadef_namespaces: list namespaces at all (admin or project reader).
func getMetadefNamespaces(p lifecycle.Principal) error { return nil }

func addMetadefNamespace(p lifecycle.Principal) error { return metadefAdmin(p) }

func modifyMetadefNamespace(p lifecycle.Principal, ns *Namespace) error { return metadefAdmin(p) }

func deleteMetadefNamespace(p lifecycle.Principal, ns *Namespace) error { return metadefAdmin(p) }

func getMetadefObject(p lifecycle.Principal, ns *Namespace) bool { return canSeeNamespace(p, ns) }

func getMetadefObjects(p lifecycle.Principal, ns *Namespace) bool { return canSeeNamespace(p, ns) }

func addMetadefObject(p lifecycle.Principal, ns *Namespace) error { return metadefAdmin(p) }

func modifyMetadefObject(p lifecycle.Principal, ns *Namespace) error { return metadefAdmin(p) }

func deleteMetadefObject(p lifecycle.Principal, ns *Namespace) error { return metadefAdmin(p) }

func getMetadefProperty(p lifecycle.Principal, ns *Namespace) bool { return canSeeNamespace(p, ns) }

func getMetadefProperties(p lifecycle.Principal, ns *Namespace) bool { return canSeeNamespace(p, ns) }

func addMetadefProperty(p lifecycle.Principal, ns *Namespace) error { return metadefAdmin(p) }

func modifyMetadefProperty(p lifecycle.Principal, ns *Namespace) error { return metadefAdmin(p) }

func removeMetadefProperty(p lifecycle.Principal, ns *Namespace) error { return metadefAdmin(p) }

func getMetadefTag(p lifecycle.Principal, ns *Namespace) bool { return canSeeNamespace(p, ns) }

func getMetadefTags(p lifecycle.Principal, ns *Namespace) bool { return canSeeNamespace(p, ns) }

func addMetadefTag(p lifecycle.Principal, ns *Namespace) error { return metadefAdmin(p) }

func addMetadefTags(p lifecycle.Principal, ns *Namespace) error { return metadefAdmin(p) }

func modifyMetadefTag(p lifecycle.Principal, ns *Namespace) error { return metadefAdmin(p) }

func deleteMetadefTag(p lifecycle.Principal, ns *Namespace) error { return metadefAdmin(p) }

func deleteMetadefTags(p lifecycle.Principal, ns *Namespace) error { return metadefAdmin(p) }

// list_metadef_resource_types: list resource types, or a namespace's
// associations (ns nil for the former).
func listMetadefResourceTypes(p lifecycle.Principal, ns *Namespace) bool {
	return ns == nil || canSeeNamespace(p, ns)
}

func getMetadefResourceType(p lifecycle.Principal, ns *Namespace) bool { return canSeeNamespace(p, ns) }

func addMetadefResourceTypeAssociation(p lifecycle.Principal, ns *Namespace) error {
	return metadefAdmin(p)
}

func removeMetadefResourceTypeAssociation(p lifecycle.Principal, ns *Namespace) error {
	return metadefAdmin(p)
}
