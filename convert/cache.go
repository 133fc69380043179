package convert

import (
	"container/list"
	"fmt"
	"io"
	"sync"
)

// BlockCache keeps decoded pieces of images, shared by every reader of
// every image opened with it: decompressed clusters and grains, and qcow2
// L2 tables. Memory stays within a byte budget however many images are
// open, no one image holds more than a share of it, and concurrent misses
// on one block decode it once (single flight). Entries are never changed
// once stored, so readers copy from them without a lock.
type BlockCache struct {
	budget, perImage int64

	mu      sync.Mutex
	used    int64
	byImage map[string]int64 // bytes held per image
	lru     *list.List       // of *cacheEntry, most recently used first
	entries map[cacheKey]*list.Element
	flights map[cacheKey]*flight // decodes in progress

	// ghosts are blocks read once lately and not kept (see admit): a
	// ring of the last ghostMax, each with the sequence number it was
	// put in with, so that an old slot never drops a newer ghost.
	ghosts    map[cacheKey]uint64
	ghostRing [ghostMax]ghost
	ghostSeq  uint64
}

type ghost struct {
	key cacheKey
	seq uint64
}

// ghostMax bounds the blocks remembered as read once: a few hundred
// KiB of keys.
const ghostMax = 8192

type cacheKey struct {
	image string // the image's identity; its content never changes
	kind  uint8  // what is cached: cachedBlock, cachedL2
	index int64
}

const (
	cachedBlock uint8 = iota // a decompressed guest block
	cachedL2                 // a qcow2 L2 table as stored
)

type cacheEntry struct {
	key  cacheKey
	data []byte
}

type flight struct {
	done    chan struct{}
	data    []byte
	err     error
	waiters int // readers waiting on it besides the decoder; under mu
}

// NewBlockCache returns a cache of at most budget bytes, of which one
// image may hold a quarter (so that one sequential reader does not evict
// everyone else's working set). A budget of 0 caches nothing, but still
// lets concurrent readers of one block share its decoding.
func NewBlockCache(budget int64) *BlockCache {
	return &BlockCache{
		budget:   max(budget, 0),
		perImage: max(budget, 0) / 4,
		byImage:  map[string]int64{},
		lru:      list.New(),
		entries:  map[cacheKey]*list.Element{},
		flights:  map[cacheKey]*flight{},
		ghosts:   map[cacheKey]uint64{},
	}
}

// get returns the cached bytes of key, or fills size fresh bytes with
// fill, caches them and returns them. The result must not be modified.
func (c *BlockCache) get(key cacheKey, size int64, fill func(dst []byte) error) ([]byte, error) {
	c.mu.Lock()
	if el, ok := c.entries[key]; ok {
		c.lru.MoveToFront(el)
		data := el.Value.(*cacheEntry).data
		c.mu.Unlock()
		return data, nil
	}
	if f, ok := c.flights[key]; ok {
		f.waiters++
		c.mu.Unlock()
		<-f.done
		return f.data, f.err
	}
	f := &flight{done: make(chan struct{})}
	c.flights[key] = f
	c.mu.Unlock()

	data := make([]byte, size)
	err := fill(data)
	if err != nil {
		data = nil
	}
	f.data, f.err = data, err

	c.mu.Lock()
	delete(c.flights, key)
	if err == nil {
		c.store(key, data)
	}
	c.mu.Unlock()
	close(f.done)
	return data, err
}

// admit says whether a read of key should go through the cache (get):
// yes if the block is cached or being decoded, or was read once lately.
// A block read for the first time is not: it is remembered, and the
// reader decodes only as far as it needs into a buffer of its own. So
// random reads over more than the cache (fio, 4 KiB) neither decode
// whole clusters they use a sixteenth of nor churn the cache and the
// heap with them, while a block read twice (sequential small reads, a
// filesystem's metadata) is kept from its second read on. (Prefetch
// fills the cache for sequential readers without asking.)
func (c *BlockCache) admit(key cacheKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; ok {
		return true
	}
	if _, ok := c.flights[key]; ok {
		return true
	}
	if _, ok := c.ghosts[key]; ok {
		delete(c.ghosts, key)
		return true
	}
	c.ghostSeq++
	slot := &c.ghostRing[c.ghostSeq%ghostMax]
	if seq, ok := c.ghosts[slot.key]; ok && seq == slot.seq {
		delete(c.ghosts, slot.key)
	}
	*slot = ghost{key: key, seq: c.ghostSeq}
	c.ghosts[key] = c.ghostSeq
	return false
}

