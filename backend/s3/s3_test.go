package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/backend/backendtest"
	"github.com/glimpse-project/glimpse/backend/s3"
)

const testPart = 5 << 20 // S3's smallest part, so tests go multipart cheaply

// config points at m with a fresh bucket, so every test starts empty and
// Open's bucket creation is exercised each time.
func config(m *minioServer) s3.Config {
	return s3.Config{
		Endpoint:  m.addr,
		Bucket:    "glimpse-" + randomHex(6),
		Prefix:    "images",
		AccessKey: m.access,
		SecretKey: m.secret,
		Region:    "us-east-1",
		PathStyle: true,
		PartSize:  testPart,
	}
}

func open(t *testing.T, cfg s3.Config) *s3.S3 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := s3.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	m := sharedMinio(t)
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return open(t, config(m))
	})
}

// incomplete lists the multipart uploads under the store's bucket.
func incomplete(t *testing.T, s *s3.S3) []string {
	t.Helper()
	var names []string
	for u := range s.Client().ListIncompleteUploads(context.Background(), s.Bucket(), "", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		names = append(names, u.Key)
	}
	return names
}

func writeN(w backend.Writer, n int) error {
	chunk := bytes.Repeat([]byte{'x'}, 1<<20)
	for ; n > 0; n -= len(chunk) {
		if _, err := w.Write(chunk[:min(n, len(chunk))]); err != nil {
			return err
		}
	}
	return nil
}

// An abort after the multipart upload has begun leaves neither an object nor
// an incomplete upload.
func TestAbortRemovesMultipartUpload(t *testing.T) {
	s := open(t, config(sharedMinio(t)))
	ctx := context.Background()
	w, err := s.Create(ctx, "aborted")
	if err != nil {
		t.Fatal(err)
	}
	if err := writeN(w, 3*testPart); err != nil {
		t.Fatal(err)
	}
	if up := incomplete(t, s); len(up) != 1 {
		t.Fatalf("while writing: incomplete uploads %v, want one", up)
	}
	if err := w.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if up := incomplete(t, s); len(up) != 0 {
		t.Fatalf("after abort: incomplete uploads %v", up)
	}
	if _, err := s.Stat(ctx, "aborted"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("after abort: stat %v, want ErrNotFound", err)
	}
	if _, err := w.Write([]byte("more")); err == nil {
		t.Fatal("write after abort succeeded")
	}
}

// A commit whose context ends aborts the upload.
func TestCommitCancelled(t *testing.T) {
	s := open(t, config(sharedMinio(t)))
	w, err := s.Create(context.Background(), "cancelled")
	if err != nil {
		t.Fatal(err)
	}
	if err := writeN(w, 2*testPart); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Commit(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("commit with a cancelled context: %v", err)
	}
	if err := w.Abort(context.Background()); err != nil {
		t.Fatal(err)
	}
	if up := incomplete(t, s); len(up) != 0 {
		t.Fatalf("incomplete uploads %v", up)
	}
	if _, err := s.Stat(context.Background(), "cancelled"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("stat %v, want ErrNotFound", err)
	}
}

