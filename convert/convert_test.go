package convert

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestRoundTrip writes every fixture in every output format and reads it
// back through Open: writers and readers must agree byte for byte. It needs
// no qemu-img, so it runs everywhere; TestConvertMatrix has qemu judge.
func TestRoundTrip(t *testing.T) {
	for _, fx := range loadFixtures(t) {
		src, err := Open(bytes.NewReader(fx.data), int64(len(fx.data)), fx.format)
		if err != nil {
			t.Fatalf("%s: %v", fx.name, err)
		}
		want := make([]byte, src.Size())
		if _, err := src.ReadAt(want, 0); err != nil {
			t.Fatalf("%s: %v", fx.name, err)
		}
		for _, o := range outputs {
			t.Run(fx.name+"-to-"+o.name, func(t *testing.T) {
				f, err := os.Create(filepath.Join(t.TempDir(), "out"))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				w, err := Create(f, o.fmt, src.Size(), o.opts)
				if err != nil {
					t.Fatal(err)
				}
				if err := Convert(context.Background(), w, src, Options{Workers: 3, SegmentSize: 1}); err != nil {
					t.Fatal(err)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				st, _ := f.Stat()
				format := o.fmt
				if o.name == "vpcfixed" {
					format = "vhd"
				}
				img, err := Open(f, st.Size(), format)
				if err != nil {
					t.Fatalf("Open(output): %v", err)
				}
				// Sector-based formats round the size up with zeros.
				got := make([]byte, img.Size())
				if _, err := img.ReadAt(got, 0); err != nil {
					t.Fatal(err)
				}
				if len(got) < len(want) || !bytes.Equal(got[:len(want)], want) || !isZero(got[len(want):]) {
					t.Errorf("round trip differs (sizes %d, %d)", len(want), len(got))
				}
				exerciseImage(t, img)
			})
		}
	}
}

// failingWriter fails on its third block.
type failingWriter struct {
	n int
}

var errWrite = errors.New("disk full")

func (w *failingWriter) BlockSize() int64 { return 4096 }
func (w *failingWriter) Close() error     { return nil }
func (w *failingWriter) WriteBlock(p []byte, off int64) error {
	w.n++
	if w.n >= 3 {
		return errWrite
	}
	return nil
}

type noisyImage struct{ size int64 }

func (i noisyImage) Size() int64    { return i.size }
func (i noisyImage) Format() string { return Raw }
func (i noisyImage) Extent(off, n int64) (Extent, error) {
	return Extent{Start: off, Length: min(n, i.size-off)}, nil
}
func (i noisyImage) ReadAt(p []byte, off int64) (int, error) {
	for k := range p {
		p[k] = 1
	}
	return len(p), nil
}

func TestConvertStopsOnFirstError(t *testing.T) {
	err := Convert(context.Background(), &failingWriter{}, noisyImage{64 << 20}, Options{Workers: 1})
	if !errors.Is(err, errWrite) {
		t.Fatalf("Convert = %v, want %v", err, errWrite)
	}
}

func TestConvertCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := Create(f, Raw, 64<<20, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := Convert(ctx, w, noisyImage{64 << 20}, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Convert = %v, want context.Canceled", err)
	}
}

func TestConvertProgress(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 10<<20 + 512
	w, err := Create(f, QCOW2, size, CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	err = Convert(context.Background(), w, noisyImage{size}, Options{Progress: func(done, total int64) {
		if done < last || total != size {
			t.Errorf("progress %d/%d after %d", done, total, last)
		}
		last = done
	}})
	if err != nil || last != size {
		t.Fatalf("Convert = %v, progress ended at %d", err, last)
	}
}

func TestCreateRejects(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, c := range []struct {
		format, sub string
		size        int64
	}{
		{"vhdx", "", 1 << 20},
		{"qcow2", "", MaxVirtualSize + 1},
		{"vmdk", "monolithicFlat", 1 << 20},
		{"vpc", "", 2041 << 30},
		{"raw", "fixed", 1 << 20},
	} {
		if _, err := Create(f, c.format, c.size, CreateOptions{Subformat: c.sub}); err == nil {
			t.Errorf("Create(%s, %q, %d) succeeded", c.format, c.sub, c.size)
		}
	}
}

func TestConvertFileRefusesInPlace(t *testing.T) {
	p := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(p, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ConvertFile(context.Background(), p, p, FileOptions{OutFormat: QCOW2}); err == nil {
		t.Fatal("converting a file onto itself succeeded")
	}
	if b, _ := os.ReadFile(p); string(b) != "precious" {
		t.Fatalf("input clobbered: %q", b)
	}
}

// TestConvertSegmentLargerThanIO converts with segments larger than the
// per-call I/O cap (ioSize), from a sparse file whose data runs are longer
// than the cap and whose holes end inside blocks: every byte must arrive.
func TestConvertSegmentLargerThanIO(t *testing.T) {
	const size = 9<<20 + 3000 // the last block is short
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + i>>13)
	}
	clear(data[1<<20+4096 : 3<<20+8192]) // a hole ending mid-block
	clear(data[5<<20 : 5<<20+64<<10])    // a zero cluster read as data
	dir := t.TempDir()
	in, err := os.Create(filepath.Join(dir, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := in.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, r := range [][2]int{{0, 1<<20 + 4096}, {3<<20 + 8192, size}} {
		if _, err := in.WriteAt(data[r[0]:r[1]], int64(r[0])); err != nil {
			t.Fatal(err)
		}
	}
	src, err := Open(in, size, Raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{Raw, QCOW2} {
		for _, seg := range []int64{0, 8 << 20, 64 << 20} {
			f, err := os.Create(filepath.Join(dir, "out"))
			if err != nil {
				t.Fatal(err)
			}
			w, err := Create(f, format, size, CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := Convert(context.Background(), w, src, Options{Workers: 2, SegmentSize: seg}); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			st, _ := f.Stat()
			img, err := Open(f, st.Size(), format)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, size)
			if _, err := img.ReadAt(got, 0); err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("%s, segment %d: output differs", format, seg)
			}
			f.Close()
		}
	}
}
