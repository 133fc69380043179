package s3

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// Defaults for the streaming upload. A writer holds at most one part of its
// own plus NumThreads parts inside minio-go (ConcurrentStreamParts), so with
// these values one large upload needs about 80 MiB, not the 512 MiB parts
// minio-go picks for an unknown size by default. Past MaxParallelUploads
// such uploads, a writer sends one part at a time (2 parts of memory).
const (
	DefaultPartSize   = 16 << 20
	DefaultNumThreads = 4
	// DefaultMaxParallelUploads: 4 uploads with 4 parts of 16 MiB in
	// flight hold 256 MiB.
	DefaultMaxParallelUploads = 4
	minPartSize               = 5 << 20 // S3's smallest part but the last
)

// Config says where the objects live and how to reach the server.
type Config struct {
	// Endpoint is host[:port] of the S3 server, without scheme;
	// "s3.amazonaws.com" when empty.
	Endpoint string
	// Bucket holds the objects; Open creates it if it is missing.
	Bucket string
	// Prefix, if not empty, is prepended to every key, with a "/" between
	// (no leading or trailing slash).
	Prefix string

	AccessKey    string
	SecretKey    string
	SessionToken string
	// Region is sent with requests and used to create the bucket; empty
	// lets minio-go ask the server.
	Region string

	// Secure selects HTTPS. InsecureSkipVerify accepts any certificate
	// (self-signed test setups of MinIO or Ceph RGW), never the default.
	Secure             bool
	InsecureSkipVerify bool
	// PathStyle forces path-style requests (http://host/bucket/key), which
	// MinIO and Ceph RGW behind a plain hostname need. When false, minio-go
	// chooses: virtual-host style for AWS and the other hosts it knows,
	// path style for everything else.
	PathStyle bool

	// PartSize is the multipart part size for streamed uploads (at least
	// 5 MiB; DefaultPartSize when 0). Objects smaller than one part are
	// sent in a single PUT at Commit.
	PartSize uint64
	// NumThreads is how many parts of one upload are sent at once
	// (DefaultNumThreads when 0).
	NumThreads uint
	// ReadBlockSize is the unit of ranged GETs and of the read cache
	// (blockcache.DefaultBlockSize, 4 MiB, when 0). ReadCacheSize bounds
	// the cached bytes of all readers of the store together
	// (blockcache.DefaultSize, 64 MiB, when 0). ReadAhead is how many
	// blocks a sequential reader has fetched ahead (8 when 0, none when
	// negative; at most half the cache).
	ReadBlockSize int64
	ReadCacheSize int64
	ReadAhead     int
	// ReadFetchers bounds the readahead GETs in flight across all
	// readers (blockcache.DefaultFetchers, 4, when 0).
	ReadFetchers int

	// MaxParallelUploads bounds how many uploads of the store send
	// NumThreads parts at once (DefaultMaxParallelUploads when 0). Each
	// holds NumThreads part buffers; an upload that finds no slot free
	// sends its parts one at a time with a single buffer. So uploads
	// together hold at most MaxParallelUploads*NumThreads*PartSize plus
	// 2*PartSize per other writer.
	MaxParallelUploads int

	// SignPayload sends every payload with minio-go's streaming
	// signature over plain HTTP: both ends compute SHA-256 of every byte,
	// a third hash of each upload beside the lifecycle's md5 and sha512,
	// and on a small machine the largest cost of a cp into the store after
	// those two. When false (the default) payloads go as UNSIGNED-PAYLOAD
	// with a CRC32C of each part (a header, or a trailer on a streamed
	// PUT) that the server checks, so a corrupted byte still fails the
	// request: what minio-go does over HTTPS and what the AWS SDKs do by
	// default. Servers without aws-chunked checksum trailers (older Ceph
	// RGW releases, some other S3 implementations) need SignPayload. Over
	// HTTPS it only turns the CRC32C off.
	SignPayload bool

	// MaxRetries is how often minio-go retries a failed request (its
	// default, 10, when 0; 1 disables retries).
	MaxRetries int

	// StallTimeout fails an operation when the server makes no progress
	// on one of its requests for this long: it accepted the connection
	// but sends no answer and takes no data (DefaultStallTimeout when 0).
	// A stall is not retried: the operation fails after one such period.
	StallTimeout time.Duration
}

func (c Config) stallTimeout() time.Duration {
	if c.StallTimeout <= 0 {
		return DefaultStallTimeout
	}
	return c.StallTimeout
}

func (c Config) partSize() uint64 {
	if c.PartSize == 0 {
		return DefaultPartSize
	}
	return c.PartSize
}

