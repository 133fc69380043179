package convert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// qemu-img (Debian qemu-utils) is the oracle: it creates the sample images
// and judges ours with info, check and compare. Without it the tests skip,
// except in CI, where a missing oracle must not pass silently.
func qemuImg(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("qemu-img")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("qemu-img is required in CI (apt-get install qemu-utils): %v", err)
		}
		t.Skip("qemu-img not installed (apt-get install qemu-utils)")
	}
	return p
}

// runQemuImg runs qemu-img and returns its exit code and combined output.
func runQemuImg(t testing.TB, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command(qemuImg(t), args...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("qemu-img %v: %v", args, err)
	}
	return 0, string(out)
}

func mustQemuImg(t testing.TB, args ...string) string {
	t.Helper()
	code, out := runQemuImg(t, args...)
	if code != 0 {
		t.Fatalf("qemu-img %s: exit %d: %s", strings.Join(args, " "), code, out)
	}
	return out
}

// baseSize is deliberately not a multiple of any cluster or block size,
// so every format's tail handling is exercised.
const baseSize = 9<<20 + 3584

// writeBase writes a sparse raw disk with random data in the first and
// last blocks and at cluster, grain and block boundaries, and an
// allocated run of zeros that must not become data.
func writeBase(t testing.TB, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(baseSize); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	put := func(off, n int64) {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	put(0, 3000)
	put(64<<10-100, 200)
	put(2<<20+4096, 4096)
	put(5<<20-512, 1024)
	put(baseSize-1000, 1000)
	if _, err := f.WriteAt(make([]byte, 256<<10), 7<<20); err != nil {
		t.Fatal(err)
	}
}

// sample is a qemu-made image: the format flag qemu-img needs to read it
// and the -O/-o arguments that made it.
type sample struct {
	name, fmt string
	args      []string
}

var samples = []sample{
	{"raw", "raw", []string{"-O", "raw"}},
	{"qcow2v2", "qcow2", []string{"-O", "qcow2", "-o", "compat=0.10"}},
	{"qcow2v3", "qcow2", []string{"-O", "qcow2", "-o", "compat=1.1,cluster_size=4096"}},
	{"qcow2zlib", "qcow2", []string{"-c", "-O", "qcow2"}},
	{"vmdk", "vmdk", []string{"-O", "vmdk"}},
	{"vmdkstream", "vmdk", []string{"-O", "vmdk", "-o", "subformat=streamOptimized"}},
	{"vdi", "vdi", []string{"-O", "vdi"}},
	{"vdistatic", "vdi", []string{"-O", "vdi", "-o", "static=on"}},
	{"vpc", "vpc", []string{"-O", "vpc"}},
	{"vpcforce", "vpc", []string{"-O", "vpc", "-o", "force_size=on"}},
	{"vhdx", "vhdx", []string{"-O", "vhdx"}},
	{"vhdxfixed", "vhdx", []string{"-O", "vhdx", "-o", "subformat=fixed"}},
}

// The samples are made once per test binary and shared, read-only.
var shared struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// makeSamples converts the base disk into every sample format in dir,
// or, when dir is empty, returns the shared directory of samples.
func makeSamples(t testing.TB, dir string) (base string) {
	t.Helper()
	qemuImg(t)
	if dir == "" {
		shared.once.Do(func() {
			shared.dir, shared.err = os.MkdirTemp("", "convert-samples")
			if shared.err == nil {
				makeSamples(t, shared.dir)
			}
		})
		if shared.err != nil {
			t.Fatal(shared.err)
		}
		return filepath.Join(shared.dir, "base.img")
	}
	base = filepath.Join(dir, "base.img")
	writeBase(t, base)
	for _, s := range samples {
		args := append([]string{"convert", "-f", "raw"}, s.args...)
		mustQemuImg(t, append(args, base, filepath.Join(dir, s.name))...)
	}
	return base
}

type qemuInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	ClusterSize int64  `json:"cluster-size"`
}

func infoOf(t testing.TB, path, format string) qemuInfo {
	t.Helper()
	args := []string{"info", "--output", "json"}
	if format != "" {
		args = append(args, "-f", format)
	}
	var qi qemuInfo
	if err := json.Unmarshal([]byte(mustQemuImg(t, append(args, path)...)), &qi); err != nil {
		t.Fatal(err)
	}
	return qi
}

