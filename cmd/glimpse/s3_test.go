package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// startMinIO starts the project's pinned MinIO (scripts/minio) on loopback
// for this test, exports its endpoint and keys as the AWS variables, and
// returns a client for checking the bucket behind the daemon's back.
func startMinIO(t *testing.T) *minio.Client {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "scripts", "minio")
	if out, err := exec.Command(script, "path").Output(); err != nil || !fileExists(strings.TrimSpace(string(out))) {
		if os.Getenv("CI") != "" {
			t.Fatal("MinIO is not built (scripts/install-deps builds it)")
		}
		t.Skip("MinIO is not built: run scripts/minio build")
	}
	cmd := exec.Command(script, "start", t.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/minio start: %v\n%s", err, stderr.String())
	}
	env := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if kv, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "export "); ok {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
	}
	t.Cleanup(func() { exec.Command(script, "stop", env["MINIO_PID"], env["MINIO_DATA"]).Run() })
	for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} {
		t.Setenv(k, env[k])
	}
	t.Setenv("MINIO_TEST_PID", env["MINIO_PID"])
	t.Setenv("MINIO_TEST_DATA", env["MINIO_DATA"])
	client, err := minio.New(strings.TrimPrefix(env["AWS_ENDPOINT_URL"], "http://"), &minio.Options{
		Creds: credentials.NewStaticV4(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func objects(t *testing.T, c *minio.Client, bucket string) []string {
	t.Helper()
	var keys []string
	for o := range c.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		keys = append(keys, o.Key)
	}
	return keys
}

// The mount works unchanged on S3: a copy larger than one part goes up as a
// multipart upload, survives a restart, and rm removes the object.
func TestServeOnS3(t *testing.T) {
	needMount(t)
	client := startMinIO(t)
	storeRoundTrip(t, 40<<20, func(data, id string) { // several 16 MiB parts
		want := "[]"
		if id != "" {
			want = "[glimpse/" + id + "]"
		}
		if keys := objects(t, client, "images"); fmt.Sprint(keys) != want {
			t.Fatalf("bucket holds %v, want %s", keys, want)
		}
		if spooled, _ := os.ReadDir(filepath.Join(data, "spool")); len(spooled) != 0 {
			t.Fatalf("spool files left: %d", len(spooled))
		}
	}, "--store", "s3://images/glimpse")
}

// storeRoundTrip is the round trip on a store, through both faces: cp a
// random file of size bytes into active/, check it, restart the daemon,
// check it again, rm it; then the same content through REST (restRoundTrip:
// create, upload, hashes, download, delete). check (if not nil) looks at
// the store behind the daemon's back with the image's id after each upload,
// and with "" after each delete.
func storeRoundTrip(t *testing.T, size int, check func(data, id string), store ...string) {
	t.Helper()
	tmp := t.TempDir()
	data, mnt := filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	d := startDaemon(t, data, mnt, store...)
	src := randomFile(t, tmp, "disk.img", size)
	mustRun(t, "cp", src, filepath.Join(mnt, "active")+"/")
	img := filepath.Join(mnt, "active", "disk.img")
	if got := xattr(t, img, "status"); got != "active" {
		t.Fatalf("status %s", got)
	}
	mustRun(t, "cmp", src, img)
	if check != nil {
		check(data, xattr(t, img, "id"))
	}
	d.stop()

	d = startDaemon(t, data, mnt, store...)
	mustRun(t, "cmp", src, img)
	mustRun(t, "rm", img)
	if _, err := os.Stat(img); !os.IsNotExist(err) {
		t.Fatalf("after rm: %v", err)
	}
	if check != nil {
		check(data, "")
	}

	content, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	restRoundTrip(t, d.addr, content, func(id string) {
		if check != nil {
			check(data, id)
		}
	})
}

// The store going away in the middle of a copy: close fails with EIO, the
// image ends killed with the reason, the daemon keeps serving, and once the
// store is back the images it already held read as before and nothing of
// the killed upload is in the bucket.
func TestServeS3GoesAwayMidCopy(t *testing.T) {
	needMount(t)
	client := startMinIO(t)
	tmp := t.TempDir()
	data, mnt := filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	d := startDaemon(t, data, mnt, "--store", "s3://images")
	kept := randomFile(t, tmp, "kept.img", 1<<20)
	mustRun(t, "cp", kept, filepath.Join(mnt, "active")+"/")

	f, err := os.Create(filepath.Join(mnt, "active", "doomed.img"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for i := 0; i < 20; i++ { // past the first 16 MiB part: a multipart upload is under way
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	restart := killMinIO(t)
	f.Write(chunk) // may fail already; close must
	err = f.Close()
	if err == nil || !strings.Contains(err.Error(), "input/output error") {
		t.Fatalf("close with the store gone: %v, want EIO", err)
	}
	killed := filepath.Join(mnt, "killed", "doomed.img")
	if got := xattr(t, killed, "glimpse.error"); got == "" {
		t.Fatal("killed without a reason")
	}
	// The daemon serves everyone else meanwhile.
	if got := ls(t, filepath.Join(mnt, "active")); fmt.Sprint(got) != "[kept.img]" {
		t.Fatalf("active/ while the store is away: %v", got)
	}
	resp, err := http.Get("http://" + d.addr + "/healthcheck")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthcheck while the store is away: %v %v", resp, err)
	}
	resp.Body.Close()

	restart()
	mustRun(t, "cmp", kept, filepath.Join(mnt, "active", "kept.img"))
	id := xattr(t, filepath.Join(mnt, "active", "kept.img"), "id")
	if keys := objects(t, client, "images"); fmt.Sprint(keys) != "["+id+"]" {
		t.Fatalf("bucket after the kill: %v", keys)
	}
}

// killMinIO kills the test's MinIO (SIGKILL: to the daemon the store is
// gone) and returns a function that starts it again on the same address,
// keys and data, waiting until it answers.
func killMinIO(t *testing.T) (restart func()) {
	t.Helper()
	pid, _ := strconv.Atoi(os.Getenv("MINIO_TEST_PID"))
	proc, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	proc.Kill()
	for proc.Signal(syscall.Signal(0)) == nil { // not our child: wait until it is gone
		time.Sleep(10 * time.Millisecond)
	}
	return func() {
		t.Helper()
		bin, err := exec.Command("../../scripts/minio", "path").Output()
		if err != nil {
			t.Fatal(err)
		}
		addr := strings.TrimPrefix(os.Getenv("AWS_ENDPOINT_URL"), "http://")
		cmd := exec.Command(strings.TrimSpace(string(bin)), "server", "--quiet", "--address", addr,
			"--console-address", freeAddr(t), filepath.Join(os.Getenv("MINIO_TEST_DATA"), "data"))
		cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+os.Getenv("AWS_ACCESS_KEY_ID"),
			"MINIO_ROOT_PASSWORD="+os.Getenv("AWS_SECRET_ACCESS_KEY"), "MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		deadline := time.Now().Add(60 * time.Second)
		for {
			resp, err := http.Get("http://" + addr + "/")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusForbidden { // the S3 API answers an anonymous GET /
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("MinIO did not come back: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// A writer that goes back works on S3 too: a pwrite below what was
// already streamed and a read of it make the upload fall back to a spool
// file, and it ends active with the right bytes; a daemon killed after such
// a fallback leaves nothing of that upload in the bucket or the spool once
// it is back.
func TestServeS3SeekingWriter(t *testing.T) {
	needMount(t)
	client := startMinIO(t)
	tmp := t.TempDir()
	data, mnt := filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	spoolDir := filepath.Join(data, "spool")
	d := startDaemon(t, data, mnt, "--store", "s3://images")

	// A pwrite below the streamed bytes, past the first part: the
	// multipart upload is under way when the writer goes back.
	content := make([]byte, 20<<20)
	rand.Read(content)
	patched := filepath.Join(mnt, "active", "patched.img")
	f, err := os.Create(patched)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(content); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(spoolDir); len(left) != 0 {
		t.Fatalf("spool files while streaming in order: %d", len(left))
	}
	if _, err := f.WriteAt([]byte("patched"), 1<<20); err != nil {
		t.Fatal(err)
	}
	copy(content[1<<20:], "patched")
	back := make([]byte, 16)
	if _, err := f.ReadAt(back, 1<<20-8); err != nil || !bytes.Equal(back, content[1<<20-8:1<<20+8]) {
		t.Fatalf("read back through the writer's descriptor: %q %v", back, err)
	}
	if left, _ := os.ReadDir(spoolDir); len(left) != 1 {
		t.Fatalf("spool files after a write below the streamed bytes: %d, want 1", len(left))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(patched); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("patched image reads back wrong (%v)", err)
	}
	patchedID := xattr(t, patched, "id")
	want := []string{patchedID}
	if keys := objects(t, client, "images"); fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Fatalf("bucket holds %v, want %v", keys, want)
	}

	// Killed after a fallback: the prefix it committed is in the bucket
	// until the daemon is back.
	f, err = os.Create(filepath.Join(mnt, "active", "doomed.img"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(content); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if keys := objects(t, client, "images"); len(keys) != 2 {
		t.Fatalf("bucket after the fallback holds %v, want the prefix beside the image", keys)
	}
	d.kill()
	f.Close() // the connection is gone: any error
	startDaemon(t, data, mnt, "--store", "s3://images")
	if reason := xattr(t, filepath.Join(mnt, "killed", "doomed.img"), "glimpse.error"); reason == "" {
		t.Error("the interrupted upload is not killed with a reason")
	}
	if keys := objects(t, client, "images"); fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Fatalf("bucket after the restart holds %v, want %v", keys, want)
	}
	if left, _ := os.ReadDir(spoolDir); len(left) != 0 {
		t.Fatalf("spool files after the restart: %d", len(left))
	}
}
