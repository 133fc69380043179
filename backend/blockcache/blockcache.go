// Package blockcache gives random access to remote objects (S3, HTTP)
// through fixed-size blocks kept in a bounded in-memory LRU cache shared by
// every reader of a store, with readahead for sequential readers.
//
// A remote store supplies a Fetch function that reads one range; the cache
// turns each ReadAt into whole-block fetches, so that the many small reads
// of a format inspector or of the kernel (128 KiB) become a few large ranged
// requests, and a sequential reader finds the next blocks already fetched or
// in flight. Two readers of the same object version share blocks; a fetch
// in flight is never duplicated.
//
// Memory: at most Config.Size bytes of fetched blocks stay cached, plus the
// blocks being fetched (at most Config.Fetchers readahead blocks, and one
// per ReadAt in progress).
package blockcache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for a zero Config field.
const (
	DefaultBlockSize = 4 << 20
	DefaultSize      = 64 << 20
	DefaultReadAhead = 8
	DefaultFetchers  = 4
)

// Config sizes a Cache.
type Config struct {
	// BlockSize is the unit of fetching and caching, in bytes.
	BlockSize int64
	// Size bounds the bytes of cached blocks.
	Size int64
	// ReadAhead is how many blocks past a sequential read are fetched
	// ahead; a reader's window doubles from 1 up to this. Negative turns
	// readahead off. It is cut to half the cache, so that blocks fetched
	// ahead do not evict the ones about to be read.
	ReadAhead int
	// Fetchers bounds the readahead fetches in flight across all readers.
	Fetchers int
	// StreamBlockTimeout ends a stream (see Reader.SetStream) that takes
	// longer than this to deliver one block; the reader then fetches the
	// block itself. 30 s when 0.
	StreamBlockTimeout time.Duration
}

// FetchFunc fills p with the object's bytes at off; the range never runs
// past the object's end. It must be safe for concurrent use.
type FetchFunc func(ctx context.Context, p []byte, off int64) error

// StreamFunc opens the object's bytes from off to its end, for a
// sequential reader: one long GET instead of one per block. Optional.
type StreamFunc func(ctx context.Context, off int64) (io.ReadCloser, error)

// errStreamStopped marks a block that a stream was loading when it
// stopped: whoever waits for it fetches it again instead of failing.
var errStreamStopped = errors.New("blockcache: stream stopped")

// streamIdle ends a stream whose reader has not moved for this long.
const streamIdle = 30 * time.Second

// Cache is a block cache shared by the readers of one store.
type Cache struct {
	cfg      Config
	fetchers chan struct{} // readahead slots

	pool sync.Pool // *[]byte of BlockSize, from evicted blocks

	mu     sync.Mutex
	used   int64
	lru    *list.List // of *block, most recent first; loaded blocks only
	blocks map[blockKey]*block
}

type blockKey struct {
	id  string
	idx int64
}

type block struct {
	key  blockKey
	done chan struct{} // closed once data or err is set
	data []byte
	err  error
	elem *list.Element // in lru; nil while loading or after eviction

	refs    int  // readers copying from data (under Cache.mu)
	evicted bool // out of the cache; data is recycled at refs == 0
}

// New returns an empty cache.
func New(cfg Config) *Cache {
	if cfg.BlockSize <= 0 {
		cfg.BlockSize = DefaultBlockSize
	}
	if cfg.Size <= 0 {
		cfg.Size = DefaultSize
	}
	if cfg.ReadAhead == 0 {
		cfg.ReadAhead = DefaultReadAhead
	}
	if cfg.Fetchers <= 0 {
		cfg.Fetchers = DefaultFetchers
	}
	if cfg.StreamBlockTimeout <= 0 {
		cfg.StreamBlockTimeout = 30 * time.Second
	}
	// Blocks fetched ahead must not push out the ones being read before
	// their reader gets to them: keep the window within half the cache.
	if limit := int(cfg.Size / 2 / cfg.BlockSize); cfg.ReadAhead > limit {
		cfg.ReadAhead = max(limit, -1)
		if cfg.ReadAhead == 0 {
			cfg.ReadAhead = -1
		}
	}
	return &Cache{
		cfg:      cfg,
		fetchers: make(chan struct{}, cfg.Fetchers),
		lru:      list.New(),
		blocks:   make(map[blockKey]*block),
	}
}

