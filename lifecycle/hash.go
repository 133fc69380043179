package lifecycle

import (
	"crypto/md5"
	"crypto/sha512"
	"encoding/hex"
	"hash"
	"sync"
	"sync/atomic"
)

// streamHasher computes an upload's md5 (Glance's checksum) and sha512
// (os_hash_value) off the write path: each write is copied once and handed
// to two goroutines, one per hash, so the writer's next FUSE request is
// served while the previous bytes are being hashed, and the two hashes run
// on two cores. At most hashQueue chunks wait, which bounds memory.
type streamHasher struct {
	md5, sha     hash.Hash
	md5ch, shach chan *hashChunk
	wg           sync.WaitGroup
	pool         *sync.Pool
}

const hashQueue = 16

type hashChunk struct {
	b    []byte
	refs atomic.Int32
}

func newStreamHasher(pool *sync.Pool) *streamHasher {
	h := &streamHasher{
		md5: md5.New(), sha: sha512.New(),
		md5ch: make(chan *hashChunk, hashQueue), shach: make(chan *hashChunk, hashQueue),
		pool: pool,
	}
	h.wg.Add(2)
	go h.consume(h.md5, h.md5ch)
	go h.consume(h.sha, h.shach)
	return h
}

func (h *streamHasher) consume(sum hash.Hash, ch chan *hashChunk) {
	defer h.wg.Done()
	for c := range ch {
		sum.Write(c.b)
		if c.refs.Add(-1) == 0 {
			h.pool.Put(c)
		}
	}
}

// write queues p, which the caller may reuse once write returns.
func (h *streamHasher) write(p []byte) {
	c, _ := h.pool.Get().(*hashChunk)
	if c == nil {
		c = &hashChunk{}
	}
	c.b = append(c.b[:0], p...)
	c.refs.Store(2)
	h.md5ch <- c
	h.shach <- c
}

// sums waits for the queued bytes and returns md5 and sha512 in hex. The
// hasher is finished afterwards.
func (h *streamHasher) sums() (md5hex, sha512hex string) {
	h.stop()
	return hex.EncodeToString(h.md5.Sum(nil)), hex.EncodeToString(h.sha.Sum(nil))
}

// stop ends the goroutines; it is idempotent.
func (h *streamHasher) stop() {
	if h.md5ch == nil {
		return
	}
	close(h.md5ch)
	close(h.shach)
	h.wg.Wait()
	h.md5ch, h.shach = nil, nil
}