func (c Config) numThreads() uint {
	if c.NumThreads == 0 {
		return DefaultNumThreads
	}
	return c.NumThreads
}

func (c Config) maxParallelUploads() int {
	if c.MaxParallelUploads <= 0 {
		return DefaultMaxParallelUploads
	}
	return c.MaxParallelUploads
}

func (c Config) validate() error {
	if err := s3utils.CheckValidBucketNameStrict(c.Bucket); err != nil {
		return fmt.Errorf("s3 store: bucket %q: %w", c.Bucket, err)
	}
	if c.Prefix != strings.Trim(c.Prefix, "/") || strings.Contains(c.Prefix, "//") {
		return fmt.Errorf("s3 store: prefix %q: no leading, trailing or double slash allowed", c.Prefix)
	}
	if c.PartSize != 0 && c.PartSize < minPartSize {
		return fmt.Errorf("s3 store: part size %d is below S3's minimum of 5 MiB", c.PartSize)
	}
	return nil
}

// ParseURL reads a store URL of the form
//
//	s3://BUCKET[/PREFIX][?path-style=true&insecure-skip-verify=true&sign-payload=true]
//
// and takes the endpoint, credentials and region from the usual AWS
// variables, looked up through env (os.Getenv in the daemon):
// AWS_ENDPOINT_URL (http:// or https://host[:port]; AWS when unset),
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, and
// AWS_REGION or else AWS_DEFAULT_REGION. An http:// endpoint turns TLS off;
// everything else uses TLS. Without keys requests are anonymous.
func ParseURL(raw string, env func(string) string) (Config, error) {
	if env == nil {
		env = func(string) string { return "" }
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, fmt.Errorf("s3 store: %w", err)
	}
	if u.Scheme != "s3" {
		return Config{}, fmt.Errorf("s3 store: %q: scheme must be s3://", raw)
	}
	if u.User != nil || u.Opaque != "" || u.Fragment != "" {
		return Config{}, fmt.Errorf("s3 store: %q: want s3://BUCKET[/PREFIX]", raw)
	}
	cfg := Config{
		Bucket:       u.Host,
		Prefix:       strings.TrimSuffix(strings.TrimPrefix(u.Path, "/"), "/"),
		AccessKey:    env("AWS_ACCESS_KEY_ID"),
		SecretKey:    env("AWS_SECRET_ACCESS_KEY"),
		SessionToken: env("AWS_SESSION_TOKEN"),
		Region:       env("AWS_REGION"),
		Endpoint:     "s3.amazonaws.com",
		Secure:       true,
	}
	if cfg.Region == "" {
		cfg.Region = env("AWS_DEFAULT_REGION")
	}
	if (cfg.AccessKey == "") != (cfg.SecretKey == "") {
		return Config{}, errors.New("s3 store: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither")
	}
	if ep := env("AWS_ENDPOINT_URL"); ep != "" {
		cfg.Endpoint, cfg.Secure, err = parseEndpoint(ep)
		if err != nil {
			return Config{}, err
		}
	}
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		var b bool
		switch k {
		case "path-style":
			b, err = strconv.ParseBool(v)
			cfg.PathStyle = b
		case "insecure-skip-verify":
			b, err = strconv.ParseBool(v)
			cfg.InsecureSkipVerify = b
		case "sign-payload":
			b, err = strconv.ParseBool(v)
			cfg.SignPayload = b
		default:
			return Config{}, fmt.Errorf("s3 store: %q: unknown option %q (known: path-style, insecure-skip-verify, sign-payload)", raw, k)
		}
		if err != nil {
			return Config{}, fmt.Errorf("s3 store: %q: option %s: %w", raw, k, err)
		}
	}
	if err := cfg.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// parseEndpoint splits AWS_ENDPOINT_URL into host[:port] and whether to use
// TLS. A bare host means https.
func parseEndpoint(ep string) (host string, secure bool, err error) {
	if !strings.Contains(ep, "://") {
		ep = "https://" + ep
	}
	u, err := url.Parse(ep)
	if err != nil {
		return "", false, fmt.Errorf("s3 store: AWS_ENDPOINT_URL: %w", err)
	}
	switch u.Scheme {
	case "http":
	case "https":
		secure = true
	default:
		return "", false, fmt.Errorf("s3 store: AWS_ENDPOINT_URL %q: scheme must be http or https", ep)
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", false, fmt.Errorf("s3 store: AWS_ENDPOINT_URL %q: want scheme://host[:port] with no path", ep)
	}
	return u.Host, secure, nil
}
