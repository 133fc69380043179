package spool_test

import (
	"bytes"
	"context"
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

// write applies a sequence of WriteAt and Truncate calls and checks the
// committed object and whether the stream survived.
func TestPatterns(t *testing.T) {
	type op struct {
		off   int64
		data  string
		trunc int64 // Truncate(trunc) when data is ""
	}
	for _, c := range []struct {
		name      string
		ops       []op
		want      string
		streaming bool
	}{
		{"in order", []op{{0, "hello ", 0}, {6, "world", 0}}, "hello world", true},
		{"hole then ftruncate (cp --sparse)", []op{{0, "ab", 0}, {5, "cd", 0}, {0, "", 10}}, "ab\x00\x00\x00cd\x00\x00\x00", true},
		{"out of order (qemu-img)", []op{{3, "def", 0}, {0, "abc", 0}}, "abcdef", false},
		{"rewrite", []op{{0, "aaaa", 0}, {1, "b", 0}}, "abaa", false},
		{"truncate below", []op{{0, "abcdef", 0}, {0, "", 3}}, "abc", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			b := newLocal(t)
			dir := t.TempDir()
			w, err := spool.New(ctx, b, "k", dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range c.ops {
				if o.data == "" {
					err = w.Truncate(o.trunc)
				} else {
					_, err = w.WriteAt([]byte(o.data), o.off)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			p := make([]byte, len(c.want))
			if n, _ := w.ReadAt(p, 0); n != len(c.want) || !bytes.Equal(p, []byte(c.want)) {
				t.Fatalf("read back %q, want %q", p[:n], c.want)
			}
			if got := w.Streaming(); got != c.streaming {
				t.Errorf("streaming %v, want %v", got, c.streaming)
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
