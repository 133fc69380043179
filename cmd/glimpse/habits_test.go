package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The mount against ordinary Unix habits, each with the real tool: copies
// interrupted with Ctrl-C or kill -9, trees copied in with rsync, cp -a
// and tar, rmdir, links, and what directories look like to tools.

// TestHabitInterruptedCopy: a cp killed by a signal before it closes its
// destination leaves a killed image with the reason, never an active image
// of the prefix, and the name it was copied to is gone when cp is gone.
func TestHabitInterruptedCopy(t *testing.T) {
	needMount(t)
	needTool(t, "cp")
	tmp := t.TempDir()
	mnt := filepath.Join(tmp, "mnt")
	startDaemon(t, filepath.Join(tmp, "data"), mnt)

	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			name := fmt.Sprintf("cut-%d.raw", sig)
			// cp reads a FIFO: once a write into it returns, cp has
			// written (almost) all of it into the mount, and it then
			// waits for more, mid-copy, for as long as the test likes.
			fifo := filepath.Join(tmp, name)
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			cp := exec.Command("cp", fifo, filepath.Join(mnt, "active", name))
			if err := cp.Start(); err != nil {
				t.Fatal(err)
			}
			w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if _, err := w.Write(make([]byte, 4<<20)); err != nil {
				t.Fatal(err)
			}
			if got := ls(t, filepath.Join(mnt, "saving")); fmt.Sprint(got) != "["+name+"]" {
				t.Fatalf("saving/ mid-copy: %v", got)
			}
			cp.Process.Signal(sig)
			if err := cp.Wait(); err == nil {
				t.Fatalf("cp exited 0 after %v", sig)
			}
			// Gone at once, not after the kernel's entry timeout.
			if _, err := os.Stat(filepath.Join(mnt, "active", name)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("active/%s right after cp died: %v", name, err)
			}
			if got := ls(t, filepath.Join(mnt, "saving")); len(got) != 0 {
				t.Fatalf("saving/ after cp died: %v", got)
			}
			killed := filepath.Join(mnt, "killed", name)
			if got := xattr(t, killed, "status"); got != "killed" {
				t.Fatalf("status %q", got)
			}
			want := "killed by " + map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGKILL: "SIGKILL"}[sig]
			if got := xattr(t, killed, "glimpse.error"); !strings.Contains(got, want) {
				t.Fatalf("kill reason %q, want it to say %q", got, want)
			}
		})
	}

	// A copy that ends normally is unaffected; one refused at close is
	// gone from active/ when cp returns.
	src := randomFile(t, tmp, "whole.raw", 3<<20)
	mustRun(t, "cp", src, filepath.Join(mnt, "active")+"/")
	mustRun(t, "cmp", src, filepath.Join(mnt, "active", "whole.raw"))
	base := filepath.Join(tmp, "base.qcow2")
	overlay := filepath.Join(tmp, "overlay.qcow2")
	needTool(t, "qemu-img")
	mustRun(t, "qemu-img", "create", "-q", "-f", "qcow2", base, "16M")
	mustRun(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay)
	mustFail(t, "Input/output error", "cp", overlay, filepath.Join(mnt, "active")+"/")
	if _, err := os.Stat(filepath.Join(mnt, "active", "overlay.qcow2")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("active/overlay.qcow2 right after cp failed: %v", err)
	}
}

