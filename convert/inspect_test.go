package convert

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

func patchFile(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// TestInspectRefuses builds the hostile images of the disk-formats note
// (backing and data files, flat extents, polyglots, truncation, absurd
// sizes) and checks each is refused with the right sentinel.
func TestInspectRefuses(t *testing.T) {
	base := makeSamples(t, "")
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret.txt")
	if err := os.WriteFile(secret, []byte("TOP-SECRET host file contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := func(name string) string { return filepath.Join(filepath.Dir(base), name) }
	pvd := append([]byte{1}, "CD001\x01"...)

	cases := []struct {
		name  string
		make  func(path string)
		want  error
		words string // part of the user-facing message
	}{
		{"qcow2 backing file", func(x string) {
			mustQemuImg(t, "create", "-f", "qcow2", "-b", secret, "-F", "raw", x, "1M")
		}, ErrUnsafe, "backing file"},
		{"qcow2 external data file", func(x string) {
			df := filepath.Join(dir, "datafile.raw")
			copyFile(t, secret, df)
			mustQemuImg(t, "create", "-f", "qcow2", "-o", "data_file="+df+",data_file_raw=on", x, "1M")
		}, ErrUnsafe, "external data file"},
		{"qcow2 unknown incompatible feature", func(x string) {
			copyFile(t, p("qcow2v3"), x)
			patchFile(t, x, 72, be64(1<<5))
		}, ErrUnsafe, "unknown incompatible features"},
		{"qcow2 corrupt bit", func(x string) {
			copyFile(t, p("qcow2v3"), x)
			patchFile(t, x, 72, be64(qcow2IncompatCorrupt))
		}, ErrCorrupt, "marked corrupt"},
		{"qcow2 encrypted", func(x string) {
			copyFile(t, p("qcow2v3"), x)
			patchFile(t, x, 32, be32(1))
		}, ErrUnsafe, "encrypted"},
		{"qcow2 absurd size", func(x string) {
			copyFile(t, p("qcow2v3"), x)
			patchFile(t, x, 24, be64(1<<60))
		}, ErrCorrupt, "absurd"},
		{"qcow2 huge L1", func(x string) {
			copyFile(t, p("qcow2v3"), x)
			patchFile(t, x, 36, be32(0xffffffff))
		}, ErrCorrupt, "L1"},
		{"qcow2 truncated", func(x string) {
			copyFile(t, p("qcow2v2"), x)
			if err := os.Truncate(x, 3<<16); err != nil {
				t.Fatal(err)
			}
		}, ErrCorrupt, "past the end"},
		{"qcow2 inside an iso", func(x string) {
			copyFile(t, p("qcow2v2"), x)
			patchFile(t, x, 32768, pvd)
		}, ErrUnsafe, "several formats"},
		{"qcow2 inside a gpt disk", func(x string) {
			copyFile(t, p("qcow2v2"), x)
			patchFile(t, x, 510, []byte("\x55\xaaEFI PART"))
		}, ErrUnsafe, "several formats"},
		{"vmdk inside an iso", func(x string) {
			copyFile(t, p("vmdk"), x)
			patchFile(t, x, 32768, pvd)
		}, ErrUnsafe, "several formats"},
		{"vmdk monolithicFlat", func(x string) {
			mustQemuImg(t, "create", "-f", "vmdk", "-o", "subformat=monolithicFlat", x, "1M")
		}, ErrUnsafe, "names other files"},
		{"vmdk twoGbMaxExtentSparse", func(x string) {
			mustQemuImg(t, "create", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", x, "1M")
		}, ErrUnsafe, "names other files"},
		{"vmdk hand-made flat descriptor", func(x string) {
			d := "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\nRW 2048 FLAT \"" + secret + "\" 0\n"
			if err := os.WriteFile(x, []byte(d), 0o644); err != nil {
				t.Fatal(err)
			}
		}, ErrUnsafe, "names other files"},
		{"vmdk sparse with a flat extent", func(x string) {
			copyFile(t, p("vmdk"), x)
			b, _ := os.ReadFile(x)
			i := bytes.Index(b, []byte(`SPARSE "vmdk"`))
			if i < 0 {
				t.Fatal("no extent line in the sample")
			}
			patchFile(t, x, int64(i), []byte(`FLAT "/etc/"`))
		}, ErrUnsafe, "extent names another file"},
		{"vmdk stream truncated", func(x string) {
			// Ours, unlike qemu's, keeps the grain directory at the end.
			if err := ConvertFile(t.Context(), base, x, FileOptions{InFormat: "raw", OutFormat: "vmdk", Create: CreateOptions{Subformat: "streamOptimized"}}); err != nil {
				t.Fatal(err)
			}
			st, _ := os.Stat(x)
			if err := os.Truncate(x, st.Size()-4096); err != nil {
				t.Fatal(err)
			}
		}, ErrCorrupt, "footer"},
		{"vpc differencing", func(x string) {
			copyFile(t, p("vpc"), x)
			f, _ := os.ReadFile(x)
			foot := f[:512]
			copy(foot[60:], be32(vhdTypeDiff))
			copy(foot[vhdChecksumOff:], be32(vhdChecksum(foot, vhdChecksumOff)))
			patchFile(t, x, 0, foot)
		}, ErrUnsafe, "differencing"},
		{"vpc bad checksum", func(x string) {
			copyFile(t, p("vpc"), x)
			patchFile(t, x, 40, be64(1<<40))
		}, ErrCorrupt, "checksum"},
		{"vpc truncated", func(x string) {
			copyFile(t, p("vpc"), x)
			if err := os.Truncate(x, 4096); err != nil {
				t.Fatal(err)
			}
		}, ErrCorrupt, "past the end"},
		{"vdi truncated", func(x string) {
			copyFile(t, p("vdi"), x)
			if err := os.Truncate(x, 400); err != nil {
				t.Fatal(err)
			}
		}, ErrCorrupt, "past the end"},
		{"vdi with a parent", func(x string) {
			copyFile(t, p("vdi"), x)
			patchFile(t, x, 0x188+48, []byte{1})
		}, ErrUnsafe, "parent"},
		{"vhdx truncated", func(x string) {
			copyFile(t, p("vhdx"), x)
			if err := os.Truncate(x, 200<<10); err != nil {
				t.Fatal(err)
			}
		}, ErrCorrupt, "past the end"},
		{"vhdx bad headers", func(x string) {
			copyFile(t, p("vhdx"), x)
			patchFile(t, x, 64<<10+100, []byte{1})
			patchFile(t, x, 128<<10+100, []byte{1})
		}, ErrCorrupt, "header"},
		{"qed", func(x string) {
			mustQemuImg(t, "create", "-f", "qed", x, "1M")
		}, ErrUnsafe, "qed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := filepath.Join(t.TempDir(), "evil")
			c.make(x)
			_, err := inspectFile(t, x)
			if !errors.Is(err, c.want) {
				t.Fatalf("Inspect = %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.words) {
				t.Errorf("message %q does not mention %q", err, c.words)
			}
			if strings.Count(err.Error(), "\n") != 0 {
				t.Errorf("message is not one line: %q", err)
			}
		})
	}
}

// TestInspectISO checks ISO detection and the one tolerated double match,
// a hybrid ISO with a GPT in its system area.
func TestInspectISO(t *testing.T) {
	img := make([]byte, 64<<10)
	copy(img[32768:], append([]byte{1}, "CD001\x01"...))
	rep, err := Inspect(bytes.NewReader(img), int64(len(img)))
	if err != nil || rep.Format != ISO || rep.VirtualSize != int64(len(img)) {
		t.Fatalf("plain iso: %+v, %v", rep, err)
	}
	copy(img[510:], "\x55\xaaEFI PART")
	rep, err = Inspect(bytes.NewReader(img), int64(len(img)))
	if err != nil || rep.Format != ISO {
		t.Fatalf("hybrid iso: %+v, %v", rep, err)
	}
	gpt := make([]byte, 64<<10)
	copy(gpt[510:], "\x55\xaaEFI PART")
	rep, err = Inspect(bytes.NewReader(gpt), int64(len(gpt)))
	if err != nil || rep.Format != Raw || !rep.GPT || !rep.Matches("raw") || rep.Matches("iso") {
		t.Fatalf("gpt disk: %+v, %v", rep, err)
	}
}

func TestMatches(t *testing.T) {
	for _, c := range []struct {
		rep      Report
		declared string
		want     bool
	}{
		{Report{Format: Raw}, "", true},
		{Report{Format: QCOW2}, "", true},
		{Report{Format: QCOW2}, "qcow2", true},
		{Report{Format: QCOW2}, "raw", false},
		{Report{Format: Raw}, "qcow2", false},
		{Report{Format: VPC}, "vhd", true},
		{Report{Format: VPC, FixedVHD: true}, "vhd", true},
		{Report{Format: VPC, FixedVHD: true}, "raw", true},
		{Report{Format: VPC}, "raw", false},
		{Report{Format: Raw}, "vhd", false},
		{Report{Format: VHDX}, "vhd", false},
		{Report{Format: ISO}, "iso", true},
		{Report{Format: ISO}, "raw", false},
		{Report{Format: Raw, GPT: true}, "raw", true},
		{Report{Format: Raw}, "aki", true},
		{Report{Format: QCOW2}, "ami", false},
		{Report{Format: VMDK}, "vmdk", true},
	} {
		if got := c.rep.Matches(c.declared); got != c.want {
			t.Errorf("%+v.Matches(%q) = %v, want %v", c.rep, c.declared, got, c.want)
		}
	}
}

// countingReader counts the bytes Inspect reads.
type countingReader struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.n.Add(int64(len(p)))
	return c.r.ReadAt(p, off)
}

// TestInspectReadsOnlyMetadata checks that inspection reads a small,
// bounded part of each image, however large the disk.
func TestInspectReadsOnlyMetadata(t *testing.T) {
	dir := t.TempDir()
	makeSamples(t, dir)
	big := filepath.Join(dir, "big.qcow2")
	mustQemuImg(t, "create", "-f", "qcow2", big, "10T")
	names := []string{"big.qcow2"}
	for _, s := range samples {
		names = append(names, s.name)
	}
	for _, n := range names {
		f, err := os.Open(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		cr := &countingReader{r: f}
		if _, err := Inspect(cr, st.Size()); err != nil {
			t.Errorf("%s: %v", n, err)
		}
		f.Close()
		// vhdx needs its 64 KiB metadata table and two region tables.
		if cr.n.Load() > 512<<10 {
			t.Errorf("%s: Inspect read %d bytes", n, cr.n.Load())
		}
	}
}