// Used is the bytes of cached blocks (for tests and metrics).
func (c *Cache) Used() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// Reader gives random access to one immutable object version of size
// bytes. id must change whenever the content may (include the ETag or
// version). Fetches run under ctx (the store's: cancelled when it closes).
func (c *Cache) Reader(ctx context.Context, id string, size int64, fetch FetchFunc) *Reader {
	return &Reader{c: c, ctx: ctx, id: id, size: size, fetch: fetch}
}

// Reader is an io.ReaderAt over cached blocks. Safe for concurrent use.
type Reader struct {
	c     *Cache
	ctx   context.Context
	id    string
	size  int64
	fetch FetchFunc

	open StreamFunc // nil: readahead fetches block by block

	mu       sync.Mutex
	next     int64 // where a sequential reader reads next
	streak   int   // sequential reads in a row
	runBytes int64 // bytes those reads asked for
	st       *stream
}

// stream is one long GET feeding blocks into the cache ahead of a
// sequential reader, never more than the readahead window ahead of it.
type stream struct {
	cancel context.CancelFunc
	next   atomic.Int64 // block it reads now
	limit  atomic.Int64 // it may read blocks below this
	poke   chan struct{}
	done   chan struct{}

	mu     sync.Mutex
	owned  map[int64]*block // registered as loading, for the stream to fill
	regEnd int64            // blocks below this were offered to owned
	closed bool             // no more registering
}

// claim registers the blocks below limit that nobody has as loading by the
// stream, so that a reader needing one waits for the stream instead of
// fetching it a second time.
func (st *stream) claim(r *Reader, limit int64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return
	}
	for idx := max(st.regEnd, st.next.Load()); idx < limit; idx++ {
		if b, loading := r.c.lookup(r.id, idx); loading {
			st.owned[idx] = b
		}
	}
	st.regEnd = max(st.regEnd, limit)
}

// take removes block idx from the stream's claims.
func (st *stream) take(idx int64) *block {
	st.mu.Lock()
	defer st.mu.Unlock()
	b := st.owned[idx]
	delete(st.owned, idx)
	return b
}

// release gives up the blocks still claimed: their waiters fetch them.
func (st *stream) release(c *Cache) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closed = true
	for idx, b := range st.owned {
		c.fail(b, errStreamStopped)
		delete(st.owned, idx)
	}
}

// SetStream makes sequential readahead use one long GET (open) instead of
// a GET per block. Call it before the first ReadAt.
func (r *Reader) SetStream(open StreamFunc) { r.open = open }

// Size is the object's length.
func (r *Reader) Size() int64 { return r.size }

// Close implements io.Closer: it stops the reader's stream. Cached blocks
// stay for other readers.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.st != nil {
		r.st.cancel()
		r.st = nil
	}
	return nil
}

// ReadAt implements io.ReaderAt: a read past the end is short with io.EOF.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("blockcache: negative offset %d", off)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if off >= r.size {
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), r.size)
	r.readahead(off, end)
	bs := r.c.cfg.BlockSize
	n := 0
	for pos := off; pos < end; {
		idx := pos / bs
		// Whole blocks that are not cached go straight into p, in one
		// fetch: a large read neither copies nor evicts others' blocks.
		if run := r.c.uncachedRun(r.id, pos, end, bs); run > 0 {
			if err := r.fetch(r.ctx, p[n:n+int(run)], pos); err != nil {
				return n, err
			}
			n += int(run)
			pos += run
			continue
		}
		b, err := r.c.get(r.ctx, r.id, idx, r.blockLen(idx), r.fetch)
		if err != nil {
			return n, err
		}
		k := copy(p[n:], b.data[pos-idx*bs:min(end-idx*bs, int64(len(b.data)))])
		r.c.release(b)
		n += k
		pos += int64(k)
	}
	if end < off+int64(len(p)) {
		return n, io.EOF
	}
	return n, nil
}

func (r *Reader) blockLen(idx int64) int64 {
	bs := r.c.cfg.BlockSize
	return min(bs, r.size-idx*bs)
}

