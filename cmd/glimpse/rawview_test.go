package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The raw view: every active image in MOUNT/raw/ as its virtual disk,
// checked with qemu-img as the oracle on images qemu-img made.

const (
	rawViewSize = 128 << 20
	// The source disk holds data in [0, 1 MiB) and [96 MiB, 97 MiB) and
	// nothing else, so in every format (blocks of at most 32 MiB) the
	// range [32 MiB, 64 MiB) is a hole.
	rawViewSecond = 96 << 20
)

// rawViewSource writes the disk every format is made from.
func rawViewSource(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "source.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for _, off := range []int64{0, rawViewSecond} {
		rand.Read(chunk)
		if _, err := f.WriteAt(chunk, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(rawViewSize); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRawView uploads the outputs of qemu-img for every format the view
// reads, and checks that raw/NAME is the source disk: qemu-img compare
// says identical, qemu-img info says raw, SEEK_HOLE and SEEK_DATA find
// the hole, cp --sparse=always makes a sparse copy, st_blocks counts only
// the data, and writes are refused with EROFS.
func TestRawView(t *testing.T) {
	needMount(t)
	needTool(t, "qemu-img")
	tmp := t.TempDir()
	mnt := filepath.Join(tmp, "mnt")
	startDaemon(t, filepath.Join(tmp, "data"), mnt)
	src := rawViewSource(t, tmp)

	cases := []struct {
		name    string
		args    []string // qemu-img convert's output options
		declare string   // the disk_format set before the upload, if any
	}{
		{"plain.qcow2", []string{"-O", "qcow2"}, ""},
		{"zlib.qcow2", []string{"-O", "qcow2", "-c"}, ""},
		{"zstd.qcow2", []string{"-O", "qcow2", "-c", "-o", "compression_type=zstd"}, ""},
		{"sparse.vmdk", []string{"-O", "vmdk"}, ""},
		{"stream.vmdk", []string{"-O", "vmdk", "-o", "subformat=streamOptimized"}, ""},
		{"disk.vdi", []string{"-O", "vdi"}, ""},
		{"dynamic.vhd", []string{"-O", "vpc"}, ""},
		{"fixed.vhd", []string{"-O", "vpc", "-o", "subformat=fixed"}, "vhd"},
		{"disk.vhdx", []string{"-O", "vhdx"}, ""},
		{"disk.raw", []string{"-O", "raw"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := filepath.Join(tmp, c.name)
			mustRun(t, "qemu-img", append(append([]string{"convert", "-f", "raw"}, c.args...), src, img)...)
			if c.declare != "" {
				// Declared first, as `glance image-create --disk-format`
				// does: content alone cannot tell a fixed VHD from raw
				// (qemu-img info says raw too).
				queued := filepath.Join(mnt, "queued", c.name)
				mustRun(t, "touch", queued)
				if err := unix.Setxattr(queued, "user.disk_format", []byte(c.declare), 0); err != nil {
					t.Fatal(err)
				}
				mustRun(t, "cp", img, queued)
			} else {
				mustRun(t, "cp", img, filepath.Join(mnt, "active")+"/")
			}
			view := filepath.Join(mnt, "raw", c.name)

			mustRun(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", view, src)
			var info struct {
				Format      string `json:"format"`
				VirtualSize int64  `json:"virtual-size"`
			}
			if err := json.Unmarshal([]byte(mustRun(t, "qemu-img", "info", "--output", "json", view)), &info); err != nil {
				t.Fatal(err)
			}
			var want struct {
				VirtualSize int64 `json:"virtual-size"`
			}
			json.Unmarshal([]byte(mustRun(t, "qemu-img", "info", "-f", c.args[1], "--output", "json", img)), &want)
			if info.Format != "raw" || info.VirtualSize != want.VirtualSize {
				t.Fatalf("qemu-img info of the view: %+v; the image's virtual size is %d", info, want.VirtualSize)
			}

			fi, err := os.Stat(view)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode().Perm() != 0o444 || st.Size != want.VirtualSize {
				t.Fatalf("view: mode %v, size %d", fi.Mode(), st.Size)
			}
			if blocks := st.Blocks * 512; blocks < 2<<20 || blocks > 66<<20 {
				t.Fatalf("st_blocks says %d bytes allocated; the disk holds 2 MiB of data in blocks of at most 32 MiB", blocks)
			}

			f, err := os.Open(view)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			hole, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_HOLE)
			if err != nil || hole < 1<<20 || hole > 32<<20 {
				t.Fatalf("SEEK_HOLE from 0: %d, %v", hole, err)
			}
			data, err := unix.Seek(int(f.Fd()), hole, unix.SEEK_DATA)
			if err != nil || data < 64<<20 || data > rawViewSecond {
				t.Fatalf("SEEK_DATA from %d: %d, %v", hole, data, err)
			}
			if _, err := unix.Seek(int(f.Fd()), st.Size, unix.SEEK_DATA); !errors.Is(err, unix.ENXIO) {
				t.Fatalf("SEEK_DATA at the end: %v, want ENXIO", err)
			}

			cp := filepath.Join(tmp, c.name+".copy")
			mustRun(t, "cp", "--sparse=always", view, cp)
			mustRun(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", cp, src) // a VHD's size is rounded up
			var cst syscall.Stat_t
			if err := syscall.Stat(cp, &cst); err != nil || cst.Blocks*512 > 8<<20 {
				t.Fatalf("cp --sparse=always made %d bytes of blocks (%v)", cst.Blocks*512, err)
			}
			os.Remove(cp)

			if _, err := os.OpenFile(view, os.O_WRONLY, 0); !errors.Is(err, syscall.EROFS) {
				t.Fatalf("open for writing: %v, want EROFS", err)
			}
			if err := os.Truncate(view, 0); !errors.Is(err, syscall.EROFS) {
				t.Fatalf("truncate: %v, want EROFS", err)
			}
			if err := os.Remove(view); !errors.Is(err, syscall.EROFS) {
				t.Fatalf("rm: %v, want EROFS", err)
			}
		})
	}

	// raw/ lists what active/ lists, by the same names.
	if got, want := ls(t, filepath.Join(mnt, "raw")), ls(t, filepath.Join(mnt, "active")); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("raw/ %v, active/ %v", got, want)
	}
	// Deactivated content is unreadable, and gone from raw/.
	mustRun(t, "mv", filepath.Join(mnt, "active", "plain.qcow2"), filepath.Join(mnt, "deactivated")+"/")
	if _, err := os.Stat(filepath.Join(mnt, "raw", "plain.qcow2")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("raw/ of a deactivated image: %v", err)
	}
}

// TestRawViewLoopMount loop-mounts the ext4 inside a qcow2 through the
// view and reads a file from it.
func TestRawViewLoopMount(t *testing.T) {
	needMount(t)
	for _, tool := range []string{"qemu-img", "mke2fs", "losetup", "mount"} {
		needTool(t, tool)
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("no loop devices here")
	}
	tmp := t.TempDir()
	mnt := filepath.Join(tmp, "mnt")
	startDaemon(t, filepath.Join(tmp, "data"), mnt)

	tree := filepath.Join(tmp, "tree")
	os.Mkdir(tree, 0o755)
	payload := make([]byte, 3<<20+17)
	rand.Read(payload)
	if err := os.WriteFile(filepath.Join(tree, "payload"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	fsImg := filepath.Join(tmp, "fs.raw")
	mustRun(t, "mke2fs", "-q", "-t", "ext4", "-d", tree, fsImg, "32M")
	mustRun(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c", fsImg, filepath.Join(tmp, "fs.qcow2"))
	mustRun(t, "cp", filepath.Join(tmp, "fs.qcow2"), filepath.Join(mnt, "active")+"/")

	out, err := exec.Command("losetup", "-r", "-f", "--show", filepath.Join(mnt, "raw", "fs.qcow2")).CombinedOutput()
	if err != nil {
		t.Skipf("losetup cannot attach a loop device here: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	inside := filepath.Join(tmp, "inside")
	os.Mkdir(inside, 0o755)
	mustRun(t, "mount", "-t", "ext4", "-o", "ro,noload", dev, inside)
	t.Cleanup(func() { exec.Command("umount", inside).Run() })
	got, err := os.ReadFile(filepath.Join(inside, "payload"))
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("the file inside the loop-mounted image: %d bytes, %v", len(got), err)
	}
}
