// Package s3 stores objects in an S3 bucket (AWS, MinIO, Ceph RGW) through
// minio-go v7, under an optional key prefix.
//
// Writes stream: the first part's worth of bytes is held in memory, and an
// object that ends within it goes out as one PUT at Commit; a longer one
// becomes a multipart upload running while the caller writes, with parts of
// Config.PartSize sent Config.NumThreads at a time, so one writer never
// holds more than about (NumThreads+1)*PartSize bytes. An aborted or failed
// upload aborts its multipart upload; one that a crash left behind is
// removed by AbortIncomplete. Reads are ranged GETs of whole blocks pinned
// to the ETag seen at Open, so a reader never mixes two versions of a
// replaced object; the blocks sit in a bounded cache shared by all readers,
// and a sequential reader has the next blocks fetched ahead (blockcache).
//
// Keys are flat: one path element, no "/" (the lifecycle's image ids).
package s3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/backend/blockcache"
)

// S3 is a backend.Backend on one bucket and prefix.
type S3 struct {
	cfg    Config
	client *minio.Client
	core   minio.Core
	cache  *blockcache.Cache // shared by all readers

	// ctx is cancelled by Close: it stops every upload and read in flight.
	ctx    context.Context
	cancel context.CancelFunc
	// uploads counts the upload goroutines, so Close can wait for them.
	uploads sync.WaitGroup
	// parallel holds a token per upload that sends several parts at once.
	parallel chan struct{}
}

var _ backend.Backend = (*S3)(nil)

// Open connects to the server and creates the bucket if it is missing. It
// fails if the server cannot be reached or refuses the credentials.
func Open(ctx context.Context, cfg Config) (*S3, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = "s3.amazonaws.com"
	}
	transport, err := minio.DefaultTransport(cfg.Secure)
	if err != nil {
		return nil, fmt.Errorf("s3 store: %w", err)
	}
	if cfg.InsecureSkipVerify {
		if transport.TLSClientConfig == nil {
			transport.TLSClientConfig = &tls.Config{}
		}
		transport.TLSClientConfig.InsecureSkipVerify = true
	}
	// One connection per part in flight is the common case; keep a few
	// more idle ones per host than net/http's 2 so parts and ranged reads
	// do not reconnect each time.
	transport.MaxIdleConnsPerHost = 16
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
		Secure:       cfg.Secure,
		Transport:    &stallTransport{base: transport, idle: cfg.stallTimeout()},
		Region:       cfg.Region,
		BucketLookup: lookup,
		MaxRetries:   cfg.MaxRetries,
		// Checksums instead of signed payloads: see Config.SignPayload.
		TrailingHeaders: !cfg.SignPayload,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 store: %s: %w", cfg.Endpoint, err)
	}
	ctx, cancel := withStallCancel(ctx)
	defer cancel(nil)
	exists, err := client.BucketExists(ctx, cfg.Bucket)
	err = stallCause(ctx, err)
	if err != nil {
		return nil, fmt.Errorf("s3 store: %s: bucket %s: %w", cfg.Endpoint, cfg.Bucket, err)
	}
	if !exists {
		err := stallCause(ctx, client.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region}))
		if code := minio.ToErrorResponse(err).Code; code == "BucketAlreadyOwnedByYou" {
			err = nil // another daemon won the race
		}
		if err != nil {
			return nil, fmt.Errorf("s3 store: %s: create bucket %s: %w", cfg.Endpoint, cfg.Bucket, err)
		}
	}
	bctx, cancelStore := context.WithCancel(context.Background())
	cache := blockcache.New(blockcache.Config{
		BlockSize: cfg.ReadBlockSize,
		Size:      cfg.ReadCacheSize,
		ReadAhead: cfg.ReadAhead,
		Fetchers:  cfg.ReadFetchers,
	})
	return &S3{cfg: cfg, client: client, core: minio.Core{Client: client}, cache: cache, ctx: bctx, cancel: cancelStore,
		parallel: make(chan struct{}, cfg.maxParallelUploads())}, nil
}

// Client is the underlying minio-go client, for tests and benchmarks that
// compare against direct calls.
func (s *S3) Client() *minio.Client { return s.client }

// Bucket is the bucket the store uses.
func (s *S3) Bucket() string { return s.cfg.Bucket }

// listPrefix is what every object name of this store starts with.
func (s *S3) listPrefix() string {
	if s.cfg.Prefix == "" {
		return ""
	}
	return s.cfg.Prefix + "/"
}

// object maps a key to its object name.
func (s *S3) object(key string) (string, error) {
	if key == "" || key == "." || key == ".." || strings.HasPrefix(key, ".") || strings.ContainsAny(key, "/\x00") {
		return "", fmt.Errorf("s3 store: invalid key %q", key)
	}
	return s.listPrefix() + key, nil
}

// isNotFound tells whether err says the object does not exist (and not,
// say, that the server is unreachable or the bucket is gone).
func isNotFound(err error) bool {
	var resp minio.ErrorResponse
	if !errors.As(err, &resp) {
		return false
	}
	return resp.Code == "NoSuchKey" || (resp.StatusCode == http.StatusNotFound && resp.Code != "NoSuchBucket")
}

// wrap gives err the store's context and maps a missing object to
// backend.ErrNotFound.
func wrap(op, key string, err error) error {
	if isNotFound(err) {
		return fmt.Errorf("s3 store: %s %s: %w", op, key, backend.ErrNotFound)
	}
	return fmt.Errorf("s3 store: %s %s: %w", op, key, err)
}

