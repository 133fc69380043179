package swift

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"time"

	"github.com/ncw/swift/v2"

	"github.com/glimpse-project/glimpse/backend"
)

// segment is an uploaded segment of a large object.
type segment struct {
	name string // in the segment container
	etag string
	size int64
}

// writer is an object being written. Bytes gather in buf (which grows up to
// one segment, so small objects use little memory); when buf is full and more
// bytes come, buf is uploaded as the next segment in the background while
// the next one fills. At most one segment upload is in flight, so a writer
// holds at most two segments.
type writer struct {
	s      *Swift
	key    string
	name   string
	upload string
	// ctx carries the segment uploads; cancel stops them (Abort).
	ctx    context.Context
	cancel context.CancelFunc

	buf []byte
	// hash is the md5 of buf, computed as bytes come in, off the upload's
	// path. It goes up as the Etag, which Swift checks (422 on a mismatch),
	// so the client does not hash the bytes a second time as they go out.
	hash hash.Hash
	segs []segment
	// inflight, if not nil, delivers the outcome of the segment upload in
	// flight; spare is the buffer it uploads, reused once it is done.
	inflight chan segResult
	spare    []byte
	err      error // sticky: the first failed segment upload
	started  bool  // a segment upload was started

	committed, aborted bool
}

type segResult struct {
	seg segment
	err error
}

var _ backend.Writer = (*writer)(nil)

func (w *writer) Write(p []byte) (int, error) {
	if w.committed || w.aborted {
		return 0, os.ErrClosed
	}
	if w.err != nil {
		return 0, w.err
	}
	segSize := int(w.s.cfg.SegmentSize)
	total := 0
	for len(p) > 0 {
		if len(w.buf) == segSize {
			if err := w.flush(); err != nil {
				return total, err
			}
		}
		n := min(len(p), segSize-len(w.buf))
		w.buf = append(w.buf, p[:n]...)
		w.hash.Write(p[:n])
		p = p[n:]
		total += n
	}
	return total, nil
}

// flush starts uploading buf as the next segment, after the previous upload
// has finished.
func (w *writer) flush() error {
	if err := w.wait(w.ctx); err != nil {
		return err
	}
	if len(w.segs) >= w.s.maxSegments {
		w.err = fmt.Errorf("swift store: %s is over %d segments of %d bytes (the cluster's max_manifest_segments); raise segment_size", w.key, w.s.maxSegments, w.s.cfg.SegmentSize)
		return w.err
	}
	data := w.buf
	etag := hex.EncodeToString(w.hash.Sum(nil))
	w.hash.Reset()
	w.buf, w.spare = w.spare[:0], nil
	name := fmt.Sprintf("%s%08d", w.s.segmentPrefix(w.key, w.upload), len(w.segs))
	ch := make(chan segResult, 1)
	w.inflight = ch
	w.started = true
	go func() {
		err := retry(w.ctx, func() error {
			_, err := w.s.c.ObjectPut(w.ctx, w.s.cfg.SegmentContainer, name, bytes.NewReader(data), false, etag, "application/octet-stream", nil)
			return err
		})
		ch <- segResult{segment{name: name, etag: etag, size: int64(len(data))}, err}
	}()
	w.spare = data
	return nil
}

// wait waits for the segment upload in flight, if any, and records it.
func (w *writer) wait(ctx context.Context) error {
	if w.inflight == nil {
		return w.err
	}
	select {
	case r := <-w.inflight:
		w.inflight = nil
		if r.err != nil && w.err == nil {
			w.err = fmt.Errorf("swift store: upload segment %d of %s: %w", len(w.segs), w.key, r.err)
		}
		if r.err == nil {
			w.segs = append(w.segs, r.seg)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	return w.err
}

// Commit implements backend.Writer: one PUT for an object that fits in a
// segment, else the last segment and then the SLO manifest. The segments of
// an object it replaces are removed afterwards; if that fails they are left
// for AbortIncomplete (the new object is committed either way).
func (w *writer) Commit(ctx context.Context) error {
	if w.committed {
		return os.ErrClosed // the contract: a Writer commits once
	}
	if w.aborted {
		return os.ErrClosed
	}
	if w.err != nil {
		return w.err
	}
	_, old, err := w.s.head(ctx, w.key)
	if err != nil && !errors.Is(err, backend.ErrNotFound) {
		return fmt.Errorf("swift store: commit: %w", err)
	}
	if w.inflight == nil && len(w.segs) == 0 {
		etag := hex.EncodeToString(w.hash.Sum(nil))
		err := retry(ctx, func() error {
			_, err := w.s.c.ObjectPut(ctx, w.s.cfg.Container, w.name, bytes.NewReader(w.buf), false, etag, "application/octet-stream", nil)
			return err
		})
		if err != nil {
			return wrap("put", w.key, err)
		}
	} else {
		if len(w.buf) > 0 {
			if err := w.flush(); err != nil {
				return err
			}
		}
		if err := w.wait(ctx); err != nil {
			return err
		}
		err := retry(ctx, func() error {
			return w.s.putManifest(ctx, w.name, w.segs, swift.Headers{uploadMeta: w.upload})
		})
		if err != nil {
			return wrap("put manifest", w.key, err)
		}
	}
	w.committed = true
	w.buf, w.spare = nil, nil
	w.cancel()
	if old != "" && old != w.upload {
		w.s.deleteSegments(ctx, w.s.segmentPrefix(w.key, old)) // best effort, see above
	}
	return nil
}

// Abort implements backend.Writer: it stops the upload in flight and removes
// every segment of this upload, and the manifest too if a failed Commit
// wrote it after all (a lost response).
func (w *writer) Abort(ctx context.Context) error {
	if w.committed || w.aborted {
		return nil
	}
	w.aborted = true
	w.cancel()
	if w.inflight != nil {
		<-w.inflight // returns promptly: its context is cancelled
		w.inflight = nil
	}
	w.buf, w.spare = nil, nil
	if !w.started {
		// Nothing was uploaded (or only a one-PUT object that failed).
		return nil
	}
	if _, up, err := w.s.head(ctx, w.key); err == nil && up == w.upload {
		if err := w.s.c.ObjectDelete(ctx, w.s.cfg.Container, w.name); err != nil && !errors.Is(err, swift.ObjectNotFound) {
			return wrap("abort", w.key, err)
		}
	}
	if err := w.s.deleteSegments(ctx, w.s.segmentPrefix(w.key, w.upload)); err != nil {
		return fmt.Errorf("swift store: abort %s: %w", w.key, err)
	}
	return nil
}

// retry runs fn up to three times, for the transient failures of a busy
// proxy (503, a reset connection). A cancelled ctx ends it at once.
func retry(ctx context.Context, fn func() error) error {
	delay := 250 * time.Millisecond
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = fn(); err == nil || !transient(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay *= 2
	}
	return err
}

// transient: worth retrying. Client errors (4xx) and cancellation are not.
func transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var se *swift.Error
	if errors.As(err, &se) && se.StatusCode >= 400 && se.StatusCode < 500 && se.StatusCode != 408 && se.StatusCode != 429 && se.StatusCode != 498 {
		return false
	}
	return true
}
