package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/minio start: %v", err)
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
	tmp := t.TempDir()
	data, mnt := filepath.Join(tmp, "data"), filepath.Join(tmp, "mnt")
	store := []string{"--store", "s3://images/glimpse"}
	d := startDaemon(t, data, mnt, store...)

	src := randomFile(t, tmp, "big.img", 40<<20) // several 16 MiB parts
	mustRun(t, "cp", src, filepath.Join(mnt, "active")+"/")
	img := filepath.Join(mnt, "active", "big.img")
	if got := xattr(t, img, "status"); got != "active" {
		t.Fatalf("status %s", got)
	}
	mustRun(t, "cmp", src, img)
	id := xattr(t, img, "id")
	if keys := objects(t, client, "images"); len(keys) != 1 || keys[0] != "glimpse/"+id {
		t.Fatalf("bucket holds %v, want glimpse/%s", keys, id)
	}
	d.stop()

	startDaemon(t, data, mnt, store...)
	mustRun(t, "cmp", src, img)
	mustRun(t, "rm", img)
	if keys := objects(t, client, "images"); len(keys) != 0 {
		t.Fatalf("bucket after rm: %v", keys)
	}
	if spooled, _ := os.ReadDir(filepath.Join(data, "spool")); len(spooled) != 0 {
		t.Fatalf("spool files left: %d", len(spooled))
	}
}
