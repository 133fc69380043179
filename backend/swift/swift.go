// Package swift stores objects in an OpenStack Swift container, through
// github.com/ncw/swift/v2.
//
// An object of up to Config.SegmentSize bytes is one PUT of PREFIX+KEY. A
// larger one is uploaded while it streams in, one segment at a time, into
// the segment container as PREFIX+KEY/UPLOAD/NNNNNNNN (UPLOAD is random per
// Writer), and Commit writes a static large object (SLO) manifest under
// PREFIX+KEY that lists them, with the metadata X-Object-Meta-Glimpse-Upload:
// UPLOAD. Segments whose upload no manifest names are therefore incomplete
// writes: Abort removes its own, AbortIncomplete finds and removes the rest
// (a crash mid-upload, a crash between a replacing Commit or a Delete and
// the removal of the old segments). The store belongs to one daemon: a second
// daemon's AbortIncomplete would remove the first one's uploads in progress.
package swift

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ncw/swift/v2"

	"github.com/glimpse-project/glimpse/backend"
)

// uploadMeta is the metadata (X-Object-Meta-Glimpse-Upload) that ties an SLO
// manifest to its segments.
const uploadMeta = "X-Object-Meta-Glimpse-Upload"

// Swift is a backend.Backend on a Swift container.
type Swift struct {
	c         *swift.Connection
	transport *http.Transport
	cfg       Config
	// maxSegments is the server's max_manifest_segments.
	maxSegments int
}

var _ backend.Backend = (*Swift)(nil)

// Open logs in, creates the container and the segment container if they are
// missing, and returns the store. ctx bounds only this setup.
func Open(ctx context.Context, cfg Config) (*Swift, error) {
	if cfg.Container == "" {
		return nil, errors.New("swift store: no container given")
	}
	if cfg.Prefix != "" && !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	if cfg.SegmentContainer == "" {
		cfg.SegmentContainer = cfg.Container + "_segments"
	}
	if cfg.SegmentSize <= 0 {
		cfg.SegmentSize = DefaultSegmentSize
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     90 * time.Second,
		// Swift answers PUT with 100-continue when asked; ncw/swift does not ask.
	}
	c := &swift.Connection{
		AuthUrl:                     cfg.AuthURL,
		UserName:                    cfg.User,
		ApiKey:                      cfg.Key,
		AuthVersion:                 cfg.AuthVersion,
		UserId:                      cfg.UserID,
		Domain:                      cfg.UserDomain,
		DomainId:                    cfg.UserDomainID,
		Tenant:                      cfg.Project,
		TenantId:                    cfg.ProjectID,
		TenantDomain:                cfg.ProjectDomain,
		TenantDomainId:              cfg.ProjectDomainID,
		Region:                      cfg.Region,
		EndpointType:                swift.EndpointType(cfg.EndpointType),
		ApplicationCredentialId:     cfg.ApplicationCredentialID,
		ApplicationCredentialName:   cfg.ApplicationCredentialName,
		ApplicationCredentialSecret: cfg.ApplicationCredentialSecret,
		StorageUrl:                  cfg.StorageURL,
		AuthToken:                   cfg.AuthToken,
		Timeout:                     cfg.Timeout,
		UserAgent:                   "glimpse",
		Transport:                   tr,
	}
	if !c.Authenticated() {
		if err := c.Authenticate(ctx); err != nil {
			return nil, fmt.Errorf("swift store: authenticate at %s as %s: %w", cfg.AuthURL, cfg.User, err)
		}
	}
	s := &Swift{c: c, transport: tr, cfg: cfg, maxSegments: 1000}
	info, err := c.QueryInfo(ctx)
	if err == nil {
		if !info.SupportsSLO() {
			return nil, errors.New("swift store: the cluster has no static large object (slo) middleware")
		}
		if slo, ok := info["slo"].(map[string]any); ok {
			if n, ok := slo["max_manifest_segments"].(float64); ok && n > 0 {
				s.maxSegments = int(n)
			}
		}
		if sw, ok := info["swift"].(map[string]any); ok {
			if n, ok := sw["max_file_size"].(float64); ok && n > 0 && float64(cfg.SegmentSize) > n {
				return nil, fmt.Errorf("swift store: segment size %d is over the cluster's max_file_size %.0f", cfg.SegmentSize, n)
			}
		}
	} // else /info is switched off: assume Swift's defaults
	for _, name := range []string{cfg.Container, cfg.SegmentContainer} {
		// HEAD first: a user may read and write a container it may not create.
		_, _, err := c.Container(ctx, name)
		if errors.Is(err, swift.ContainerNotFound) {
			err = c.ContainerCreate(ctx, name, nil)
		}
		if err != nil {
			return nil, fmt.Errorf("swift store: container %s: %w", name, err)
		}
	}
	return s, nil
}

