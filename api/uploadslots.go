package api

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// DefaultMaxUploads bounds the uploads in flight (PUT file, PUT stage,
// web-download imports) when Options.MaxUploads is 0: each holds a
// 1 MiB copy buffer, so the bound is also what they can hold of memory.
const DefaultMaxUploads = 64

// uploadRetryAfter is the Retry-After, in seconds, of a 503 for an upload
// that found no slot: uploads last seconds to minutes.
const uploadRetryAfter = 10

// uploadSlots is the global bound on uploads in flight. Each slot in use
// holds a copy buffer, so the buffers in use never outnumber the slots.
// Idle buffers go back to a sync.Pool, which the GC empties: a daemon that
// once ran many uploads at once does not keep their buffers (a free list
// of slots, each keeping its buffer, held one per slot ever cycled through,
// 64 MiB by default, whatever the concurrency).
type uploadSlots struct {
	inUse   chan struct{} // one token per slot taken
	buffers sync.Pool     // *[]byte of copyBuffer bytes
}

func newUploadSlots(n int) *uploadSlots {
	s := &uploadSlots{inUse: make(chan struct{}, n)}
	s.buffers.New = func() any {
		b := make([]byte, copyBuffer)
		return &b
	}
	return s
}

// take returns a copy buffer, or an error answering 503 with Retry-After
// when every slot is in use. The caller gives the buffer back with put.
func (s *uploadSlots) take(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	select {
	case s.inUse <- struct{}{}:
		return *s.buffers.Get().(*[]byte), nil
	default:
	}
	w.Header().Set("Retry-After", strconv.Itoa(uploadRetryAfter))
	// Shedding load means not taking the body: read (and drop) only what
	// arrives within a moment, so that a client busy sending reads the
	// answer rather than a reset, then close the connection.
	w.Header().Set("Connection", "close")
	body := r.Body
	if sr, ok := body.(*stallReader); ok {
		body = sr.body // which would move the deadline on at each read
	}
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(shedDrainTime))
	io.CopyN(io.Discard, body, shedDrainBytes)
	return nil, errorf(http.StatusServiceUnavailable, "Too many uploads in flight (%d): try again later.", cap(s.inUse))
}

// What a refused upload's body may cost before the answer: a moment, and
// as much as one copy buffer.
const (
	shedDrainTime  = time.Second
	shedDrainBytes = copyBuffer
)

// put gives back a slot and the buffer take or wait returned with it.
func (s *uploadSlots) put(buf []byte) {
	s.buffers.Put(&buf)
	<-s.inUse
}

// wait is take for work that runs after its request has been answered (an
// import task): it waits for a slot instead of refusing.
func (s *uploadSlots) wait(ctx context.Context) ([]byte, error) {
	select {
	case s.inUse <- struct{}{}:
		return *s.buffers.Get().(*[]byte), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
