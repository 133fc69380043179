package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the glimpse binary: started with
// GLIMPSE_RUN_MAIN=1 it runs main, so the end-to-end tests drive the real
// daemon in its own process (a FUSE server must not serve the process that
// execs tools against it) without a separate build step.
func TestMain(m *testing.M) {
	if os.Getenv("GLIMPSE_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	code := m.Run()
	if err := testKeystone.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

type daemon struct {
	t         *testing.T
	cmd       *exec.Cmd
	data, mnt string
	addr      string
	log       *bytes.Buffer
	exited    chan error
}

func needMount(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
}

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (.ci/run installs it)", name)
		}
		t.Skipf("%s is not installed", name)
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startDaemon runs glimpse serve on data and mnt and waits until
// /healthcheck answers 200.
func startDaemon(t *testing.T, data, mnt string, extra ...string) *daemon {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if bin := os.Getenv("GLIMPSE_TEST_DAEMON"); bin != "" {
		// A glimpse built apart (without -race), for measuring the
		// daemon's own memory in the soak test.
		exe = bin
	}
	d := &daemon{t: t, data: data, mnt: mnt, addr: freeAddr(t), log: &bytes.Buffer{}, exited: make(chan error, 1)}
	args := append([]string{"glimpse", "serve", "--data", data, "--mount", mnt, "--listen", d.addr}, extra...)
	d.cmd = &exec.Cmd{Path: exe, Args: args, Env: append(os.Environ(), "GLIMPSE_RUN_MAIN=1"), Stdout: d.log, Stderr: d.log}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			<-d.exited
		}
		syscall.Unmount(mnt, syscall.MNT_DETACH)
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.log)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + d.addr + "/healthcheck")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d
			}
		}
		select {
		case err := <-d.exited:
			t.Fatalf("daemon exited before it was ready: %v\n%s", err, d.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready after 30s:\n%s", d.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and checks a clean exit and a clean unmount.
func (d *daemon) stop() {
	d.t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		if err != nil {
			d.t.Fatalf("daemon exit after SIGTERM: %v\n%s", err, d.log)
		}
	case <-time.After(30 * time.Second):
		d.t.Fatalf("daemon did not stop after SIGTERM:\n%s", d.log)
	}
	if mounted(d.mnt) {
		d.t.Fatalf("%s still mounted after SIGTERM", d.mnt)
	}
}

func (d *daemon) kill() {
	d.cmd.Process.Kill()
	select {
	case <-d.exited:
		return
	case <-time.After(10 * time.Second):
	}
	// A known hazard of SIGKILL on a FUSE daemon: a thread of it blocked in
	// the kernel telling it to drop a directory entry
	// (fuse_reverse_inval_entry waits, unkillably, for the directory's
	// lock) keeps /dev/fuse open, so the connection is never aborted and
	// the operation holding that lock waits forever for a reply: the
	// process stays a zombie and the mount hangs. What an operator does
	// then is what this does: abort the connection through fusectl.
	d.t.Logf("daemon still not gone 10s after SIGKILL: aborting its FUSE connection (kernel notify deadlock)")
	if err := abortFUSE(d.mnt); err != nil {
		d.t.Fatalf("abort the FUSE connection of %s: %v", d.mnt, err)
	}
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		d.t.Fatalf("daemon not gone 30s after its FUSE connection was aborted")
	}
}

// abortFUSE aborts the FUSE connection mounted on dir through fusectl
// (/sys/fs/fuse/connections/DEV/abort), mounting fusectl if it is not.
func abortFUSE(dir string) error {
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	dev := ""
	for _, line := range strings.Split(string(info), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			_, dev, _ = strings.Cut(f[2], ":")
		}
	}
	if dev == "" {
		return fmt.Errorf("no mount on %s", dir)
	}
	ctl := "/sys/fs/fuse/connections"
	if _, err := os.Stat(filepath.Join(ctl, dev)); err != nil {
		if err := syscall.Mount("fusectl", ctl, "fusectl", 0, ""); err != nil {
			return fmt.Errorf("mount fusectl: %w", err)
		}
	}
	return os.WriteFile(filepath.Join(ctl, dev, "abort"), []byte("1"), 0o200)
}

func mounted(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mounts")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == dir {
			return true
		}
	}
	return false
}

// run runs a command (from outside the mount) and returns its combined
// output and whether it succeeded.
func run(t *testing.T, name string, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = os.TempDir()
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, ok := run(t, name, args...)
	if !ok {
		t.Fatalf("%s %s failed: %s", name, strings.Join(args, " "), out)
	}
	return out
}

func mustFail(t *testing.T, wantMsg, name string, args ...string) {
	t.Helper()
	out, ok := run(t, name, args...)
	if ok || !strings.Contains(out, wantMsg) {
		t.Fatalf("%s %s: ok=%v output %q, want a failure saying %q", name, strings.Join(args, " "), ok, out, wantMsg)
	}
}

