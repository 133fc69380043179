package convert

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestProbesAtLeastAsEagerAsQemus: content that one of qemu's block
// drivers probes as its format (bdrv_probe over the first 512 bytes) is
// detected as that format and refused, never taken for raw.
func TestProbesAtLeastAsEagerAsQemus(t *testing.T) {
	sector := func(parts ...string) []byte {
		b := make([]byte, 4096)
		copy(b, strings.Join(parts, ""))
		return b
	}
	dmg := make([]byte, 8192)
	copy(dmg[len(dmg)-512:], "koly\x00\x00\x00\x04")
	for _, c := range []struct {
		name  string
		data  []byte
		words string
	}{
		{"qed", sector("QED\x00"), "qed"},
		{"luks 1", sector("LUKS\xba\xbe\x00\x01"), "luks"},
		{"parallels", sector("WithoutFreeSpace\x02\x00\x00\x00"), "parallels"},
		{"parallels ext", sector("WithouFreSpacExt\x02\x00\x00\x00"), "parallels"},
		{"bochs", sector("Bochs Virtual HD Image\x00"), "bochs"},
		{"cloop", sector("#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n"), "cloop"},
		{"dmg trailer", dmg, "dmg"},
		{"qcow version 1", sector("QFI\xfb\x00\x00\x00\x01"), "version 1"},
		{"vmdk3 COWD", sector("COWD"), "COWD"},
		{"vdi signature", sector(strings.Repeat("\x00", 0x40), "\x7f\x10\xda\xbe"), "vdi"},
		{"vpc dynamic", sector("conectix"), "vhd"},
		{"vhdx", sector("vhdxfile"), "vhdx"},
		{"vmdk descriptor, version=2 first", []byte("version=2\nRW 1 FLAT \"/etc/passwd\" 0\n"), "names other files"},
		{"vmdk descriptor, tab-indented comment", []byte("\t# c\nversion=1\r\n"), "names other files"},
		{"vmdk descriptor, version line ends the file", []byte("#\nversion = 3"), "names other files"},
	} {
		_, err := Inspect(bytes.NewReader(c.data), int64(len(c.data)))
		if err == nil || !strings.Contains(err.Error(), c.words) {
			t.Errorf("%s: %v, want a refusal naming %q", c.name, err, c.words)
		}
	}
	// Text that qemu's vmdk probe does not take stays raw.
	for _, s := range []string{"hello\nversion=1\n", "version=4\n", "#!/bin/sh\necho hi\n", "# Disk\n\nversion=10\n"} {
		if rep, err := Inspect(strings.NewReader(s), int64(len(s))); err != nil || rep.Format != Raw {
			t.Errorf("%q: %+v %v, want raw", s, rep, err)
		}
	}
}

// TestQCOW2CompressionType: qemu refuses to open a qcow2 whose
// compression-type byte is unknown, or disagrees with its feature bit;
// so does Inspect.
func TestQCOW2CompressionType(t *testing.T) {
	dir := t.TempDir()
	x := filepath.Join(dir, "x.qcow2")
	mustQemuImg(t, "create", "-f", "qcow2", "-o", "compression_type=zstd", x, "1M")
	orig, err := os.ReadFile(x)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := Inspect(bytes.NewReader(orig), int64(len(orig))); err != nil || rep.Compression != "zstd" {
		t.Fatalf("qemu's zstd qcow2: %+v %v", rep, err)
	}
	for _, c := range []struct {
		name     string
		typ      byte
		clearBit bool
	}{
		{"unknown type 2", 2, false},
		{"unknown type 255", 255, false},
		{"unknown type 2 without the feature bit", 2, true},
		{"zstd without the feature bit", 1, true},
		{"zlib with the feature bit", 0, false},
	} {
		b := bytes.Clone(orig)
		b[104] = c.typ
		if c.clearBit {
			b[79] &^= qcow2IncompatCompression
		}
		if err := os.WriteFile(x, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if code, _ := runQemuImg(t, "info", "-f", "qcow2", x); code == 0 {
			t.Errorf("%s: qemu-img opens it: the case shows nothing", c.name)
		}
		_, err := Inspect(bytes.NewReader(b), int64(len(b)))
		if !errors.Is(err, ErrUnsafe) && !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "compression type") {
			t.Errorf("%s: %v, want a refusal naming the compression type", c.name, err)
		}
	}
}

// TestFuzzCorpusDescriptorsAreRefused: the vmdk descriptor seeds in the
// fuzz corpus (testdata/fuzz) stay what they were made to be: forms qemu
// probes as vmdk, each refused.
func TestFuzzCorpusDescriptorsAreRefused(t *testing.T) {
	files, err := filepath.Glob("testdata/fuzz/*/vmdk-descriptor-*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no descriptor seeds: %v", err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lit, ok := strings.CutPrefix(strings.TrimSpace(string(raw)), "go test fuzz v1\n[]byte(")
		lit, ok2 := strings.CutSuffix(lit, ")")
		b, err := strconv.Unquote(lit)
		if !ok || !ok2 || err != nil {
			t.Fatalf("%s: not a fuzz corpus file (%v)", f, err)
		}
		s := decodeSparse([]byte(b))
		if _, err := Inspect(s, s.size); !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "names other files") {
			t.Errorf("%s: %v, want the descriptor refused", f, err)
		}
	}
}
