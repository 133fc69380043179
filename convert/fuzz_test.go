package convert

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// Fuzz inputs describe an image sparsely, so that seeds made from real
// images (a vhdx is megabytes of mostly zeros) stay small and mutations
// land on metadata: a u64 file size, then records {u64 offset, u16
// length, bytes}. Everything not covered reads as zeros.

const fuzzMaxSize = 1 << 40

type sparseFile struct {
	size int64
	recs []sparseRec
}

type sparseRec struct {
	off  int64
	data []byte
}

func decodeSparse(b []byte) *sparseFile {
	s := &sparseFile{}
	if len(b) < 8 {
		return s
	}
	s.size = int64(binary.LittleEndian.Uint64(b) % fuzzMaxSize)
	b = b[8:]
	for len(b) >= 10 {
		off := int64(binary.LittleEndian.Uint64(b) % fuzzMaxSize)
		n := int(binary.LittleEndian.Uint16(b[8:]))
		b = b[10:]
		n = min(n, len(b))
		s.recs = append(s.recs, sparseRec{off, b[:n]})
		b = b[n:]
	}
	return s
}

func (s *sparseFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= s.size {
		return 0, io.EOF
	}
	n := len(p)
	var err error
	if int64(n) > s.size-off {
		n, err = int(s.size-off), io.EOF
	}
	clear(p[:n])
	for _, r := range s.recs {
		lo, hi := max(r.off, off), min(r.off+int64(len(r.data)), off+int64(n))
		if lo < hi {
			copy(p[lo-off:hi-off], r.data[lo-r.off:hi-r.off])
		}
	}
	return n, err
}

// encodeSparse turns an image into a fuzz input, dropping zero sectors.
func encodeSparse(img []byte) []byte {
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(img)))
	for off := 0; off < len(img); {
		end := min(off+512, len(img))
		if isZero(img[off:end]) {
			off = end
			continue
		}
		start := off
		for end < len(img) && end-start < 32768 && !isZero(img[end:min(end+512, len(img))]) {
			end = min(end+512, len(img))
		}
		out = binary.LittleEndian.AppendUint64(out, uint64(start))
		out = binary.LittleEndian.AppendUint16(out, uint16(end-start))
		out = append(out, img[start:end]...)
		off = end
	}
	return out
}

// exerciseImage reads a bounded part of img and checks the Image
// invariants: extents stay in range and make progress, and zero extents
// read as zeros.
func exerciseImage(t testing.TB, img Image) {
	size := img.Size()
	if size < 0 || size > MaxVirtualSize {
		t.Fatalf("Size %d out of range", size)
	}
	buf := make([]byte, 256<<10)
	pos := int64(0)
	for i := 0; i < 16 && pos < size; i++ {
		ext, err := img.Extent(pos, 16<<20)
		if err != nil {
			return // a refused table entry is a fine answer
		}
		if ext.Start != pos || ext.Length <= 0 || ext.Length > size-pos {
			t.Fatalf("Extent(%d) = %+v, size %d", pos, ext, size)
		}
		n := min(ext.Length, int64(len(buf)))
		if _, err := img.ReadAt(buf[:n], pos); err != nil && !errors.Is(err, io.EOF) {
			return
		}
		if ext.Zero && !isZero(buf[:n]) {
			t.Fatalf("zero extent at %d reads non-zero", pos)
		}
		pos += ext.Length
	}
	if size > 0 {
		_, _ = img.ReadAt(buf[:min(size, 4096)], size-min(size, 4096))
	}
}

func addSeeds(f *testing.F, format string) {
	for _, fx := range loadFixtures(f) {
		if format == "" || fx.format == format {
			f.Add(encodeSparse(fx.data))
		}
	}
	f.Add([]byte{})
	f.Add(encodeSparse([]byte("QFI\xfb\x00\x00\x00\x03")))
	// The vmdk descriptor forms qemu probes (converttest.VMDKDescriptors
	// has them whole, for the faces' tests).
	for _, d := range []string{
		"# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\nRW 2048 FLAT \"/etc/passwd\" 0\n",
		"version=1\ncreateType=\"monolithicFlat\"\nRW 2048 FLAT \"/etc/passwd\" 0\n",
		"# by hand\n#\nversion=2\nRW 2048 FLAT \"/etc/passwd\" 0\n",
		"   \n \nversion=1\nRW 2048 FLAT \"/etc/passwd\" 0\n",
		"version=1\r\ncreateType=\"monolithicFlat\"\r\nRW 2048 FLAT \"/etc/passwd\" 0\r\n",
		"#!\r\n  \r\n# x\r\nversion=3\r\nRW 2048 FLAT \"/etc/passwd\" 0\r\n",
	} {
		f.Add(encodeSparse([]byte(d)))
	}
}

// FuzzInspect: Inspect must never panic, hang or allocate without bound,
// and what it accepts must open and read within bounds.
func FuzzInspect(f *testing.F) {
	addSeeds(f, "")
	f.Fuzz(func(t *testing.T, b []byte) {
		s := decodeSparse(b)
		rep, err := Inspect(s, s.size)
		if err != nil {
			if !errors.Is(err, ErrUnsafe) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("refusal %q wraps neither ErrUnsafe nor ErrCorrupt", err)
			}
			return
		}
		if rep.VirtualSize < 0 || rep.VirtualSize > MaxVirtualSize {
			t.Fatalf("virtual size %d accepted", rep.VirtualSize)
		}
		if !rep.Matches(rep.Format) || !rep.Matches("") {
			t.Fatalf("report does not match its own format")
		}
		img, err := Open(s, s.size, "")
		if err != nil {
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("Inspect accepted what Open refuses: %v", err)
			}
			return
		}
		exerciseImage(t, img)
	})
}

func fuzzFormat(f *testing.F, format string) {
	addSeeds(f, format)
	f.Fuzz(func(t *testing.T, b []byte) {
		s := decodeSparse(b)
		img, err := Open(s, s.size, format)
		if err != nil {
			return
		}
		exerciseImage(t, img)
	})
}

func FuzzQCOW2(f *testing.F) { fuzzFormat(f, QCOW2) }
func FuzzVMDK(f *testing.F)  { fuzzFormat(f, VMDK) }
func FuzzVDI(f *testing.F)   { fuzzFormat(f, VDI) }
func FuzzVPC(f *testing.F)   { fuzzFormat(f, VPC) }
func FuzzVHDX(f *testing.F)  { fuzzFormat(f, VHDX) }

// TestSparseRoundTrip keeps the seed encoding honest.
func TestSparseRoundTrip(t *testing.T) {
	for _, fx := range loadFixtures(t) {
		s := decodeSparse(encodeSparse(fx.data))
		got := make([]byte, s.size)
		if _, err := s.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, fx.data) {
			t.Errorf("%s: sparse round trip differs", fx.name)
		}
	}
}