// readahead notes the read [off, end) and, for a sequential reader, starts
// fetching the blocks after it. Reads that arrive slightly out of order (the
// kernel's async reads) within one block of the expected offset still count
// as sequential.
func (r *Reader) readahead(off, end int64) {
	if r.c.cfg.ReadAhead < 0 {
		return
	}
	bs := r.c.cfg.BlockSize
	r.mu.Lock()
	if off >= r.next-bs && off <= r.next+bs && (off > 0 || r.next > 0) {
		r.streak++
		r.runBytes += end - off
	} else {
		r.streak, r.runBytes = 0, end-off
	}
	r.next = max(r.next, end)
	if off < r.next-bs {
		r.next = end // a seek backwards
	}
	streak, run := r.streak, r.runBytes
	r.mu.Unlock()
	// Readahead starts once the run has asked for a block's worth: a
	// format reader's few small reads of its header and tables near one
	// another (a qcow2's header, L1 and refcount table in the first
	// block) look sequential, and must not start a window of blocks (or
	// a GET of the object's rest) that nobody will read.
	if streak == 0 || run < bs {
		return
	}
	ahead := int64(min(r.c.cfg.ReadAhead, 1<<min(streak-1, 20)))
	last := (r.size - 1) / bs
	if r.open != nil {
		r.streamAhead((end-1)/bs, ahead, last)
		return
	}
	for idx := (end-1)/bs + 1; idx <= min(last, (end-1)/bs+ahead); idx++ {
		if !r.c.prefetch(r.ctx, r.id, idx, r.blockLen(idx), r.fetch) {
			break // no fetcher free: the window is busy enough
		}
	}
}

// streamAhead lets the reader's stream run to ahead blocks past block cur,
// starting a stream if there is none or it fell behind the reader.
func (r *Reader) streamAhead(cur, ahead, last int64) {
	if cur >= last {
		return
	}
	ahead = max(ahead, int64(r.c.cfg.ReadAhead)) // one GET: use the window
	limit := min(last+1, cur+1+ahead)
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.st
	if st != nil && (isDone(st.done) || st.next.Load()+ahead < cur) {
		st.cancel() // ended, or the reader left it far behind
		st = nil
	}
	if st == nil {
		// A new stream starts at the first block the window lacks. When
		// it lacks none (a stream that ended had read to the end before
		// the reader got there), a GET would read bytes only to discard
		// them: the reader's next calls start one if a block goes missing.
		first := r.c.firstUnknown(r.id, cur+1, limit)
		if first == limit {
			r.st = nil
			return
		}
		ctx, cancel := context.WithCancel(r.ctx)
		st = &stream{cancel: cancel, poke: make(chan struct{}, 1), done: make(chan struct{}), owned: make(map[int64]*block)}
		st.next.Store(first)
		r.st = st
		go r.runStream(ctx, st, first, last)
	}
	st.claim(r, limit)
	st.limit.Store(limit)
	select {
	case st.poke <- struct{}{}:
	default:
	}
}

func isDone(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// runStream reads blocks first..last from one GET into the cache, pausing
// whenever it reaches the limit the reader sets.
func (r *Reader) runStream(ctx context.Context, st *stream, first, last int64) {
	defer close(st.done)
	defer st.release(r.c)
	defer st.cancel()
	bs := r.c.cfg.BlockSize
	body, err := r.open(ctx, first*bs)
	if err != nil {
		return // the reader's own fetches will report the error
	}
	defer body.Close()
	idle := time.NewTimer(streamIdle)
	defer idle.Stop()
	for idx := first; idx <= last; idx++ {
		st.next.Store(idx)
		for idx >= st.limit.Load() {
			idle.Reset(streamIdle)
			select {
			case <-st.poke:
			case <-ctx.Done():
				return
			case <-idle.C:
				return
			}
		}
		n := r.blockLen(idx)
		b := st.take(idx)
		if b == nil {
			// Someone else's (cached or being fetched): skip its bytes.
			if _, err := io.CopyN(io.Discard, body, n); err != nil {
				return
			}
			continue
		}
		// A stalled body is cut by cancelling the stream's request.
		stall := time.AfterFunc(r.c.cfg.StreamBlockTimeout, st.cancel)
		r.c.load(b, n, func(p []byte) error {
			if _, err := io.ReadFull(body, p); err != nil {
				return fmt.Errorf("%w: %w", errStreamStopped, err)
			}
			return nil
		})
		stall.Stop()
		if b.err != nil {
			return
		}
	}
}

// firstUnknown is the first block in [from, to) of object id that is
// neither cached nor in flight, or to if there is none.
func (c *Cache) firstUnknown(id string, from, to int64) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	for idx := from; idx < to; idx++ {
		if _, ok := c.blocks[blockKey{id, idx}]; !ok {
			return idx
		}
	}
	return to
}

