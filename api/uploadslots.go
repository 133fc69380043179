package api

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"time"
)

// DefaultMaxUploads bounds the uploads in flight (PUT file, PUT stage,
// web-download imports) when Options.MaxUploads is 0: each holds a
// 1 MiB copy buffer, so the bound is also what they can hold of memory.
const DefaultMaxUploads = 64

// uploadRetryAfter is the Retry-After, in seconds, of a 503 for an upload
// that found no slot: uploads last seconds to minutes.
const uploadRetryAfter = 10

// uploadSlots is the global bound on uploads in flight. Each slot is a
// copy buffer, so taking a slot is taking the buffer, and the buffers in
// use never outnumber the slots.
type uploadSlots struct {
	free chan []byte
}

func newUploadSlots(n int) *uploadSlots {
	s := &uploadSlots{free: make(chan []byte, n)}
	for range n {
		s.free <- nil // buffers are made on first use, then reused
	}
	return s
}

// take returns a copy buffer, or an error answering 503 with Retry-After
// when every slot is in use. The caller gives the buffer back with put.
func (s *uploadSlots) take(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	select {
	case buf := <-s.free:
		if buf == nil {
			buf = make([]byte, copyBuffer)
		}
		return buf, nil
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
	return nil, errorf(http.StatusServiceUnavailable, "Too many uploads in flight (%d): try again later.", cap(s.free))
}

// What a refused upload's body may cost before the answer: a moment, and
// as much as one copy buffer.
const (
	shedDrainTime  = time.Second
	shedDrainBytes = copyBuffer
)

func (s *uploadSlots) put(buf []byte) { s.free <- buf }

// wait is take for work that runs after its request has been answered (an
// import task): it waits for a slot instead of refusing.
func (s *uploadSlots) wait(ctx context.Context) ([]byte, error) {
	select {
	case buf := <-s.free:
		if buf == nil {
			buf = make([]byte, copyBuffer)
		}
		return buf, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
