package s3

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/minio/minio-go/v7"

	"github.com/glimpse-project/glimpse/backend/blockcache"
)

// reader is random access to one version of an object: reads go through
// the store's block cache (whole-block ranged GETs, readahead for sequential
// readers), and every GET is conditional on the ETag seen at Open, so a
// replaced object gives an error instead of a mix of old and new bytes.
type reader struct {
	*blockcache.Reader
	s    *S3
	key  string
	obj  string
	etag string
}

func newReader(s *S3, key, obj string, info minio.ObjectInfo) *reader {
	r := &reader{s: s, key: key, obj: obj, etag: info.ETag}
	// The cache id names the version: blocks of a replaced object are
	// never served for the new one.
	id := fmt.Sprintf("%s\x00%s\x00%d\x00%d", obj, info.ETag, info.Size, info.LastModified.UnixNano())
	r.Reader = s.cache.Reader(s.ctx, id, info.Size, r.get)
	r.Reader.SetStream(r.stream)
	return r
}

// stream opens the object from off to its end (a blockcache.StreamFunc).
func (r *reader) stream(ctx context.Context, off int64) (io.ReadCloser, error) {
	var opts minio.GetObjectOptions
	if off > 0 {
		if err := opts.SetRange(off, 0); err != nil {
			return nil, err
		}
	}
	if r.etag != "" {
		if err := opts.SetMatchETag(r.etag); err != nil {
			return nil, err
		}
	}
	ctx, cancel := withStallCancel(ctx)
	body, _, _, err := r.s.core.GetObject(ctx, r.s.cfg.Bucket, r.obj, opts)
	if err != nil {
		cancel(nil)
		return nil, wrap("read", r.key, stallCause(ctx, err))
	}
	return &cancelOnClose{ReadCloser: body, cancel: func() { cancel(nil) }}, nil
}

// get fills p from off with one ranged GET (a blockcache.FetchFunc).
func (r *reader) get(ctx context.Context, p []byte, off int64) error {
	var opts minio.GetObjectOptions
	if err := opts.SetRange(off, off+int64(len(p))-1); err != nil {
		return fmt.Errorf("s3 store: read %s: %w", r.key, err)
	}
	if r.etag != "" {
		if err := opts.SetMatchETag(r.etag); err != nil {
			return fmt.Errorf("s3 store: read %s: %w", r.key, err)
		}
	}
	ctx, cancel := withStallCancel(ctx)
	defer cancel(nil)
	body, _, _, err := r.s.core.GetObject(ctx, r.s.cfg.Bucket, r.obj, opts)
	err = stallCause(ctx, err)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "PreconditionFailed" {
			return fmt.Errorf("s3 store: read %s: object replaced since it was opened: %w", r.key, err)
		}
		return wrap("read", r.key, err)
	}
	defer body.Close()
	if _, err := io.ReadFull(body, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the object is shorter than at Open
		}
		return fmt.Errorf("s3 store: read %s at %d: %w", r.key, off, stallCause(ctx, err))
	}
	return nil
}

// cancelOnClose ends a streaming GET's operation context with its body.
type cancelOnClose struct {
	io.ReadCloser
	cancel func()
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