func xattr(t *testing.T, path, key string) string {
	t.Helper()
	return strings.TrimSpace(mustRun(t, "getfattr", "--absolute-names", "--only-values", "-n", "user."+key, path))
}

func randomFile(t *testing.T, dir, name string, size int) string {
	p := filepath.Join(dir, name)
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func ls(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func TestServeTour(t *testing.T) {
	needMount(t)
	for _, tool := range []string{"cp", "mv", "rm", "rsync", "getfattr", "setfattr", "qemu-img", "sha512sum", "md5sum"} {
		needTool(t, tool)
	}
	tmp := t.TempDir()
	mnt := filepath.Join(tmp, "mnt")
	startDaemon(t, filepath.Join(tmp, "data"), mnt)

	// A qcow2 made by qemu-img, with data in it.
	raw := randomFile(t, tmp, "src.raw", 4<<20)
	qcow := filepath.Join(tmp, "disk.qcow2")
	mustRun(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow)
	mustRun(t, "cp", qcow, filepath.Join(mnt, "active")+"/")

	img := filepath.Join(mnt, "active", "disk.qcow2")
	dump := mustRun(t, "getfattr", "--absolute-names", "-d", img)
	md5 := strings.Fields(mustRun(t, "md5sum", qcow))[0]
	sha := strings.Fields(mustRun(t, "sha512sum", qcow))[0]
	st, _ := os.Stat(qcow)
	for _, want := range []string{
		`user.status="active"`, `user.disk_format="qcow2"`, `user.container_format="bare"`,
		`user.virtual_size="4194304"`, fmt.Sprintf(`user.size="%d"`, st.Size()),
		`user.checksum="` + md5 + `"`, `user.os_hash_algo="sha512"`, `user.os_hash_value="` + sha + `"`,
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("getfattr -d lacks %s:\n%s", want, dump)
		}
	}
	mustRun(t, "cmp", qcow, img)
	if out := mustRun(t, "ls", "-l", filepath.Join(mnt, "active")); !strings.Contains(out, "-r--r--r--") {
		t.Errorf("ls -l: %s", out)
	}

	// Attributes.
	mustRun(t, "setfattr", "-n", "user.min_ram", "-v", "512", img)
	if got := xattr(t, img, "min_ram"); got != "512" {
		t.Errorf("min_ram %s", got)
	}
	mustFail(t, "Invalid argument", "setfattr", "-n", "user.min_ram", "-v", "abc", img)
	mustFail(t, "Operation not permitted", "setfattr", "-n", "user.checksum", "-v", "0", img)
	mustRun(t, "setfattr", "-n", "user.os_distro", "-v", "debian", img)
	mustRun(t, "setfattr", "-x", "user.os_distro", img)
	mustFail(t, "No such attribute", "getfattr", "--absolute-names", "-n", "user.os_distro", img)

	// Immutable.
	mustFail(t, "Permission denied", "sh", "-c", "echo x >> "+img)
	mustFail(t, "Permission denied", "cp", raw, img)

	// rsync: temp file, then rename.
	mustRun(t, "rsync", raw, filepath.Join(mnt, "active", "synced.raw"))
	mustRun(t, "cmp", raw, filepath.Join(mnt, "active", "synced.raw"))
	if got := ls(t, filepath.Join(mnt, "active")); fmt.Sprint(got) != "[disk.qcow2 synced.raw]" {
		t.Errorf("active/ after rsync: %v", got)
	}
	if got := ls(t, filepath.Join(mnt, "saving")); len(got) != 0 {
		t.Errorf("saving/ after rsync: %v", got)
	}

	// Moves.
	mustRun(t, "mv", filepath.Join(mnt, "active", "synced.raw"), filepath.Join(mnt, "deactivated")+"/")
	mustFail(t, "Permission denied", "cat", filepath.Join(mnt, "deactivated", "synced.raw"))
	mustFail(t, "Operation not permitted", "mv", filepath.Join(mnt, "deactivated", "synced.raw"), filepath.Join(mnt, "killed")+"/")
	mustRun(t, "mv", filepath.Join(mnt, "deactivated", "synced.raw"), filepath.Join(mnt, "active", "back.raw"))
	mustRun(t, "cmp", raw, filepath.Join(mnt, "active", "back.raw"))

	// A hostile qcow2 (a backing file) ends killed, with the reason.
	evil := filepath.Join(tmp, "evil.qcow2")
	mustRun(t, "qemu-img", "create", "-f", "qcow2", "-b", qcow, "-F", "qcow2", evil)
	mustFail(t, "Input/output error", "cp", evil, filepath.Join(mnt, "active")+"/")
	killed := filepath.Join(mnt, "killed", "evil.qcow2")
	if got := xattr(t, killed, "glimpse.error"); !strings.Contains(got, "backing file") {
		t.Errorf("kill reason: %q", got)
	}

	// rm frees the store.
	id := xattr(t, filepath.Join(mnt, "active", "back.raw"), "id")
	mustRun(t, "rm", filepath.Join(mnt, "active", "back.raw"))
	if _, err := os.Stat(filepath.Join(tmp, "data", "images", id)); !os.IsNotExist(err) {
		t.Errorf("content of a removed image still stored: %v", err)
	}
}

func TestServeRestartKeepsEverything(t *testing.T) {
	needMount(t)
	needTool(t, "cp")
	tmp := t.TempDir()
	data, mnt := filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	d := startDaemon(t, data, mnt)
	src := randomFile(t, tmp, "a.img", 3<<20)
	mustRun(t, "cp", src, filepath.Join(mnt, "active")+"/")
	mustRun(t, "setfattr", "-n", "user.os_distro", "-v", "debian", filepath.Join(mnt, "active", "a.img"))
	before := mustRun(t, "getfattr", "--absolute-names", "-d", filepath.Join(mnt, "active", "a.img"))
	d.stop()

	startDaemon(t, data, mnt)
	mustRun(t, "cmp", src, filepath.Join(mnt, "active", "a.img"))
	if after := mustRun(t, "getfattr", "--absolute-names", "-d", filepath.Join(mnt, "active", "a.img")); after != before {
		t.Fatalf("attributes changed across a restart:\n%s\n%s", before, after)
	}
}

// kill -9 in the middle of a copy: after the next start nothing is saving,
// the image is killed with a reason, the stale mount is recovered, and the
// store holds no bytes of it.
func TestServeCrashMidUpload(t *testing.T) {
	needMount(t)
	tmp := t.TempDir()
	data, mnt := filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	d := startDaemon(t, data, mnt)
	kept := randomFile(t, tmp, "kept.img", 1<<20)
	mustRun(t, "cp", kept, filepath.Join(mnt, "active")+"/")

	f, err := os.Create(filepath.Join(mnt, "active", "half.img"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for i := 0; i < 5; i++ {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if got := ls(t, filepath.Join(mnt, "saving")); fmt.Sprint(got) != "[half.img]" {
		t.Fatalf("saving/ mid-copy: %v", got)
	}
	d.kill()
	f.Close() // the daemon is gone: this fails, as it would for the user

	startDaemon(t, data, mnt) // over the stale mount
	if got := ls(t, filepath.Join(mnt, "saving")); len(got) != 0 {
		t.Fatalf("saving/ after restart: %v", got)
	}
	if got := ls(t, filepath.Join(mnt, "killed")); fmt.Sprint(got) != "[half.img]" {
		t.Fatalf("killed/ after restart: %v", got)
	}
	if got := xattr(t, filepath.Join(mnt, "killed", "half.img"), "glimpse.error"); !strings.Contains(got, "interrupted") {
		t.Fatalf("kill reason: %q", got)
	}
	keptID := xattr(t, filepath.Join(mnt, "active", "kept.img"), "id")
	if got := ls(t, filepath.Join(data, "images")); fmt.Sprint(got) != "[.partial "+keptID+"]" {
		t.Fatalf("store after recovery: %v, want only the kept image", got)
	}
	if got := ls(t, filepath.Join(data, "images", ".partial")); len(got) != 0 {
		t.Fatalf("partial writes after recovery: %v", got)
	}
	mustRun(t, "cmp", kept, filepath.Join(mnt, "active", "kept.img"))
}

func TestServeBadFlags(t *testing.T) {
	exe, _ := os.Executable()
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(tokens, []byte(`{"tokens": {}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"serve", "--no-such-flag"},
		{"serve", "--mount", t.TempDir(), "--allow-other", "--auth-tokens", tokens, "--listen", "127.0.0.1:0"},
		{"serve", "--mount", "", "--listen", ""},
		{"serve", "--store", "ftp://x", "--mount", ""},
	} {
		cmd := exec.Command(exe, args...)
		cmd.Env = append(os.Environ(), "GLIMPSE_RUN_MAIN=1", "GLIMPSE_DATA="+t.TempDir())
		out, err := cmd.CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		last := lines[len(lines)-1]
		if err == nil || !strings.HasPrefix(last, "glimpse: ") {
			t.Errorf("glimpse %v: err %v, output %q: want failure and a 'glimpse: ...' line", args, err, out)
		}
		if slices.Contains(args, "--allow-other") && !strings.Contains(last, "--allow-other-with-auth") {
			t.Errorf("glimpse %v: %q does not name the flag that allows it", args, last)
		}
	}
}