func inspectFile(t testing.TB, path string) (Report, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return Inspect(f, st.Size())
}

// TestInspectAgreesWithQemu checks format, virtual size and cluster size
// against qemu-img info's probe for every sample.
func TestInspectAgreesWithQemu(t *testing.T) {
	dir := t.TempDir()
	makeSamples(t, dir)
	extra := map[string][]string{
		"vpcfixed": {"-O", "vpc", "-o", "subformat=fixed"},
		"qcow2big": {"-O", "qcow2"},
	}
	mustQemuImg(t, "create", "-f", "qcow2", filepath.Join(dir, "qcow2big"), "3T")
	mustQemuImg(t, append([]string{"convert", "-f", "raw"}, append(extra["vpcfixed"], filepath.Join(dir, "base.img"), filepath.Join(dir, "vpcfixed"))...)...)
	names := []string{"vpcfixed", "qcow2big"}
	for _, s := range samples {
		names = append(names, s.name)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			rep, err := inspectFile(t, p)
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			qi := infoOf(t, p, "")
			if name == "vpcfixed" {
				// qemu probes a fixed VHD as raw; its footer says vpc,
				// and qemu's own vpc reading gives the virtual size.
				qi = infoOf(t, p, "vpc")
			}
			if rep.Format != qi.Format || rep.VirtualSize != qi.VirtualSize || rep.ClusterSize != qi.ClusterSize {
				t.Errorf("Inspect = %s/%d/%d, qemu-img info = %s/%d/%d", rep.Format, rep.VirtualSize, rep.ClusterSize,
					qi.Format, qi.VirtualSize, qi.ClusterSize)
			}
			if name == "vpcfixed" {
				if !rep.FixedVHD || !rep.Matches("vhd") || !rep.Matches("raw") || rep.Matches("qcow2") {
					t.Errorf("fixed VHD: FixedVHD=%v, Matches(vhd)=%v", rep.FixedVHD, rep.Matches("vhd"))
				}
				// qemu's fixed writer rounds up to CHS geometry.
				if rep.VirtualSize < baseSize {
					t.Errorf("fixed VHD virtual size %d, below the %d written", rep.VirtualSize, baseSize)
				}
			}
		})
	}
}

// outputs are the targets Convert writes, with qemu-img's name for each.
var outputs = []struct {
	name, fmt string
	opts      CreateOptions
}{
	{"raw", "raw", CreateOptions{}},
	{"qcow2", "qcow2", CreateOptions{}},
	{"vmdk", "vmdk", CreateOptions{}},
	{"vmdkstream", "vmdk", CreateOptions{Subformat: "streamOptimized"}},
	{"vdi", "vdi", CreateOptions{}},
	{"vpc", "vpc", CreateOptions{}},
	{"vpcfixed", "vpc", CreateOptions{Subformat: "fixed"}},
}

// TestConvertMatrix converts every qemu-made sample into every output
// format and asks qemu-img to check the result and compare it with the
// source.
func TestConvertMatrix(t *testing.T) {
	dir := filepath.Dir(makeSamples(t, ""))
	// One sample per source format; TestReadMatchesQemu covers the
	// other variants byte for byte.
	sources := []sample{samples[0], samples[2], samples[5], samples[6], samples[8], samples[10]}
	for _, s := range sources {
		for _, o := range outputs {
			t.Run(s.name+"-to-"+o.name, func(t *testing.T) {
				t.Parallel() // mostly waiting on qemu-img processes
				in := filepath.Join(dir, s.name)
				out := filepath.Join(t.TempDir(), "out."+o.name)
				err := ConvertFile(context.Background(), in, out, FileOptions{
					InFormat: "", OutFormat: o.fmt, Create: o.opts,
					Options: Options{Workers: 3, SegmentSize: 1 << 20},
				})
				if err != nil {
					t.Fatalf("ConvertFile: %v", err)
				}
				if code, msg := runQemuImg(t, "check", "-f", o.fmt, out); code != 0 && code != 63 {
					t.Errorf("qemu-img check: exit %d: %s", code, msg)
				}
				if code, msg := runQemuImg(t, "compare", "-f", s.fmt, "-F", o.fmt, in, out); code != 0 {
					t.Errorf("qemu-img compare: exit %d: %s", code, msg)
				}
				rep, err := inspectFile(t, out)
				if err != nil {
					t.Fatalf("Inspect(output): %v", err)
				}
				if rep.Format != o.fmt || rep.FixedVHD != (o.name == "vpcfixed") {
					t.Errorf("output inspects as %s (fixed VHD %v), want %s", rep.Format, rep.FixedVHD, o.name)
				}
			})
		}
	}
}

