package policy

// The names of Glance's rules (glance/policies/*.py). Callers name rules
// by these constants, so a typo is a compile error rather than a rule that
// never allows.
const (
	// Base rules, referenced by the others.
	Default        = "default"
	ContextIsAdmin = "context_is_admin"
	ServiceAPI     = "service_api"

	// Images.
	AddImage          = "add_image"
	DeleteImage       = "delete_image"
	GetImage          = "get_image"
	GetImages         = "get_images"
	ModifyImage       = "modify_image"
	PublicizeImage    = "publicize_image"
	CommunitizeImage  = "communitize_image"
	DownloadImage     = "download_image"
	DownloadFromStore = "download_from_store"
	UploadImage       = "upload_image"
	Deactivate        = "deactivate"
	Reactivate        = "reactivate"
	CopyImage         = "copy_image"

	// Image locations.
	DeleteImageLocation = "delete_image_location"
	GetImageLocation    = "get_image_location"
	SetImageLocation    = "set_image_location"
	AddImageLocation    = "add_image_location"
	FetchImageLocation  = "fetch_image_location"

	// Image members.
	AddMember    = "add_member"
	DeleteMember = "delete_member"
	GetMember    = "get_member"
	GetMembers   = "get_members"
	ModifyMember = "modify_member"

	// Cache.
	ManageImageCache = "manage_image_cache"
	ListCachedNodes  = "list_cached_nodes"
	CacheImage       = "cache_image"
	CacheList        = "cache_list"
	CacheDelete      = "cache_delete"
	CacheClean       = "cache_clean"
	CachePrune       = "cache_prune"

	// Tasks.
	GetTask        = "get_task"
	GetTasks       = "get_tasks"
	AddTask        = "add_task"
	ModifyTask     = "modify_task"
	TasksAPIAccess = "tasks_api_access"

	// Metadata definitions.
	MetadefDefault                       = "metadef_default"
	MetadefAdmin                         = "metadef_admin"
	GetMetadefNamespace                  = "get_metadef_namespace"
	GetMetadefNamespaces                 = "get_metadef_namespaces"
	ModifyMetadefNamespace               = "modify_metadef_namespace"
	AddMetadefNamespace                  = "add_metadef_namespace"
	DeleteMetadefNamespace               = "delete_metadef_namespace"
	GetMetadefObject                     = "get_metadef_object"
	GetMetadefObjects                    = "get_metadef_objects"
	ModifyMetadefObject                  = "modify_metadef_object"
	AddMetadefObject                     = "add_metadef_object"
	DeleteMetadefObject                  = "delete_metadef_object"
	ListMetadefResourceTypes             = "list_metadef_resource_types"
	GetMetadefResourceType               = "get_metadef_resource_type"
	AddMetadefResourceTypeAssociation    = "add_metadef_resource_type_association"
	RemoveMetadefResourceTypeAssociation = "remove_metadef_resource_type_association"
	GetMetadefProperty                   = "get_metadef_property"
	GetMetadefProperties                 = "get_metadef_properties"
	ModifyMetadefProperty                = "modify_metadef_property"
	AddMetadefProperty                   = "add_metadef_property"
	RemoveMetadefProperty                = "remove_metadef_property"
	GetMetadefTag                        = "get_metadef_tag"
	GetMetadefTags                       = "get_metadef_tags"
	ModifyMetadefTag                     = "modify_metadef_tag"
	AddMetadefTag                        = "add_metadef_tag"
	AddMetadefTags                       = "add_metadef_tags"
	DeleteMetadefTag                     = "delete_metadef_tag"
	DeleteMetadefTags                    = "delete_metadef_tags"

	// Stores.
	StoresInfoDetail = "stores_info_detail"
)

// The building blocks of Glance's default check strings
// (glance/policies/base.py), composed the same way so that each default
// reads as Glance's generated sample policy shows it.
const (
	projectMember   = "role:member and project_id:%(project_id)s"
	projectReader   = "role:reader and project_id:%(project_id)s"
	imageMember     = "project_id:%(member_id)s"
	communityImage  = "'community':%(visibility)s"
	publicImage     = "'public':%(visibility)s"
	sharedImage     = "'shared':%(visibility)s"
	consumerOfImage = "(project_id:%(project_id)s or " + imageMember + " or " + communityImage + " or " + publicImage + " or " + sharedImage + ")"

	admin                       = "rule:context_is_admin"
	ruleDefault                 = "rule:default"
	service                     = "rule:service_api"
	adminOrProjectMember        = admin + " or (" + projectMember + ")"
	adminOrProjectReader        = admin + " or (" + projectReader + ")"
	adminOrReaderGetImage       = admin + " or (role:reader and " + consumerOfImage + ")"
	adminOrMemberDownloadImage  = admin + " or (role:member and " + consumerOfImage + ")"
	adminOrMemberCreateImage    = admin + " or (" + projectMember + " and project_id:%(owner)s)"
	adminOrReaderGetNamespace   = admin + " or (role:reader and (project_id:%(project_id)s or " + publicImage + "))"
	adminOrSharedMember         = admin + " or (role:member and " + imageMember + ")"
	adminOrReaderOrSharedMember = admin + " or role:reader and (project_id:%(project_id)s or " + imageMember + ")"
	serviceOrProjectMember      = service + " or (" + projectMember + " and project_id:%(owner)s)"
	adminOrService              = admin + " or " + service
	metadefAdmin                = "rule:metadef_admin"
)

