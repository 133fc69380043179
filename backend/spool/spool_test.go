package spool_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/backend/backendtest"
	"github.com/glimpse-project/glimpse/backend/local"
	"github.com/glimpse-project/glimpse/backend/spool"
)

func newLocal(t *testing.T) backend.Backend {
	l, err := local.Open(local.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// The whole suite, RandomWriter included, through the spool.
func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return spool.Wrap(newLocal(t), t.TempDir())
	})
}

// TestPatterns applies a sequence of WriteAt, Truncate and ReadAt calls and
// checks whether the stream survived (no spool file while it does), what
// reads back, and the committed object.
func TestPatterns(t *testing.T) {
	type op struct {
		off   int64
		data  string
		trunc int64 // Truncate(trunc) when data is "" and read is 0
		read  int   // ReadAt of read bytes at off, checked against want
	}
	for _, c := range []struct {
		name      string
		ops       []op
		want      string
		streaming bool
	}{
		{"in order", []op{{0, "hello ", 0, 0}, {6, "world", 0, 0}}, "hello world", true},
		{"hole then ftruncate (cp --sparse)", []op{{0, "ab", 0, 0}, {5, "cd", 0, 0}, {0, "", 10, 0}}, "ab\x00\x00\x00cd\x00\x00\x00", true},
		{"read past what was streamed", []op{{0, "ab", 0, 0}, {0, "", 6, 0}, {2, "", 0, 4}}, "ab\x00\x00\x00\x00", true},
		{"out of order (qemu-img)", []op{{3, "def", 0, 0}, {0, "abc", 0, 0}}, "abcdef", false},
		{"rewrite", []op{{0, "aaaa", 0, 0}, {1, "b", 0, 0}}, "abaa", false},
		{"truncate below", []op{{0, "abcdef", 0, 0}, {0, "", 3, 0}}, "abc", false},
		{"read back, then go on", []op{{0, "abc", 0, 0}, {1, "", 0, 2}, {3, "def", 0, 0}}, "abcdef", false},
		{"truncate past, read back, write the hole", []op{{0, "ab", 0, 0}, {0, "", 5, 0}, {0, "", 0, 5}, {3, "x", 0, 0}}, "ab\x00x\x00", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			b := newLocal(t)
			dir := t.TempDir()
			w, err := spool.New(ctx, b, "k", dir)
			if err != nil {
				t.Fatal(err)
			}
			written := []byte{}
			for _, o := range c.ops {
				switch {
				case o.read > 0:
					p := make([]byte, o.read)
					n, err := w.ReadAt(p, o.off)
					if err != nil && err != io.EOF {
						t.Fatal(err)
					}
					want := append(written, make([]byte, max(0, int(o.off)+o.read-len(written)))...)[o.off:]
					want = want[:min(len(want), o.read)]
					if !bytes.Equal(p[:n], want) {
						t.Fatalf("ReadAt(%d, %d) = %q, want %q", o.read, o.off, p[:n], want)
					}
				case o.data == "":
					err = w.Truncate(o.trunc)
					if int(o.trunc) < len(written) {
						written = written[:o.trunc]
					} else {
						written = append(written, make([]byte, int(o.trunc)-len(written))...)
					}
				default:
					_, err = w.WriteAt([]byte(o.data), o.off)
					if end := int(o.off) + len(o.data); end > len(written) {
						written = append(written, make([]byte, end-len(written))...)
					}
					copy(written[o.off:], o.data)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if got := w.Streaming(); got != c.streaming {
				t.Errorf("streaming %v, want %v", got, c.streaming)
			}
			// The feature: no local copy while the stream lasts.
			if left, _ := os.ReadDir(dir); (len(left) == 0) != c.streaming {
				t.Errorf("spool files %v while streaming is %v", left, c.streaming)
			}
			p := make([]byte, len(c.want)+1)
			if n, _ := w.ReadAt(p, 0); string(p[:n]) != c.want {
				t.Fatalf("read back %q, want %q", p[:n], c.want)
			}
			if err := w.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			got, err := backendtest.Get(ctx, b, "k")
			if err != nil || string(got) != c.want {
				t.Fatalf("committed %q %v, want %q", got, err, c.want)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Fatalf("spool files left: %v", left)
			}
		})
	}
}

// An upload aborted after it fell back leaves nothing: not the prefix the
// fallback committed under the key, not the spool file.
func TestAbortAfterFallback(t *testing.T) {
	ctx := context.Background()
	b := newLocal(t)
	dir := t.TempDir()
	w, err := spool.New(ctx, b, "k", dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("abcdef"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("X"), 2); err != nil {
		t.Fatal(err)
	}
	if w.Streaming() {
		t.Fatal("still streaming after a write below the streamed bytes")
	}
	if _, err := b.Stat(ctx, "k"); err != nil {
		t.Fatalf("the prefix is not under the key after the fallback: %v", err)
	}
	if err := w.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx, "k"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("stat after abort: %v, want not found", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("spool files left: %v", left)
	}
	if _, err := w.WriteAt([]byte("x"), 0); err == nil {
		t.Fatal("write after abort succeeded")
	}
}