// TestHabitTreesAndDirectories: copying a tree into active/ with rsync -a,
// cp -a and tar succeeds (the times, owner and mode of the directory are
// accepted and ignored); no directory of the mount can be removed; links
// and special files are refused with EPERM; directories have a link count,
// `.` and `..`, and the root is inode 1.
func TestHabitTreesAndDirectories(t *testing.T) {
	needMount(t)
	for _, tool := range []string{"rsync", "cp", "tar", "rmdir", "ln", "mkfifo", "stat"} {
		needTool(t, tool)
	}
	tmp := t.TempDir()
	mnt := filepath.Join(tmp, "mnt")
	startDaemon(t, filepath.Join(tmp, "data"), mnt)
	tree := filepath.Join(tmp, "tree")
	os.Mkdir(tree, 0o750)
	a := randomFile(t, tree, "a.raw", 300_000)
	b := randomFile(t, tree, "b.raw", 70_000)
	tarball := filepath.Join(tmp, "tree.tar")
	mustRun(t, "tar", "-C", tree, "-cf", tarball, ".")
	active := filepath.Join(mnt, "active")

	for _, copyIn := range [][]string{
		{"rsync", "-a", tree + "/", active + "/"},
		{"cp", "-a", tree + "/.", active + "/"},
		{"tar", "-C", active, "-xf", tarball},
	} {
		mustRun(t, copyIn[0], copyIn[1:]...)
		if got := ls(t, active); fmt.Sprint(got) != "[a.raw b.raw]" {
			t.Fatalf("%v: active/ holds %v", copyIn, got)
		}
		mustRun(t, "cmp", a, filepath.Join(active, "a.raw"))
		mustRun(t, "cmp", b, filepath.Join(active, "b.raw"))
		mustRun(t, "rm", filepath.Join(active, "a.raw"), filepath.Join(active, "b.raw"))
	}

	mustRun(t, "cp", a, active+"/")
	for _, dir := range []string{"active", "images", "queued", "killed"} {
		mustFail(t, "Operation not permitted", "rmdir", filepath.Join(mnt, dir))
	}
	mustFail(t, "Operation not permitted", "rmdir", mnt+"/active/")
	if got := ls(t, mnt); len(got) != 10 {
		t.Fatalf("the mount after rmdir: %v", got)
	}
	mustRun(t, "cmp", a, filepath.Join(active, "a.raw"))
	mustFail(t, "Operation not permitted", "ln", filepath.Join(active, "a.raw"), filepath.Join(active, "hard.raw"))
	mustFail(t, "Operation not permitted", "ln", "-s", "a.raw", filepath.Join(active, "soft.raw"))
	mustFail(t, "Operation not permitted", "mkfifo", filepath.Join(active, "fifo"))
	mustFail(t, "Operation not permitted", "mkdir", filepath.Join(active, "dir"))

	if got := strings.TrimSpace(mustRun(t, "stat", "-c", "%i %h", mnt)); got != "1 12" {
		t.Errorf("root inode and link count: %q, want \"1 12\"", got)
	}
	for _, dir := range []string{"active", "images"} {
		if got := strings.TrimSpace(mustRun(t, "stat", "-c", "%h", filepath.Join(mnt, dir))); got != "2" {
			t.Errorf("%s/ link count %q, want 2", dir, got)
		}
		out := mustRun(t, "ls", "-a", filepath.Join(mnt, dir))
		if f := strings.Fields(out); len(f) < 3 || f[0] != "." || f[1] != ".." {
			t.Errorf("ls -a %s: %q, want . and .. first", dir, out)
		}
	}
	if got := strings.Fields(mustRun(t, "ls", "-a", mnt)); len(got) != 12 || got[0] != "." || got[1] != ".." {
		t.Errorf("ls -a of the root: %v", got)
	}
}

// TestHabitCopiesKeepTheirName: cp -a, cp --preserve=xattr and rsync -aX
// copy an image's attributes onto the copy; the copy keeps the name it was
// copied to and its own facts (id, times, hashes), takes the custom and
// settable properties, and every tool exits 0. By hand, user.name still
// renames and read-only keys still refuse.
func TestHabitCopiesKeepTheirName(t *testing.T) {
	needMount(t)
	for _, tool := range []string{"cp", "rsync", "setfattr", "getfattr"} {
		needTool(t, tool)
	}
	tmp := t.TempDir()
	mnt := filepath.Join(tmp, "mnt")
	startDaemon(t, filepath.Join(tmp, "data"), mnt)
	active := filepath.Join(mnt, "active")
	src := randomFile(t, tmp, "src.raw", 1<<20)
	mustRun(t, "cp", src, filepath.Join(active, "one.raw"))
	one := filepath.Join(active, "one.raw")
	mustRun(t, "setfattr", "-n", "user.os_distro", "-v", "debian", one)
	mustRun(t, "setfattr", "-n", "user.min_ram", "-v", "512", one)
	oneID := xattr(t, one, "id")
	local := randomFile(t, tmp, "local.raw", 1<<20)
	mustRun(t, "setfattr", "-n", "user.os_distro", "-v", "ubuntu", local)

	copies := map[string][]string{
		"cp-a.raw":     {"cp", "-a", one, filepath.Join(active, "cp-a.raw")},
		"cp-x.raw":     {"cp", "--preserve=xattr", one, filepath.Join(active, "cp-x.raw")},
		"rsync.raw":    {"rsync", "-aX", one, filepath.Join(active, "rsync.raw")},
		"rsync-in.raw": {"rsync", "-aX", local, filepath.Join(active, "rsync-in.raw")},
		"cp-in.raw":    {"cp", "--preserve=xattr", local, filepath.Join(active, "cp-in.raw")},
	}
	for name, args := range copies {
		mustRun(t, args[0], args[1:]...)
		copied := filepath.Join(active, name)
		if got := xattr(t, copied, "name"); got != name {
			t.Errorf("%v: the copy is named %q", args, got)
		}
		wantDistro, wantRAM, from := "debian", "512", src
		if strings.HasSuffix(name, "-in.raw") {
			wantDistro, wantRAM, from = "ubuntu", "0", local
		}
		if got := xattr(t, copied, "os_distro"); got != wantDistro {
			t.Errorf("%v: os_distro %q, want %q", args, got, wantDistro)
		}
		if got := xattr(t, copied, "min_ram"); got != wantRAM {
			t.Errorf("%v: min_ram %q, want %q", args, got, wantRAM)
		}
		if got := xattr(t, copied, "id"); got == oneID || got == "" {
			t.Errorf("%v: the copy's id %q", args, got)
		}
		if got := xattr(t, copied, "status"); got != "active" {
			t.Errorf("%v: the copy is %s", args, got)
		}
		mustRun(t, "cmp", from, copied)
	}
	if got := ls(t, active); fmt.Sprint(got) != "[cp-a.raw cp-in.raw cp-x.raw one.raw rsync-in.raw rsync.raw]" {
		t.Fatalf("active/ after the copies: %v", got)
	}
	if got := xattr(t, one, "name"); got != "one.raw" {
		t.Fatalf("the original is named %q", got)
	}

	// By hand (another process than the one that created the image).
	mustRun(t, "setfattr", "-n", "user.name", "-v", "renamed.raw", filepath.Join(active, "cp-x.raw"))
	if _, err := os.Stat(filepath.Join(active, "renamed.raw")); err != nil {
		t.Fatalf("setfattr user.name by hand did not rename: %v", err)
	}
	mustFail(t, "Operation not permitted", "setfattr", "-n", "user.size", "-v", "1", filepath.Join(active, "renamed.raw"))
	mustFail(t, "Operation not permitted", "setfattr", "-x", "user.min_ram", filepath.Join(active, "renamed.raw"))
}