// AbortIncomplete removes uploads a crashed process left for keys of the
// store, and only those: not outside the prefix, nor below it (a store with
// a longer prefix may be another daemon's).
func TestAbortIncompleteScope(t *testing.T) {
	s := open(t, config(sharedMinio(t)))
	ctx := context.Background()
	core := minio.Core{Client: s.Client()}
	for _, name := range []string{"images/crashed", "images/deeper/crashed", "other/keep"} {
		if _, err := core.NewMultipartUpload(ctx, s.Bucket(), name, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AbortIncomplete(ctx); err != nil {
		t.Fatal(err)
	}
	if up := incomplete(t, s); fmt.Sprint(up) != "[images/deeper/crashed other/keep]" {
		t.Fatalf("after AbortIncomplete: %v, want [images/deeper/crashed other/keep]", up)
	}
}

// Objects outside the prefix, or below it in "directories", are not the
// store's and List does not report them.
func TestListScope(t *testing.T) {
	s := open(t, config(sharedMinio(t)))
	ctx := context.Background()
	for _, name := range []string{"images/mine", "images/sub/notmine", "other", "imagesX"} {
		if _, err := s.Client().PutObject(ctx, s.Bucket(), name, strings.NewReader(name), int64(len(name)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	if err := s.List(ctx, func(i backend.Info) error { keys = append(keys, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "mine" {
		t.Fatalf("list: %v, want [mine]", keys)
	}
}

// A reader opened before a replace fails rather than mixing versions.
func TestReaderPinnedToVersion(t *testing.T) {
	s := open(t, config(sharedMinio(t)))
	ctx := context.Background()
	if err := backendtest.Put(ctx, s, "k", []byte("version one")); err != nil {
		t.Fatal(err)
	}
	r, err := s.Open(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := backendtest.Put(ctx, s, "k", []byte("version two")); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 4)
	if _, err := r.ReadAt(p, 0); err == nil {
		t.Fatalf("read of a replaced object succeeded: %q", p)
	}
}

func TestInvalidKeys(t *testing.T) {
	s := open(t, config(sharedMinio(t)))
	ctx := context.Background()
	for _, k := range []string{"", ".", "..", "a/b", ".hidden", "nul\x00"} {
		if _, err := s.Create(ctx, k); err == nil {
			t.Errorf("create %q succeeded", k)
		}
		if _, err := s.Stat(ctx, k); err == nil || errors.Is(err, backend.ErrNotFound) {
			t.Errorf("stat %q: %v, want an invalid-key error", k, err)
		}
	}
}

// More large uploads than parallel slots: the others send one part at a
// time, and all arrive intact.
func TestParallelUploadSlots(t *testing.T) {
	cfg := config(sharedMinio(t))
	cfg.MaxParallelUploads = 1
	s := open(t, cfg)
	ctx := context.Background()
	const n = 3
	datas := make([][]byte, n)
	errs := make(chan error, n)
	for i := range datas {
		datas[i] = bytes.Repeat([]byte{byte('a' + i)}, 2*testPart+i)
		go func(i int) {
			errs <- backendtest.Put(ctx, s, fmt.Sprintf("u%d", i), datas[i])
		}(i)
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i := range datas {
		got, err := backendtest.Get(ctx, s, fmt.Sprintf("u%d", i))
		if err != nil || !bytes.Equal(got, datas[i]) {
			t.Fatalf("u%d: %v, content equal %v", i, err, bytes.Equal(got, datas[i]))
		}
	}
}

// AbortStale aborts the multipart upload of a dead write and spares the
// live one, which then completes.
func TestAbortStaleSparesLiveMultipart(t *testing.T) {
	s := open(t, config(sharedMinio(t)))
	ctx := context.Background()
	writers := map[string]backend.Writer{}
	for _, key := range []string{"live", "dead"} {
		w, err := s.Create(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if err := writeN(w, 2*testPart); err != nil {
			t.Fatal(err)
		}
		writers[key] = w
	}
	if up := incomplete(t, s); len(up) != 2 {
		t.Fatalf("before AbortStale: incomplete uploads %v, want two", up)
	}
	if err := s.AbortStale(ctx, func(key string) bool { return key == "live" }); err != nil {
		t.Fatal(err)
	}
	if up := incomplete(t, s); fmt.Sprint(up) != "[images/live]" {
		t.Fatalf("after AbortStale: incomplete uploads %v, want only the live one", up)
	}
	if err := writers["live"].Commit(ctx); err != nil {
		t.Fatalf("live upload after AbortStale: %v", err)
	}
	if info, err := s.Stat(ctx, "live"); err != nil || info.Size != 2*testPart {
		t.Fatalf("live object: %+v %v", info, err)
	}
	writers["dead"].Abort(ctx)
}
