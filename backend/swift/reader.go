package swift

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/ncw/swift/v2"

	"github.com/glimpse-project/glimpse/backend"
)

// reader gives random access to a committed object with ranged GETs. A read
// that continues where the previous one ended (cp, a download) is served
// from one GET streaming to the end of the object instead of a request per
// read; any other read is a GET of exactly its range. ReadAt is safe for
// concurrent use: concurrent reads that miss the stream use their own GETs.
type reader struct {
	s    *Swift
	key  string
	name string
	size int64

	mu sync.Mutex // guards the fields below
	// next is where the previous read ended; stream, if not nil, is a GET
	// body positioned there.
	next   int64
	stream io.ReadCloser
	closed bool
}

var _ backend.Reader = (*reader)(nil)

func (r *reader) Size() int64 { return r.size }

// ReadAt implements io.ReaderAt: a read running past the end is short and
// returns io.EOF.
func (r *reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("swift store: read %s: negative offset", r.key)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	want := p
	if rest := r.size - off; int64(len(want)) > rest {
		want = want[:rest]
	}
	var n int
	var err error
	if r.mu.TryLock() {
		n, err = r.readLocked(want, off)
		r.mu.Unlock()
	} else {
		n, err = r.get(want, off, off+int64(len(want)))
	}
	if err != nil {
		return n, fmt.Errorf("swift store: read %s at %d: %w", r.key, off, err)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (r *reader) readLocked(p []byte, off int64) (int, error) {
	if r.closed {
		return 0, fmt.Errorf("reader closed")
	}
	if off != r.next || r.stream == nil {
		r.dropStream()
		if off != r.next || off == 0 && len(p) < 1<<20 {
			// Not sequential (yet): a GET of just this range. A read at 0
			// that is small is usually a format probe, not a copy.
			n, err := r.get(p, off, off+int64(len(p)))
			r.next = off + int64(n)
			return n, err
		}
		// The second read in a row: stream the rest.
		f, _, err := r.s.c.ObjectOpen(context.Background(), r.s.cfg.Container, r.name, false,
			swift.Headers{"Range": fmt.Sprintf("bytes=%d-", off)})
		if err != nil {
			return 0, wrap("open", r.key, err)
		}
		r.stream = f
	}
	n, err := io.ReadFull(r.stream, p)
	if err != nil {
		// The stream broke (an idle timeout, a restarted proxy): the rest
		// of this read with a GET of its own, the next read a new stream.
		r.dropStream()
		var m int
		m, err = r.get(p[n:], off+int64(n), off+int64(len(p)))
		n += m
	}
	r.next = off + int64(n)
	return n, err
}

func (r *reader) dropStream() {
	if r.stream != nil {
		r.stream.Close()
		r.stream = nil
	}
}

// get reads [start, end) with one ranged GET.
func (r *reader) get(p []byte, start, end int64) (int, error) {
	f, _, err := r.s.c.ObjectOpen(context.Background(), r.s.cfg.Container, r.name, false,
		swift.Headers{"Range": fmt.Sprintf("bytes=%d-%d", start, end-1)})
	if err != nil {
		return 0, wrap("open", r.key, err)
	}
	defer f.Close()
	n, err := io.ReadFull(f, p[:end-start])
	if err == io.ErrUnexpectedEOF {
		err = fmt.Errorf("object shorter than its %d bytes: %w", r.size, err)
	}
	return n, err
}

func (r *reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropStream()
	r.closed = true
	return nil
}