// Connection is the client the store uses (for tests and benchmarks that
// compare with the direct client).
func (s *Swift) Connection() *swift.Connection { return s.c }

func (s *Swift) object(key string) (string, error) {
	if key == "" || strings.ContainsAny(key, "/\x00") {
		return "", fmt.Errorf("swift store: invalid key %q", key)
	}
	return s.cfg.Prefix + key, nil
}

// segmentPrefix is where the segments of one upload of key live.
func (s *Swift) segmentPrefix(key, upload string) string {
	return s.cfg.Prefix + key + "/" + upload + "/"
}

func wrap(op, key string, err error) error {
	if errors.Is(err, swift.ObjectNotFound) || errors.Is(err, swift.ContainerNotFound) {
		return fmt.Errorf("swift store: %s %s: %w", op, key, backend.ErrNotFound)
	}
	return fmt.Errorf("swift store: %s %s: %w", op, key, err)
}

// Create implements backend.Backend. ctx bounds only Create: the writer's
// segment uploads run until Commit or Abort.
func (s *Swift) Create(ctx context.Context, key string) (backend.Writer, error) {
	name, err := s.object(key)
	if err != nil {
		return nil, err
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("swift store: create %s: %w", key, err)
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return &writer{
		s:      s,
		key:    key,
		name:   name,
		upload: hex.EncodeToString(id[:]),
		hash:   md5.New(),
		ctx:    bg,
		cancel: cancel,
	}, nil
}

// head returns a committed object's description and its upload id (empty
// for an object that is not a large object of ours).
func (s *Swift) head(ctx context.Context, key string) (backend.Info, string, error) {
	name, err := s.object(key)
	if err != nil {
		return backend.Info{}, "", err
	}
	obj, h, err := s.c.Object(ctx, s.cfg.Container, name)
	if err != nil {
		return backend.Info{}, "", wrap("stat", key, err)
	}
	upload := ""
	if h.IsLargeObjectSLO() {
		upload = h[uploadMeta]
	}
	return backend.Info{Key: key, Size: obj.Bytes, ModTime: obj.LastModified}, upload, nil
}

// Stat implements backend.Backend.
func (s *Swift) Stat(ctx context.Context, key string) (backend.Info, error) {
	info, _, err := s.head(ctx, key)
	return info, err
}

// Open implements backend.Backend. ctx bounds only Open; reads are ranged
// GETs bounded by Config.Timeout.
func (s *Swift) Open(ctx context.Context, key string) (backend.Reader, error) {
	info, _, err := s.head(ctx, key)
	if err != nil {
		return nil, err
	}
	return &reader{s: s, key: key, name: s.cfg.Prefix + key, size: info.Size}, nil
}

// Delete implements backend.Backend: the manifest (or object) first, so that
// nothing visible names a missing segment, then its segments. A crash in
// between leaves segments that AbortIncomplete removes.
func (s *Swift) Delete(ctx context.Context, key string) error {
	_, upload, err := s.head(ctx, key)
	if errors.Is(err, backend.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("swift store: delete: %w", err)
	}
	if err := s.c.ObjectDelete(ctx, s.cfg.Container, s.cfg.Prefix+key); err != nil && !errors.Is(err, swift.ObjectNotFound) {
		return wrap("delete", key, err)
	}
	if upload != "" {
		if err := s.deleteSegments(ctx, s.segmentPrefix(key, upload)); err != nil {
			return fmt.Errorf("swift store: delete segments of %s: %w", key, err)
		}
	}
	return nil
}

// walk calls fn for every object in container whose name starts with prefix,
// a page (Swift's default 10,000 names) at a time.
func (s *Swift) walk(ctx context.Context, container, prefix string, delim rune, fn func(swift.Object) error) error {
	opts := &swift.ObjectsOpts{Prefix: prefix, Delimiter: delim, Limit: 10000}
	for {
		objs, err := s.c.Objects(ctx, container, opts)
		if err != nil {
			return err
		}
		for _, o := range objs {
			if o.PseudoDirectory || o.SubDir != "" {
				continue
			}
			if err := fn(o); err != nil {
				return err
			}
		}
		if len(objs) < opts.Limit {
			return nil
		}
		last := objs[len(objs)-1]
		opts.Marker = last.Name
		if last.SubDir != "" {
			opts.Marker = last.SubDir
		}
	}
}

// List implements backend.Backend. The container listing gives an SLO's
// total size (Swift 2.x), so List makes one request per 10,000 objects.
func (s *Swift) List(ctx context.Context, fn func(backend.Info) error) error {
	var stop error
	err := s.walk(ctx, s.cfg.Container, s.cfg.Prefix, '/', func(o swift.Object) error {
		key := strings.TrimPrefix(o.Name, s.cfg.Prefix)
		if key == "" {
			return nil
		}
		if err := fn(backend.Info{Key: key, Size: o.Bytes, ModTime: o.LastModified}); err != nil {
			stop = err
			return err
		}
		return nil
	})
	if stop != nil {
		return stop
	}
	if err != nil {
		return fmt.Errorf("swift store: list %s: %w", s.cfg.Container, err)
	}
	return nil
}

// AbortIncomplete implements backend.Backend: it removes every segment of
// an upload that no manifest in the container names.
func (s *Swift) AbortIncomplete(ctx context.Context) error {
	return s.AbortStale(ctx, func(string) bool { return false })
}

// AbortStale implements backend.Backend: it removes the segments of every
// upload that no manifest names, except those of live keys.
func (s *Swift) AbortStale(ctx context.Context, live func(key string) bool) error {
	// key -> uploads that have segments
	uploads := map[string]map[string]bool{}
	err := s.walk(ctx, s.cfg.SegmentContainer, s.cfg.Prefix, 0, func(o swift.Object) error {
		parts := strings.SplitN(strings.TrimPrefix(o.Name, s.cfg.Prefix), "/", 3)
		if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
			return nil // not a segment of ours
		}
		if uploads[parts[0]] == nil {
			uploads[parts[0]] = map[string]bool{}
		}
		uploads[parts[0]][parts[1]] = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("swift store: list segments: %w", err)
	}
	for key, ups := range uploads {
		if live(key) {
			continue
		}
		_, committed, err := s.head(ctx, key)
		if err != nil && !errors.Is(err, backend.ErrNotFound) {
			return fmt.Errorf("swift store: abort incomplete: %w", err)
		}
		for up := range ups {
			if up == committed {
				continue
			}
			if err := s.deleteSegments(ctx, s.segmentPrefix(key, up)); err != nil {
				return fmt.Errorf("swift store: abort incomplete upload of %s: %w", key, err)
			}
		}
	}
	return nil
}

// deleteSegments removes every segment whose name starts with prefix, with
// bulk deletes where the cluster has them.
func (s *Swift) deleteSegments(ctx context.Context, prefix string) error {
	var names []string
	err := s.walk(ctx, s.cfg.SegmentContainer, prefix, 0, func(o swift.Object) error {
		names = append(names, o.Name)
		return nil
	})
	if err != nil {
		return err
	}
	return s.deleteObjects(ctx, s.cfg.SegmentContainer, names)
}

func (s *Swift) deleteObjects(ctx context.Context, container string, names []string) error {
	const batch = 1000 // Swift's max_deletes_per_request is 10,000
	for len(names) > 0 {
		n := min(batch, len(names))
		res, err := s.c.BulkDelete(ctx, container, names[:n])
		if err == nil {
			for name, e := range res.Errors {
				if !errors.Is(e, swift.ObjectNotFound) {
					return fmt.Errorf("delete %s: %w", name, e)
				}
			}
		} else {
			// No bulk middleware (or it refused): one at a time.
			for _, name := range names[:n] {
				if err := s.c.ObjectDelete(ctx, container, name); err != nil && !errors.Is(err, swift.ObjectNotFound) {
					return fmt.Errorf("delete %s: %w", name, err)
				}
			}
		}
		names = names[n:]
	}
	return nil
}

// putManifest writes an SLO manifest listing segs under name.
func (s *Swift) putManifest(ctx context.Context, name string, segs []segment, h swift.Headers) error {
	body := &bytes.Buffer{}
	body.WriteByte('[')
	for i, sg := range segs {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(body, `{"path":%q,"etag":%q,"size_bytes":%d}`, "/"+s.cfg.SegmentContainer+"/"+sg.name, sg.etag, sg.size)
	}
	body.WriteByte(']')
	surl, err := s.c.GetStorageUrl(ctx)
	if err != nil {
		return err
	}
	h["Content-Type"] = "application/octet-stream"
	resp, _, err := s.c.Call(ctx, surl, swift.RequestOpts{
		Container:  s.cfg.Container,
		ObjectName: name,
		Operation:  "PUT",
		Parameters: map[string][]string{"multipart-manifest": {"put"}},
		Headers:    h,
		Body:       body,
		NoResponse: true,
		ErrorMap:   swift.ContainerErrorMap,
		OnReAuth:   func() (string, error) { return s.c.GetStorageUrl(ctx) },
	})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	return err
}

// Close implements backend.Backend.
func (s *Swift) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}