// TestHabitAliasesKeepResolving: NAME@ID names its image for as long as
// the image is in that directory under NAME, so a glob over twins removes
// them all.
func TestHabitAliasesKeepResolving(t *testing.T) {
	needMount(t)
	tmp := t.TempDir()
	mnt := filepath.Join(tmp, "mnt")
	startDaemon(t, filepath.Join(tmp, "data"), mnt)
	active := filepath.Join(mnt, "active")
	src := randomFile(t, tmp, "twin.raw", 64<<10)
	mustRun(t, "cp", src, filepath.Join(active, "twin.raw"))
	mustRun(t, "cp", src, filepath.Join(active, "other.raw"))
	mustRun(t, "mv", filepath.Join(active, "other.raw"), filepath.Join(active, "twin.raw"))
	twins := ls(t, active)
	if len(twins) != 2 || !strings.HasPrefix(twins[0], "twin.raw@") {
		t.Fatalf("active/ with twins: %v", twins)
	}
	mustRun(t, "rm", filepath.Join(active, twins[0]))
	// The survivor shows as twin.raw, and its alias still works.
	if got := ls(t, active); fmt.Sprint(got) != "[twin.raw]" {
		t.Fatalf("active/ after removing one twin: %v", got)
	}
	mustRun(t, "cmp", src, filepath.Join(active, twins[1]))
	mustRun(t, "rm", filepath.Join(active, twins[1]))
	if got := ls(t, active); len(got) != 0 {
		t.Fatalf("active/ after removing both twins: %v", got)
	}
	// An alias of an image that is elsewhere does not resolve here.
	mustRun(t, "cp", src, filepath.Join(active, "solo.raw"))
	id := xattr(t, filepath.Join(active, "solo.raw"), "id")
	if _, err := os.Stat(filepath.Join(mnt, "queued", "solo.raw@"+id)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("queued/solo.raw@ID of an active image: %v", err)
	}
	if _, err := os.Stat(filepath.Join(active, "other.raw@"+id)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("another name's alias: %v", err)
	}
}

