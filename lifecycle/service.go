// Package lifecycle is the one image lifecycle that both faces of glimpse
// (the FUSE mount and the REST listener) call: create, upload with hashing
// and inspection, activate or kill, download, rename and update,
// deactivate and reactivate, delete, and recovery after a crash. It alone
// talks to the registry (meta) and the store (backend), and it enforces who
// may do what.
package lifecycle

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/convert"
	"github.com/glimpse-project/glimpse/lifecycle/policy"
	"github.com/glimpse-project/glimpse/meta"
)

// Principal is who asks: a project, and whether it holds the admin role.
type Principal struct {
	Project string
	Admin   bool
	// ReadOnly is true for callers with only the reader role.
	ReadOnly bool
	// User is the authenticated user's id (Keystone), empty for token-file
	// and unauthenticated callers.
	User string
	// Roles are the caller's role names as its credential lists them
	// (Keystone's token, or the token file); policy rules match on them.
	Roles []string
}

// Config holds the Service's dependencies.
type Config struct {
	Store   *meta.Store
	Backend backend.Backend
	// Inspect detects an upload's format and refuses unsafe content;
	// convert.Inspect by default.
	Inspect func(r io.ReaderAt, size int64) (convert.Report, error)
	// MaxImageSize caps an upload in bytes; 0 means no cap.
	MaxImageSize int64
	// Quota limits each project's images and bytes; zero: none.
	Quota  Quota
	Logger *slog.Logger
	// Locations reads content that stays at URLs (HTTP locations); nil:
	// locations are refused.
	Locations backend.Backend
	// Metrics receives upload outcomes; nil: unregistered metrics.
	Metrics *Metrics
	// Policy decides who may do what (Glance's rules); nil: Glance's
	// defaults.
	Policy *policy.Enforcer
	// AllowFormatMismatch accepts content that does not match the
	// declared disk_format (Glance's require_image_format_match = false);
	// unsafe content is refused all the same.
	AllowFormatMismatch bool
	// MemberLimit is the most members an image may have (Glance's
	// image_member_quota); 0: DefaultMemberLimit; negative: no limit.
	MemberLimit int
}

// Service is the image lifecycle. It is safe for concurrent use.
type Service struct {
	store   *meta.Store
	backend backend.Backend
	inspect func(io.ReaderAt, int64) (convert.Report, error)
	maxSize int64
	quota   Quota
	log     *slog.Logger
	metrics *Metrics
	auth    *Authorizer

	allowFormatMismatch bool

	locations   backend.Backend
	memberLimit int

	// quotaMu makes a quota check and the change it allows one step
	// (two creates cannot both take a project's last image slot).
	quotaMu sync.Mutex

	mu      sync.Mutex                    // guards uploads and hashing
	uploads map[string]*Upload            // the live upload of each image being written
	hashing map[string]context.CancelFunc // background hashes of location images

	bgCtx    context.Context // cancelled by Shutdown
	bgCancel context.CancelFunc
	bg       sync.WaitGroup // background work (location hashes)

	chunks sync.Pool // *hashChunk buffers shared by every upload's hasher
}