// Rule is one named rule and its check string.
type Rule struct {
	Name  string
	Check string
	// Family groups rules as Glance's policy modules do: base, images,
	// locations, members, cache, tasks, metadefs, stores.
	Family string
}

// Defaults are Glance's in-code default rules, the "new defaults" of
// secure RBAC (reader, member, admin; Glance 25 with enforce_new_defaults,
// plus the rules later releases added, which a policy file written for
// either may name). Glance's deprecated check strings (rule:default, which
// allows everyone) are not honoured: they are what the new defaults
// replace.
var Defaults = []Rule{
	{Default, "", "base"},
	{ContextIsAdmin, "role:admin", "base"},
	{ServiceAPI, "role:service or role:admin", "base"},

	{AddImage, adminOrMemberCreateImage, "images"},
	{DeleteImage, adminOrProjectMember, "images"},
	{GetImage, adminOrReaderGetImage, "images"},
	{GetImages, adminOrProjectReader, "images"},
	{ModifyImage, adminOrProjectMember, "images"},
	{PublicizeImage, admin, "images"},
	{CommunitizeImage, adminOrProjectMember, "images"},
	{DownloadImage, adminOrMemberDownloadImage, "images"},
	{DownloadFromStore, adminOrMemberDownloadImage, "images"},
	{UploadImage, adminOrProjectMember, "images"},
	{Deactivate, adminOrProjectMember, "images"},
	{Reactivate, adminOrProjectMember, "images"},
	{CopyImage, admin, "images"},

	{DeleteImageLocation, admin, "locations"},
	{GetImageLocation, adminOrProjectReader, "locations"},
	{SetImageLocation, adminOrProjectMember, "locations"},
	{AddImageLocation, serviceOrProjectMember, "locations"},
	{FetchImageLocation, service, "locations"},

	{AddMember, adminOrProjectMember, "members"},
	{DeleteMember, adminOrProjectMember, "members"},
	{GetMember, adminOrReaderOrSharedMember, "members"},
	{GetMembers, adminOrReaderOrSharedMember, "members"},
	{ModifyMember, adminOrSharedMember, "members"},

	{ManageImageCache, admin, "cache"},
	{ListCachedNodes, admin, "cache"},
	{CacheImage, admin, "cache"},
	{CacheList, admin, "cache"},
	{CacheDelete, admin, "cache"},
	{CacheClean, admin, "cache"},
	{CachePrune, admin, "cache"},

	{GetTask, ruleDefault, "tasks"},
	{GetTasks, ruleDefault, "tasks"},
	{AddTask, ruleDefault, "tasks"},
	{ModifyTask, ruleDefault, "tasks"},
	{TasksAPIAccess, admin, "tasks"},

	{MetadefDefault, "", "metadefs"},
	{MetadefAdmin, admin, "metadefs"},
	{GetMetadefNamespace, adminOrReaderGetNamespace, "metadefs"},
	{GetMetadefNamespaces, adminOrProjectReader, "metadefs"},
	{ModifyMetadefNamespace, metadefAdmin, "metadefs"},
	{AddMetadefNamespace, metadefAdmin, "metadefs"},
	{DeleteMetadefNamespace, metadefAdmin, "metadefs"},
	{GetMetadefObject, adminOrReaderGetNamespace, "metadefs"},
	{GetMetadefObjects, adminOrReaderGetNamespace, "metadefs"},
	{ModifyMetadefObject, metadefAdmin, "metadefs"},
	{AddMetadefObject, metadefAdmin, "metadefs"},
	{DeleteMetadefObject, metadefAdmin, "metadefs"},
	{ListMetadefResourceTypes, adminOrReaderGetNamespace, "metadefs"},
	{GetMetadefResourceType, adminOrReaderGetNamespace, "metadefs"},
	{AddMetadefResourceTypeAssociation, metadefAdmin, "metadefs"},
	{RemoveMetadefResourceTypeAssociation, metadefAdmin, "metadefs"},
	{GetMetadefProperty, adminOrReaderGetNamespace, "metadefs"},
	{GetMetadefProperties, adminOrReaderGetNamespace, "metadefs"},
	{ModifyMetadefProperty, metadefAdmin, "metadefs"},
	{AddMetadefProperty, metadefAdmin, "metadefs"},
	{RemoveMetadefProperty, metadefAdmin, "metadefs"},
	{GetMetadefTag, adminOrReaderGetNamespace, "metadefs"},
	{GetMetadefTags, adminOrReaderGetNamespace, "metadefs"},
	{ModifyMetadefTag, metadefAdmin, "metadefs"},
	{AddMetadefTag, metadefAdmin, "metadefs"},
	{AddMetadefTags, metadefAdmin, "metadefs"},
	{DeleteMetadefTag, metadefAdmin, "metadefs"},
	{DeleteMetadefTags, metadefAdmin, "metadefs"},

	{StoresInfoDetail, adminOrService, "stores"},
}
