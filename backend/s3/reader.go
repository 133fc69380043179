package s3

import (
	"errors"
	"fmt"
	"io"

	"github.com/minio/minio-go/v7"
)

// reader is random access to one version of an object: every ReadAt is a
// ranged GET conditional on the ETag seen at Open, so a replaced object
// gives an error instead of a mix of old and new bytes.
type reader struct {
	s    *S3
	key  string
	obj  string
	size int64
	etag string
}

func newReader(s *S3, key, obj string, info minio.ObjectInfo) *reader {
	return &reader{s: s, key: key, obj: obj, size: info.Size, etag: info.ETag}
}

// Size implements backend.Reader.
func (r *reader) Size() int64 { return r.size }

// Close implements io.Closer. The reader holds no connection between calls.
func (r *reader) Close() error { return nil }

// ReadAt implements io.ReaderAt. A read running past the end returns the
// bytes up to the end and io.EOF. It is safe for concurrent use.
func (r *reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("s3 store: read %s: negative offset %d", r.key, off)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if off >= r.size {
		return 0, io.EOF
	}
	n := int64(len(p))
	var eof error
	if n > r.size-off {
		n, eof = r.size-off, io.EOF
	}
	m, err := r.get(p[:n], off)
	if err != nil {
		return m, err
	}
	return m, eof
}

// get fills p from off with one ranged GET.
func (r *reader) get(p []byte, off int64) (int, error) {
	var opts minio.GetObjectOptions
	if err := opts.SetRange(off, off+int64(len(p))-1); err != nil {
		return 0, fmt.Errorf("s3 store: read %s: %w", r.key, err)
	}
	if r.etag != "" {
		if err := opts.SetMatchETag(r.etag); err != nil {
			return 0, fmt.Errorf("s3 store: read %s: %w", r.key, err)
		}
	}
	body, _, _, err := r.s.core.GetObject(r.s.ctx, r.s.cfg.Bucket, r.obj, opts)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "PreconditionFailed" {
			return 0, fmt.Errorf("s3 store: read %s: object replaced since it was opened: %w", r.key, err)
		}
		return 0, wrap("read", r.key, err)
	}
	defer body.Close()
	m, err := io.ReadFull(body, p)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the object is shorter than at Open
		}
		return m, fmt.Errorf("s3 store: read %s at %d: %w", r.key, off, err)
	}
	return m, nil
}