// New returns a Service on cfg's registry and store.
func New(cfg Config) *Service {
	s := &Service{
		store:   cfg.Store,
		backend: cfg.Backend,
		inspect: cfg.Inspect,
		maxSize: cfg.MaxImageSize,
		quota:   cfg.Quota,
		log:     cfg.Logger,
		metrics: cfg.Metrics,
		uploads: map[string]*Upload{},
		hashing: map[string]context.CancelFunc{},

		locations: cfg.Locations,
		auth:      NewAuthorizer(cfg.Policy),

		allowFormatMismatch: cfg.AllowFormatMismatch,
		memberLimit:         cfg.MemberLimit,
	}
	if s.memberLimit == 0 {
		s.memberLimit = DefaultMemberLimit
	}
	s.bgCtx, s.bgCancel = context.WithCancel(context.Background())
	if s.metrics == nil {
		s.metrics = NewMetrics(nil)
	}
	if s.inspect == nil {
		s.inspect = convert.Inspect
	}
	if s.quota.any() {
		s.store.SetLimit(s.limit)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// Authorizer is the policy the Service enforces, for the APIs beside the
// image lifecycle (members, metadefs, tasks) to decide by the same rules.
func (s *Service) Authorizer() *Authorizer { return s.auth }

// Subscribe registers fn for every committed change to the catalogue (see
// meta.Store.Subscribe).
func (s *Service) Subscribe(fn func(meta.Event)) (cancel func()) { return s.store.Subscribe(fn) }

// AfterCommit registers fn to run, with the caller's context, in the
// goroutine of every change this daemon makes, once the subscribers have
// been handed it (see meta.Store.AfterCommit).
func (s *Service) AfterCommit(fn func(context.Context)) (cancel func()) {
	return s.store.AfterCommit(fn)
}

// CreateSpec is what a caller may give a new image.
type CreateSpec struct {
	ID              string // empty: a new UUID
	Name            string
	DiskFormat      string
	ContainerFormat string
	Visibility      string // empty: "shared", Glance's default
	// Owner is the project that owns the image; empty: the caller's.
	// Only admins may give an image to another project (add_image).
	Owner      string
	Protected  bool
	OSHidden   bool
	MinDisk    int64
	MinRAM     int64
	Tags       []string
	Properties map[string]string
}

// Create registers a new image in status queued, owned by spec.Owner or
// p's project, if add_image (and, for a public or community image,
// publicize_image or communitize_image) allows.
func (s *Service) Create(ctx context.Context, p Principal, spec CreateSpec) (*meta.Image, error) {
	id := spec.ID
	if id == "" {
		id = NewID()
	} else if !ValidID(id) {
		return nil, fmt.Errorf("%w: id %s is not a UUID", ErrInvalid, id)
	}
	owner := p.Project
	if spec.Owner != "" {
		var err error
		if owner, err = ownerValue(spec.Owner); err != nil {
			return nil, err
		}
	}
	visibility := spec.Visibility
	if visibility == "" {
		visibility = "shared"
	}
	target := newImageTarget(owner, visibility)
	if !s.auth.Allowed(p, policy.AddImage, target) {
		if owner != p.Project {
			return nil, fmt.Errorf("%w: You are not permitted to create images owned by '%s'.", ErrForbidden, owner)
		}
		return nil, Forbidden(policy.AddImage)
	}
	img := &meta.Image{ID: id, Status: meta.Queued, Owner: owner, Visibility: "shared"}
	ops := []Op{
		{Op: "add", Key: "name", Value: spec.Name},
		{Op: "add", Key: "protected", Value: spec.Protected},
		{Op: "add", Key: "os_hidden", Value: spec.OSHidden},
		{Op: "add", Key: "min_disk", Value: spec.MinDisk},
		{Op: "add", Key: "min_ram", Value: spec.MinRAM},
	}
	if spec.Visibility != "" {
		ops = append(ops, Op{Op: "add", Key: "visibility", Value: spec.Visibility})
	}
	if spec.DiskFormat != "" {
		ops = append(ops, Op{Op: "add", Key: "disk_format", Value: spec.DiskFormat})
	}
	if spec.ContainerFormat != "" {
		ops = append(ops, Op{Op: "add", Key: "container_format", Value: spec.ContainerFormat})
	}
	if spec.Tags != nil {
		ops = append(ops, Op{Op: "add", Key: "tags", Value: spec.Tags})
	}
	for k, v := range spec.Properties {
		ops = append(ops, Op{Op: "add", Key: k, Value: v})
	}
	may := s.auth.grants(p, target)
	for _, op := range ops {
		if err := apply(img, op, may); err != nil {
			return nil, err
		}
	}
	if s.quota.Images > 0 {
		s.quotaMu.Lock()
		defer s.quotaMu.Unlock()
		if err := s.checkCreate(owner); err != nil {
			return nil, err
		}
	}
	created, err := s.store.Create(ctx, img)
	if errors.Is(err, meta.ErrExists) {
		return nil, fmt.Errorf("%w: image %s already exists", ErrConflict, id)
	}
	return created, err
}

// Get returns image id if p may see it.
func (s *Service) Get(ctx context.Context, p Principal, id string) (*meta.Image, error) {
	img, err := s.store.Get(id)
	if err != nil {
		return nil, err
	}
	if !s.sees(p, img) {
		return nil, fmt.Errorf("image %s: %w", id, ErrNotFound)
	}
	return img, nil
}

// GetMany returns the images with the ids that p may see, read together:
// imgs[i] is ids[i]'s record, nil where it is missing or hidden from p.
func (s *Service) GetMany(ctx context.Context, p Principal, ids []string) ([]*meta.Image, error) {
	imgs, err := s.store.GetMany(ids)
	if err != nil {
		return nil, err
	}
	v := s.auth.viewer(p)
	for i, img := range imgs {
		if img != nil && !v.sees(img) && !s.seesAsMember(p, img) {
			imgs[i] = nil
		}
	}
	return imgs, nil
}

// modify runs fn on image id inside one registry update, once p is known
// to see the image (else ErrNotFound) and rule allows p to change it (else
// ErrForbidden).
func (s *Service) modify(ctx context.Context, p Principal, id, rule string, fn func(*meta.Image) error) (*meta.Image, error) {
	return s.store.Update(ctx, id, func(img *meta.Image) error {
		if !s.sees(p, img) {
			return ErrNotFound
		}
		if err := s.auth.mayDo(p, rule, img); err != nil {
			return err
		}
		return fn(img)
	})
}

// Update applies ops to image id atomically: all of them or none
// (modify_image; the owner is not among the properties it changes).
func (s *Service) Update(ctx context.Context, p Principal, id string, ops []Op) (*meta.Image, error) {
	return s.modify(ctx, p, id, policy.ModifyImage, func(img *meta.Image) error {
		may := s.auth.grants(p, ImageTarget(p, img))
		for _, op := range ops {
			if err := apply(img, op, may); err != nil {
				return err
			}
		}
		return nil
	})
}

// Rename gives image id a new name.
func (s *Service) Rename(ctx context.Context, p Principal, id, name string) (*meta.Image, error) {
	return s.Update(ctx, p, id, []Op{{Op: "replace", Key: "name", Value: name}})
}

// Deactivate stops consumption of an active image (the rule deactivate:
// admins and the owner's members by default). Deactivating a deactivated
// image succeeds.
func (s *Service) Deactivate(ctx context.Context, p Principal, id string) (*meta.Image, error) {
	return s.setStatus(ctx, p, id, policy.Deactivate, meta.Active, meta.Deactivated)
}

// Reactivate makes a deactivated image active again (the rule reactivate).
func (s *Service) Reactivate(ctx context.Context, p Principal, id string) (*meta.Image, error) {
	return s.setStatus(ctx, p, id, policy.Reactivate, meta.Deactivated, meta.Active)
}

func (s *Service) setStatus(ctx context.Context, p Principal, id, rule string, from, to meta.Status) (*meta.Image, error) {
	return s.modify(ctx, p, id, rule, func(img *meta.Image) error {
		if img.Status != from && img.Status != to {
			return fmt.Errorf("%w: image %s is %s, not %s", ErrConflict, id, img.Status, from)
		}
		img.Status = to
		return nil
	})
}

// Delete removes image id and its content. A protected image refuses; an
// upload in progress is aborted.
func (s *Service) Delete(ctx context.Context, p Principal, id string) error {
	img, err := s.store.Get(id)
	if err != nil {
		return err
	}
	if err := s.deletable(p, img); err != nil {
		return err
	}
	s.mu.Lock()
	up := s.uploads[id]
	s.mu.Unlock()
	if up != nil {
		up.abort(ctx, "image deleted during upload", false)
	}
	// The record goes first: if we crash before the content is gone, the
	// content is an orphan that Recover removes, never a record pointing at
	// nothing.
	old, err := s.store.Delete(ctx, id, func(img *meta.Image) error { return s.deletable(p, img) })
	if err != nil {
		return err
	}
	s.stopHash(id) // a location's bytes are not ours: nothing else to remove
	if old.StoreKey != "" {
		if err := s.backend.Delete(ctx, old.StoreKey); err != nil {
			s.log.Error("content of a deleted image left in the store; the next start removes it", "image", id, "err", err)
		}
	}
	return nil
}

// deletable says whether p may delete img: it must see it, delete_image
// must allow, and the image must not be protected.
func (s *Service) deletable(p Principal, img *meta.Image) error {
	if !s.sees(p, img) {
		return fmt.Errorf("image %s: %w", img.ID, ErrNotFound)
	}
	if err := s.auth.mayDo(p, policy.DeleteImage, img); err != nil {
		return err
	}
	if img.Protected {
		return fmt.Errorf("image %s: %w", img.ID, ErrProtected)
	}
	return nil
}

// OpenOptions say what a face allows when opening content.
type OpenOptions struct {
	// AdminsReadDeactivated lets admins read a deactivated image (REST, as
	// Glance: others get ErrForbidden). The mount never sets it:
	// deactivated content is unreadable there, whoever mounts it.
	AdminsReadDeactivated bool
}

// Open gives random access to the content of image id, if download_image
// allows. Images without content to read (queued, killed, still being
// written) read as empty.
func (s *Service) Open(ctx context.Context, p Principal, id string, opts OpenOptions) (backend.Reader, *meta.Image, error) {
	img, err := s.Get(ctx, p, id)
	if err != nil {
		return nil, nil, err
	}
	if img.Status == meta.Deactivated && !(opts.AdminsReadDeactivated && s.auth.IsAdmin(p)) {
		// Glance's code rule, not a policy: checked before download_image.
		return nil, nil, fmt.Errorf("%w: The requested image has been deactivated. Image data download is forbidden.", ErrForbidden)
	}
	if err := s.auth.mayDo(p, policy.DownloadImage, img); err != nil {
		return nil, nil, err
	}
	switch img.Status {
	case meta.Active, meta.Deactivated:
	default:
		// Queued, killed or in flight: no content to read (yet).
		return emptyReader{}, img, nil
	}
	if len(img.Locations) > 0 {
		r, err := s.openLocation(ctx, img)
		if err != nil {
			return nil, nil, err
		}
		return r, img, nil
	}
	r, err := s.backend.Open(ctx, img.StoreKey)
	if err != nil {
		return nil, nil, fmt.Errorf("open content of image %s: %w", id, storeError(err))
	}
	return r, img, nil
}

type emptyReader struct{}

func (emptyReader) ReadAt(p []byte, off int64) (int, error) { return 0, io.EOF }
func (emptyReader) Size() int64                             { return 0 }
func (emptyReader) Close() error                            { return nil }

// NewID returns a random (version 4) UUID, the form Glance gives image ids.
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // never happens on Linux
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// ValidID reports whether id has the form of a UUID.
func ValidID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i, c := range id {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}
