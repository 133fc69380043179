// Command benchclient moves a file to or from a store with the store's own
// client library and nothing else, as a direct client would: the baselines
// scripts/bench sets glimpse's mount against. It prints MiB/s.
//
//	benchclient s3-put FILE BUCKET KEY     minio-go PutObject (AWS_* env)
//	benchclient s3-put-hashed FILE BUCKET KEY
//	benchclient swift-put-hashed FILE CONTAINER OBJECT
//	                                       the same upload while the file is
//	                                       hashed with md5 and sha512 beside it:
//	                                       the work any Glance store does
//	benchclient s3-get BUCKET KEY          minio-go GetObject, bytes discarded
//	benchclient swift-put FILE CONTAINER OBJECT
//	                                       ncw/swift ObjectPut, streamed (ST_AUTH, ST_USER, ST_KEY)
//	benchclient rbd-put FILE POOL IMAGE    go-ceph: create the image, sequential
//	                                       4 MiB writes, flush (CEPH_CONF; needs
//	                                       -tags ceph,pacific)
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	ncw "github.com/ncw/swift/v2"

	"github.com/glimpse-project/glimpse/scripts/internal/floor"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchclient:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: benchclient s3-put|s3-put-hashed|s3-get|swift-put|swift-put-hashed|rbd-put ARGS")
	}
	cmd, args := args[0], args[1:]
	want := map[string]int{"s3-put": 3, "s3-put-hashed": 3, "s3-get": 2, "swift-put": 3, "swift-put-hashed": 3, "rbd-put": 3}
	n, ok := want[cmd]
	if !ok {
		return fmt.Errorf("unknown command %q", cmd)
	}
	if len(args) != n {
		return fmt.Errorf("%s takes %d arguments", cmd, n)
	}
	start := time.Now()
	var bytes int64
	var err error
	switch cmd {
	case "s3-put":
		bytes, err = s3Put(ctx, args[0], args[1], args[2])
	case "s3-put-hashed":
		bytes, err = hashedBeside(args[0], func() (int64, error) { return s3Put(ctx, args[0], args[1], args[2]) })
	case "s3-get":
		bytes, err = s3Get(ctx, args[0], args[1])
	case "swift-put":
		bytes, err = swiftPut(ctx, args[0], args[1], args[2])
	case "swift-put-hashed":
		bytes, err = hashedBeside(args[0], func() (int64, error) { return swiftPut(ctx, args[0], args[1], args[2]) })
	case "rbd-put":
		bytes, err = rbdPut(args[0], args[1], args[2])
	}
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	fmt.Printf("%.1f\n", float64(bytes)/(1<<20)/time.Since(start).Seconds())
	return nil
}

func s3Client(ctx context.Context, bucket string) (*minio.Client, error) {
	u, err := url.Parse(os.Getenv("AWS_ENDPOINT_URL"))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("AWS_ENDPOINT_URL %q is not a URL", os.Getenv("AWS_ENDPOINT_URL"))
	}
	c, err := minio.New(u.Host, &minio.Options{
		Creds:  credentials.NewStaticV4(os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), ""),
		Secure: u.Scheme == "https",
		Region: os.Getenv("AWS_REGION"),
	})
	if err != nil {
		return nil, err
	}
	exists, err := c.BucketExists(ctx, bucket)
	if err != nil {
		return nil, err
	}
	if !exists {
		if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// s3Put uploads the file as a client would, with minio-go's defaults for a
// file of known size (parallel multipart upload).
func s3Put(ctx context.Context, file, bucket, key string) (int64, error) {
	c, err := s3Client(ctx, bucket)
	if err != nil {
		return 0, err
	}
	info, err := c.FPutObject(ctx, bucket, key, file, minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return 0, err
	}
	return info.Size, nil
}

// hashedBeside runs put while the same file is read again and hashed with
// md5 and sha512, each on its own goroutine: the CPU any Glance store
// spends beside the upload, without a mount in the way.
func hashedBeside(file string, put func() (int64, error)) (int64, error) {
	hashed := make(chan error, 1)
	go func() { _, err := floor.HashFile(file); hashed <- err }()
	n, err := put()
	return n, errors.Join(err, <-hashed)
}

func s3Get(ctx context.Context, bucket, key string) (int64, error) {
	c, err := s3Client(ctx, bucket)
	if err != nil {
		return 0, err
	}
	obj, err := c.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return 0, err
	}
	defer obj.Close()
	return io.Copy(io.Discard, obj)
}

// swiftPut streams the file in one PUT (what a client does below Swift's
// 5 GiB object limit).
func swiftPut(ctx context.Context, file, container, object string) (int64, error) {
	c := &ncw.Connection{
		AuthUrl:  os.Getenv("ST_AUTH"),
		UserName: os.Getenv("ST_USER"),
		ApiKey:   os.Getenv("ST_KEY"),
	}
	if err := c.Authenticate(ctx); err != nil {
		return 0, err
	}
	if err := c.ContainerCreate(ctx, container, nil); err != nil {
		return 0, err
	}
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	w, err := c.ObjectCreate(ctx, container, object, false, "", "application/octet-stream", nil)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(w, f)
	if err != nil {
		w.Close()
		return 0, err
	}
	return n, w.Close()
}