// TestConvertSparse checks that zero blocks are not written: a qcow2 of the
// base disk holds no more data clusters than qemu's own.
func TestConvertSparse(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	writeBase(t, base)
	ours, theirs := filepath.Join(dir, "ours.qcow2"), filepath.Join(dir, "theirs.qcow2")
	if err := ConvertFile(context.Background(), base, ours, FileOptions{InFormat: "raw", OutFormat: "qcow2"}); err != nil {
		t.Fatal(err)
	}
	mustQemuImg(t, "convert", "-f", "raw", "-O", "qcow2", base, theirs)
	a, _ := os.Stat(ours)
	b, _ := os.Stat(theirs)
	if a.Size() > b.Size() {
		t.Errorf("our qcow2 is %d bytes, qemu's %d", a.Size(), b.Size())
	}
}

// TestReadMatchesQemu reads each sample through Open and compares every
// byte with qemu-img's raw conversion of it.
func TestReadMatchesQemu(t *testing.T) {
	dir := filepath.Dir(makeSamples(t, ""))
	for _, s := range samples {
		t.Run(s.name, func(t *testing.T) {
			p := filepath.Join(dir, s.name)
			ref := filepath.Join(t.TempDir(), "ref")
			mustQemuImg(t, "convert", "-f", s.fmt, "-O", "raw", p, ref)
			want, err := os.ReadFile(ref)
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			img, err := Open(f, st.Size(), s.fmt)
			if err != nil {
				t.Fatal(err)
			}
			if img.Size() != int64(len(want)) {
				t.Fatalf("Size = %d, qemu %d", img.Size(), len(want))
			}
			got := make([]byte, img.Size())
			// Odd-sized reads cross block boundaries in every way.
			for off := 0; off < len(got); off += 12345 {
				if _, err := img.ReadAt(got[off:min(off+12345, len(got))], int64(off)); err != nil && off+12345 < len(got) {
					t.Fatalf("ReadAt(%d): %v", off, err)
				}
			}
			if !bytes.Equal(got, want) {
				t.Errorf("content differs from qemu-img convert -O raw")
			}
		})
	}
}

// TestConvertLargeSparse covers several L2 tables, grain tables, BAT and
// bmap pages with untouched ones between them: a 1.2 GiB sparse disk with
// a little data at the start, the middle and the end.
func TestConvertLargeSparse(t *testing.T) {
	qemuImg(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	f, err := os.Create(base)
	if err != nil {
		t.Fatal(err)
	}
	const size = 1200<<20 + 512
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 600 << 20, 700<<20 + 12345, size - 700} {
		if _, err := f.WriteAt([]byte("some data that is not zero, written at a far offset"), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	for _, o := range outputs {
		t.Run(o.name, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(dir, "out."+o.name)
			if err := ConvertFile(context.Background(), base, out, FileOptions{InFormat: "raw", OutFormat: o.fmt, Create: o.opts}); err != nil {
				t.Fatal(err)
			}
			if code, msg := runQemuImg(t, "check", "-f", o.fmt, out); code != 0 && code != 63 {
				t.Errorf("qemu-img check: exit %d: %s", code, msg)
			}
			if code, msg := runQemuImg(t, "compare", "-f", "raw", "-F", o.fmt, base, out); code != 0 {
				t.Errorf("qemu-img compare: exit %d: %s", code, msg)
			}
			// And back again, through our reader.
			back := filepath.Join(dir, "back."+o.name)
			if err := ConvertFile(context.Background(), out, back, FileOptions{InFormat: o.fmt, OutFormat: "raw"}); err != nil {
				t.Fatal(err)
			}
			if code, msg := runQemuImg(t, "compare", "-f", "raw", "-F", "raw", base, back); code != 0 {
				t.Errorf("round trip: qemu-img compare: exit %d: %s", code, msg)
			}
		})
	}
}