// Create implements backend.Backend. It does not contact the server: the
// bytes go out once they fill a part, or at Commit.
func (s *S3) Create(ctx context.Context, key string) (backend.Writer, error) {
	obj, err := s.object(key)
	if err != nil {
		return nil, err
	}
	if err := s.ctx.Err(); err != nil {
		return nil, fmt.Errorf("s3 store: create %s: store closed", key)
	}
	return &writer{s: s, key: key, obj: obj}, nil
}

// Open implements backend.Backend: it stats the object once and pins its
// ETag; every ReadAt is a ranged GET of that version.
func (s *S3) Open(ctx context.Context, key string) (backend.Reader, error) {
	obj, err := s.object(key)
	if err != nil {
		return nil, err
	}
	ctx, cancel := withStallCancel(ctx)
	defer cancel(nil)
	info, err := s.client.StatObject(ctx, s.cfg.Bucket, obj, minio.StatObjectOptions{})
	if err != nil {
		return nil, wrap("open", key, stallCause(ctx, err))
	}
	return newReader(s, key, obj, info), nil
}

// Stat implements backend.Backend.
func (s *S3) Stat(ctx context.Context, key string) (backend.Info, error) {
	obj, err := s.object(key)
	if err != nil {
		return backend.Info{}, err
	}
	ctx, cancel := withStallCancel(ctx)
	defer cancel(nil)
	info, err := s.client.StatObject(ctx, s.cfg.Bucket, obj, minio.StatObjectOptions{})
	if err != nil {
		return backend.Info{}, wrap("stat", key, stallCause(ctx, err))
	}
	return backend.Info{Key: key, Size: info.Size, ModTime: info.LastModified}, nil
}

// Delete implements backend.Backend. S3 answers a delete of a missing key
// with success, and so does this.
func (s *S3) Delete(ctx context.Context, key string) error {
	obj, err := s.object(key)
	if err != nil {
		return err
	}
	ctx, cancel := withStallCancel(ctx)
	defer cancel(nil)
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, obj, minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
		return wrap("delete", key, stallCause(ctx, err))
	}
	return nil
}

// List implements backend.Backend. It lists only the direct children of the
// prefix: an object name with a further "/" is not one of ours.
func (s *S3) List(ctx context.Context, fn func(backend.Info) error) error {
	ctx, cancel := withStallCancel(ctx)
	defer cancel(nil) // stops minio-go's listing if fn returns early
	prefix := s.listPrefix()
	for o := range s.client.ListObjectsIter(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix}) {
		if o.Err != nil {
			return fmt.Errorf("s3 store: list %s/%s: %w", s.cfg.Bucket, prefix, stallCause(ctx, o.Err))
		}
		key := strings.TrimPrefix(o.Key, prefix)
		if key == "" || strings.Contains(key, "/") {
			continue // a "directory", not an object of this store
		}
		if err := fn(backend.Info{Key: key, Size: o.Size, ModTime: o.LastModified}); err != nil {
			return err
		}
	}
	return nil
}

// AbortIncomplete implements backend.Backend: it aborts every multipart
// upload of a key of this store (a direct child of the prefix). Called at
// startup, before this process starts any upload, so every one it finds was
// left by an earlier process, or by another process writing to the same
// bucket and prefix, which is not supported.
//
// MinIO lists multipart uploads only for an empty prefix or one exact
// object name, so this lists the whole bucket's uploads and filters.
func (s *S3) AbortIncomplete(ctx context.Context) error {
	return s.AbortStale(ctx, func(string) bool { return false })
}

// AbortStale implements backend.Backend: it aborts the multipart uploads
// under the prefix except those of live keys.
func (s *S3) AbortStale(ctx context.Context, live func(key string) bool) error {
	type upload struct{ key, obj, id string }
	var uploads []upload
	lctx, cancelList := withStallCancel(ctx)
	cancel := func() { cancelList(nil) }
	var listErr error
	prefix := s.listPrefix()
	for u := range s.client.ListIncompleteUploads(lctx, s.cfg.Bucket, "", true) {
		if u.Err != nil {
			if listErr == nil {
				listErr = stallCause(lctx, u.Err)
			}
			cancel() // and drain, so minio-go's goroutine ends
			continue
		}
		key, ok := strings.CutPrefix(u.Key, prefix)
		if !ok || key == "" || strings.Contains(key, "/") {
			continue
		}
		uploads = append(uploads, upload{key, u.Key, u.UploadID})
	}
	cancel()
	if listErr != nil {
		return fmt.Errorf("s3 store: list incomplete uploads in %s: %w", s.cfg.Bucket, listErr)
	}
	var errs []error
	for _, u := range uploads {
		if live(u.key) {
			continue
		}
		actx, cancel := withStallCancel(ctx)
		err := stallCause(actx, s.core.AbortMultipartUpload(actx, s.cfg.Bucket, u.obj, u.id))
		cancel(nil)
		if err != nil && minio.ToErrorResponse(err).Code != "NoSuchUpload" {
			errs = append(errs, fmt.Errorf("s3 store: abort upload %s of %s: %w", u.id, u.obj, err))
		}
	}
	return errors.Join(errs...)
}

// Close implements backend.Backend: uploads still running are aborted and
// reads still running fail.
func (s *S3) Close() error {
	s.cancel()
	s.uploads.Wait()
	return nil
}