// store adds an entry, evicting the least recently used ones of the
// image past its share, then of anyone past the budget. c.mu is held.
func (c *BlockCache) store(key cacheKey, data []byte) {
	n := int64(len(data))
	if n > c.perImage {
		return // too big to keep without evicting a whole share
	}
	for c.byImage[key.image]+n > c.perImage {
		if !c.evictOldest(func(k cacheKey) bool { return k.image == key.image }) {
			break
		}
	}
	for c.used+n > c.budget {
		if !c.evictOldest(func(cacheKey) bool { return true }) {
			break
		}
	}
	c.entries[key] = c.lru.PushFront(&cacheEntry{key: key, data: data})
	c.used += n
	c.byImage[key.image] += n
}

// evictOldest drops the least recently used entry that match accepts.
func (c *BlockCache) evictOldest(match func(cacheKey) bool) bool {
	for el := c.lru.Back(); el != nil; el = el.Prev() {
		e := el.Value.(*cacheEntry)
		if !match(e.key) {
			continue
		}
		c.lru.Remove(el)
		delete(c.entries, e.key)
		n := int64(len(e.data))
		c.used -= n
		if c.byImage[e.key.image] -= n; c.byImage[e.key.image] <= 0 {
			delete(c.byImage, e.key.image)
		}
		return true
	}
	return false
}

// waiting is how many readers wait on the decoding of key.
func (c *BlockCache) waiting(key cacheKey) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.flights[key]; ok {
		return f.waiters
	}
	return 0
}

// Used reports the bytes held and the number of entries.
func (c *BlockCache) Used() (bytes int64, entries int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used, c.lru.Len()
}

// OpenOptions are the options of OpenWith.
type OpenOptions struct {
	// Cache, if set, keeps the image's decoded blocks and tables, under
	// Key, which must name this content and no other.
	Cache *BlockCache
	Key   string
}

// OpenWith is Open, with the image's decoded blocks and tables kept in a
// shared cache.
func OpenWith(r io.ReaderAt, size int64, format string, opts OpenOptions) (Image, error) {
	if opts.Cache != nil && opts.Key == "" {
		return nil, fmt.Errorf("a cached image needs a key")
	}
	img, err := Open(r, size, format)
	if err != nil {
		return nil, err
	}
	if b, ok := img.(*blockImage); ok && opts.Cache != nil {
		b.cache, b.key = opts.Cache, opts.Key
		if q, ok := b.m.(*qcow2Mapper); ok {
			q.cache, q.key = opts.Cache, opts.Key
		}
	}
	return img, nil
}

// Prefetcher is an Image that can decode a range into its cache ahead of
// the reads that will want it.
type Prefetcher interface {
	// Prefetch decodes the compressed blocks of [off, off+length) that
	// the cache lacks; it returns once they are cached (or failed: the
	// read that wants them will say why).
	Prefetch(off, length int64)
	// ReadAtKeep is ReadAt for a sequential reader: every block it
	// decodes is kept, even on its first read, since the prefetching
	// ahead of the reader would otherwise decode it a second time.
	ReadAtKeep(p []byte, off int64) (int, error)
}

// Prefetch implements Prefetcher for images opened with a cache.
func (b *blockImage) Prefetch(off, length int64) {
	if b.cache == nil || b.cache.budget == 0 || off < 0 || length <= 0 {
		return // nothing decoded now would be kept for the read
	}
	end := min(off+length, b.size)
	for idx := off / b.blockSize; idx*b.blockSize < end; idx++ {
		loc, err := b.m.lookup(idx)
		if err != nil {
			return
		}
		if loc.kind != blockCompressed {
			continue
		}
		if _, err := b.cache.get(cacheKey{image: b.key, kind: cachedBlock, index: idx}, b.blockSize, func(dst []byte) error {
			return b.m.inflate(loc, dst)
		}); err != nil {
			return
		}
	}
}
