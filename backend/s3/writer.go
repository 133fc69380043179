package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/minio/minio-go/v7"
)

var (
	errAborted = errors.New("upload aborted")
	errClosed  = errors.New("writer already committed or aborted")
)

// writer streams one object. Until its bytes exceed one part it only
// buffers them (head); then it starts a PutObject of unknown size in a
// goroutine that reads head and then everything written to pw.
type writer struct {
	s   *S3
	key string
	obj string

	head []byte // bytes written before the upload started
	n    int64  // bytes accepted so far

	// Set once the upload runs.
	pw     *io.PipeWriter
	ctx    context.Context // the upload's; its cause tells a stall
	cancel context.CancelFunc
	done   chan struct{} // closed when the upload goroutine returns
	err    error         // the upload's result, valid after done

	finished bool // committed, aborted, or failed
}

func (w *writer) opts() minio.PutObjectOptions {
	return minio.PutObjectOptions{
		ContentType:           "application/octet-stream",
		PartSize:              w.s.cfg.partSize(),
		NumThreads:            w.s.cfg.numThreads(),
		ConcurrentStreamParts: true,
		DisableContentSha256:  !w.s.cfg.SignPayload,
	}
}

// Write implements io.Writer. Once the upload runs, Write blocks until the
// uploader has taken the bytes (so memory stays bounded), and an upload that
// failed (server gone, store closed) fails the Write.
func (w *writer) Write(p []byte) (int, error) {
	if w.finished {
		return 0, fmt.Errorf("s3 store: write %s: %w", w.key, errClosed)
	}
	if w.pw == nil {
		if uint64(len(w.head)+len(p)) <= w.s.cfg.partSize() {
			w.head = append(w.head, p...)
			w.n += int64(len(p))
			return len(p), nil
		}
		w.start()
	}
	n, err := w.pw.Write(p)
	w.n += int64(n)
	if err != nil {
		return n, fmt.Errorf("s3 store: upload %s: %w", w.key, err)
	}
	return n, nil
}

// start begins the multipart upload with the buffered head.
func (w *writer) start() {
	pr, pw := io.Pipe()
	ctx, cancelCause := withStallCancel(w.s.ctx)
	cancel := func() { cancelCause(nil) }
	// A cancelled upload must also unblock minio-go's read of the pipe and
	// our writes into it.
	stop := context.AfterFunc(ctx, func() { pr.CloseWithError(fmt.Errorf("%w: %w", errAborted, context.Cause(ctx))) })
	w.pw, w.ctx, w.cancel, w.done = pw, ctx, cancel, make(chan struct{})
	src := io.MultiReader(bytes.NewReader(w.head), pr)
	w.head = nil
	opts := w.opts()
	select {
	case w.s.parallel <- struct{}{}:
	default:
		// Enough uploads run in parallel already: this one sends a
		// part at a time, with one buffer.
		opts.NumThreads, opts.ConcurrentStreamParts = 1, false
	}
	w.s.uploads.Add(1)
	go func() {
		defer w.s.uploads.Done()
		defer close(w.done)
		defer stop()
		if opts.ConcurrentStreamParts {
			defer func() { <-w.s.parallel }()
		}
		// minio-go aborts the multipart upload itself when this fails,
		// with a context of its own, so an abort still goes out after
		// ctx is cancelled.
		_, err := w.s.client.PutObject(ctx, w.s.cfg.Bucket, w.obj, src, -1, opts)
		err = stallCause(ctx, err)
		w.err = err
		// A Write blocked on the pipe, or any later one, gets the error.
		pr.CloseWithError(err)
	}()
}

// Commit implements backend.Writer. If ctx ends first the upload is
// cancelled and ctx's error returned at once; Abort then waits until the
// multipart upload is aborted.
func (w *writer) Commit(ctx context.Context) error {
	if w.finished {
		return fmt.Errorf("s3 store: commit %s: %w", w.key, errClosed)
	}
	w.finished = true
	if w.pw == nil {
		// The whole object fits in one part: a single PUT, which S3
		// makes visible atomically or not at all.
		pctx, cancel := withStallCancel(w.s.ctx)
		defer cancel(nil)
		stop := context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
		defer stop()
		head := w.head
		w.head = nil
		opts := w.opts()
		if !w.s.cfg.SignPayload {
			// minio-go sends its automatic CRC32C on multipart parts
			// only (v7.4.1): a single PUT must ask for it.
			opts.Checksum = minio.ChecksumCRC32C
		}
		_, err := w.s.client.PutObject(pctx, w.s.cfg.Bucket, w.obj, bytes.NewReader(head), int64(len(head)), opts)
		if err != nil {
			return wrap("commit", w.key, stallCause(pctx, err))
		}
		return nil
	}
	w.pw.Close() // EOF: minio-go sends the last part and completes
	select {
	case <-w.done:
	case <-w.ctx.Done():
		if stalled(w.ctx) {
			// minio-go is still trying to abort the multipart upload
			// on the stalled server (for a minute at most); the caller
			// need not wait for that.
			return wrap("commit", w.key, context.Cause(w.ctx))
		}
		<-w.done // the store is closing: the upload ends at once
	case <-ctx.Done():
		// Stop the upload but do not wait: minio-go's abort of the
		// multipart upload may itself wait on a stalled server. Abort
		// waits for it, with a context of its own.
		w.cancel()
		return fmt.Errorf("s3 store: commit %s: %w", w.key, ctx.Err())
	}
	w.cancel()
	if w.err != nil {
		return wrap("commit", w.key, w.err)
	}
	return nil
}

// Abort implements backend.Writer: it stops the upload and waits until
// minio-go has aborted the multipart upload (or given up: then
// AbortIncomplete at the next start removes it).
func (w *writer) Abort(ctx context.Context) error {
	w.head = nil
	if w.finished && (w.pw == nil || isClosed(w.done)) {
		return nil
	}
	w.finished = true
	if w.pw == nil {
		return nil
	}
	w.pw.CloseWithError(errAborted)
	w.cancel()
	if stalled(w.ctx) {
		// Waiting would take as long as minio-go's own abort on a
		// stalled server; it goes on in the background, and
		// AbortIncomplete at the next start removes what it leaves.
		return nil
	}
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("s3 store: abort %s: %w", w.key, ctx.Err())
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