// TestHabitCreateCloseReopen: writers that create a file, close it with
// nothing in it and reopen it (qemu-img create and convert, for every
// format it writes) end with an active image of exactly what they wrote,
// hashed and inspected, by the time they exit; touch and a cp of an empty
// file make an empty image; a write that fails leaves nothing behind
// (cp --reflink=always, which cannot clone here; a qemu-img convert over
// the size cap).
func TestHabitCreateCloseReopen(t *testing.T) {
	needMount(t)
	for _, tool := range []string{"qemu-img", "touch", "cp", "md5sum"} {
		needTool(t, tool)
	}
	tmp := t.TempDir()
	mnt := filepath.Join(tmp, "mnt")
	startDaemon(t, filepath.Join(tmp, "data"), mnt, "--max-image-size", fmt.Sprint(8<<20))
	active := filepath.Join(mnt, "active")
	in := randomFile(t, tmp, "in.raw", 4<<20)

	settled := func(name, wantFormat string) {
		t.Helper()
		p := filepath.Join(active, name)
		if got := xattr(t, p, "status"); got != "active" {
			t.Fatalf("%s: status %q right after qemu-img exited", name, got)
		}
		if got := xattr(t, p, "disk_format"); got != wantFormat {
			t.Errorf("%s: disk_format %q, want %q", name, got, wantFormat)
		}
		if md5 := strings.Fields(mustRun(t, "md5sum", p))[0]; xattr(t, p, "checksum") != md5 {
			t.Errorf("%s: checksum %s, md5 of the content %s", name, xattr(t, p, "checksum"), md5)
		}
	}

	mustRun(t, "qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(active, "new.qcow2"), "10G")
	settled("new.qcow2", "qcow2")
	if got := xattr(t, filepath.Join(active, "new.qcow2"), "virtual_size"); got != fmt.Sprint(10<<30) {
		t.Errorf("new.qcow2: virtual_size %s", got)
	}
	for format, shown := range map[string]string{"qcow2": "qcow2", "vmdk": "vmdk", "vdi": "vdi", "vpc": "vhd"} {
		name := "out." + format
		mustRun(t, "qemu-img", "convert", "-f", "raw", "-O", format, in, filepath.Join(active, name))
		settled(name, shown)
		mustRun(t, "qemu-img", "compare", "-f", "raw", "-F", format, in, filepath.Join(active, name))
	}
	if got := ls(t, filepath.Join(mnt, "saving")); len(got) != 0 {
		t.Fatalf("saving/ after qemu-img: %v", got)
	}

	// Empty files: an empty image once the creator has exited.
	mustRun(t, "touch", filepath.Join(active, "touched.raw"))
	empty := filepath.Join(tmp, "empty.raw")
	os.WriteFile(empty, nil, 0o644)
	mustRun(t, "cp", empty, filepath.Join(active, "empty.raw"))
	for _, name := range []string{"touched.raw", "empty.raw"} {
		p := filepath.Join(active, name)
		if got := xattr(t, p, "status"); got != "active" {
			t.Errorf("%s: status %q", name, got)
		}
		if got := xattr(t, p, "size"); got != "0" {
			t.Errorf("%s: size %q", name, got)
		}
	}

	// Failed writes leave nothing.
	before := ls(t, filepath.Join(mnt, "images"))
	mustFail(t, "failed to clone", "cp", "--reflink=always", in, filepath.Join(active, "clone.raw"))
	big := randomFile(t, tmp, "big.raw", 12<<20)
	mustFail(t, "", "qemu-img", "convert", "-f", "raw", "-O", "qcow2", big, filepath.Join(active, "big.qcow2"))
	for _, dir := range []string{"active", "saving", "killed", "queued"} {
		for _, name := range ls(t, filepath.Join(mnt, dir)) {
			if name == "clone.raw" || name == "big.qcow2" {
				t.Errorf("%s/%s left by a failed write", dir, name)
			}
		}
	}
	if after := ls(t, filepath.Join(mnt, "images")); len(after) != len(before) {
		t.Errorf("images/ after failed writes: %d images, before %d", len(after), len(before))
	}
}

// TestHabitDf: df of the mount shows the local store's filesystem, and,
// with a byte quota, the quota and what the project holds against it.
func TestHabitDf(t *testing.T) {
	needMount(t)
	needTool(t, "stat")
	tmp := t.TempDir()
	statfs := func(dir string) (total, avail int64) {
		t.Helper()
		var blocks, size, free int64
		if _, err := fmt.Sscan(mustRun(t, "stat", "-f", "-c", "%b %S %a", dir), &blocks, &size, &free); err != nil {
			t.Fatal(err)
		}
		return blocks * size, free * size
	}
	data, mnt := filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	d := startDaemon(t, data, mnt)
	gotTotal, _ := statfs(mnt)
	wantTotal, _ := statfs(filepath.Join(data, "images"))
	if gotTotal != wantTotal {
		t.Errorf("df of the mount: %d bytes, the store's filesystem %d", gotTotal, wantTotal)
	}
	d.stop()

	startDaemon(t, data, mnt, "--quota-bytes", fmt.Sprint(10<<20))
	if total, avail := statfs(mnt); total != 10<<20 || avail != 10<<20 {
		t.Fatalf("df with a 10 MiB quota and nothing stored: size %d, available %d", total, avail)
	}
	src := randomFile(t, tmp, "one.raw", 1<<20)
	mustRun(t, "cp", src, filepath.Join(mnt, "active")+"/")
	if total, avail := statfs(mnt); total != 10<<20 || avail != 9<<20 {
		t.Fatalf("df with a 10 MiB quota and 1 MiB stored: size %d, available %d", total, avail)
	}
}