// uncachedRun is the length of the run of whole blocks from pos (which
// must be block-aligned) up to end that are neither cached nor in flight;
// 0 if pos starts a partial or a known block.
func (c *Cache) uncachedRun(id string, pos, end, bs int64) int64 {
	if pos%bs != 0 {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	run := int64(0)
	for p := pos; p < end; p += bs {
		if end-p < bs {
			break // a partial block: through the cache
		}
		if _, ok := c.blocks[blockKey{id, p / bs}]; ok {
			break
		}
		run += bs
	}
	return run
}

// get returns block idx of object id, fetching it unless it is cached or
// being fetched.
// The block comes with a reference: the caller must release it, and until
// then its memory is not reused.
func (c *Cache) get(ctx context.Context, id string, idx, n int64, fetch FetchFunc) (*block, error) {
	for {
		b, loading := c.lookup(id, idx)
		if loading {
			c.load(b, n, func(p []byte) error { return fetch(ctx, p, idx*c.cfg.BlockSize) })
		}
		select {
		case <-b.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if errors.Is(b.err, errStreamStopped) {
			continue // a stream gave up on it: fetch it ourselves
		}
		if b.err != nil {
			return nil, b.err
		}
		c.mu.Lock()
		if b.evicted {
			c.mu.Unlock()
			continue // gone already, its memory may be reused
		}
		b.refs++
		c.mu.Unlock()
		return b, nil
	}
}

// release drops a reference taken by get; the memory of an evicted block
// goes back to the pool with its last reference.
func (c *Cache) release(b *block) {
	c.mu.Lock()
	b.refs--
	recycle := b.evicted && b.refs == 0
	c.mu.Unlock()
	if recycle {
		c.putBuf(b.data)
	}
}

// getBuf returns n bytes, reusing the memory of an evicted block when it
// can: fresh 4 MiB allocations cost page faults and zeroing, which showed
// as the main cost of sequential reads.
func (c *Cache) getBuf(n int64) []byte {
	if n == c.cfg.BlockSize {
		if p, ok := c.pool.Get().(*[]byte); ok {
			return *p
		}
	}
	return make([]byte, n)
}

func (c *Cache) putBuf(p []byte) {
	if int64(cap(p)) == c.cfg.BlockSize {
		p = p[:cap(p)]
		c.pool.Put(&p)
	}
}

// prefetch starts fetching block idx in the background if it is neither
// cached nor in flight and a fetcher is free. It reports false when none
// was free.
func (c *Cache) prefetch(ctx context.Context, id string, idx, n int64, fetch FetchFunc) bool {
	c.mu.Lock()
	_, ok := c.blocks[blockKey{id, idx}]
	c.mu.Unlock()
	if ok {
		return true
	}
	select {
	case c.fetchers <- struct{}{}:
	default:
		return false
	}
	b, loading := c.lookup(id, idx)
	if !loading {
		<-c.fetchers
		return true
	}
	go func() {
		defer func() { <-c.fetchers }()
		c.load(b, n, func(p []byte) error { return fetch(ctx, p, idx*c.cfg.BlockSize) })
	}()
	return true
}

// lookup finds block idx, or registers it as loading (loading true: the
// caller must load it).
func (c *Cache) lookup(id string, idx int64) (b *block, loading bool) {
	k := blockKey{id, idx}
	c.mu.Lock()
	defer c.mu.Unlock()
	if b := c.blocks[k]; b != nil {
		if b.elem != nil {
			c.lru.MoveToFront(b.elem)
		}
		return b, false
	}
	b = &block{key: k, done: make(chan struct{})}
	c.blocks[k] = b
	return b, true
}

// fail publishes err for a loading block and forgets it.
func (c *Cache) fail(b *block, err error) {
	c.mu.Lock()
	b.err = err
	delete(c.blocks, b.key)
	c.mu.Unlock()
	close(b.done)
}

// load fetches b and publishes the result; a failed block is forgotten so
// that the next read tries again.
func (c *Cache) load(b *block, n int64, fill func([]byte) error) {
	data := c.getBuf(n)
	err := fill(data)
	var recycle [][]byte
	c.mu.Lock()
	if err != nil {
		b.err = err
		if errors.Is(err, context.Canceled) {
			b.err = fmt.Errorf("blockcache: fetch cancelled: %w", err)
		}
		delete(c.blocks, b.key)
	} else {
		b.data = data
		b.elem = c.lru.PushFront(b)
		c.used += n
		for c.used > c.cfg.Size && c.lru.Len() > 1 {
			old := c.lru.Remove(c.lru.Back()).(*block)
			old.elem = nil
			old.evicted = true
			delete(c.blocks, old.key)
			c.used -= int64(len(old.data))
			if old.refs == 0 {
				recycle = append(recycle, old.data)
			}
		}
	}
	c.mu.Unlock()
	if err != nil {
		c.putBuf(data)
	}
	for _, p := range recycle {
		c.putBuf(p)
	}
	close(b.done)
}
