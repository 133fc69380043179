package swift

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultSegmentSize is the size of the segments an object larger than one
// segment is uploaded in. A Writer holds at most two segments in memory (one
// filling, one uploading), so this bounds an upload's memory at 2 ×
// SegmentSize. With Swift's default max_manifest_segments (1000) it allows
// objects of up to 64 GB.
const DefaultSegmentSize = 64 << 20

// Config says where the objects live and how to log in.
//
// Authentication follows python-swiftclient and ncw/swift: AuthURL, User and
// Key for v1 (tempauth, ST_AUTH/ST_USER/ST_KEY); for Keystone v3 also the
// domain and project fields (OS_*). With StorageURL and AuthToken set, no
// authentication request is made at all.
type Config struct {
	// Container holds the objects; it is created if missing.
	Container string
	// Prefix, if not empty, is prepended to every object name. ParseURL
	// makes it end in "/".
	Prefix string
	// SegmentContainer holds the segments of large objects (default:
	// Container + "_segments", the swift CLI's convention). Segments are
	// named PREFIX KEY/UPLOAD/NNNNNNNN.
	SegmentContainer string
	// SegmentSize: objects up to this size are one PUT, larger ones a
	// static large object in segments of this size (default
	// DefaultSegmentSize). Swift rate-limits reading segments under 1 MiB.
	SegmentSize int64

	AuthURL     string
	User        string
	Key         string
	AuthVersion int // 0: detect from AuthURL, else 1, 2 or 3

	UserID          string
	UserDomain      string
	UserDomainID    string
	Project         string // tenant name in v2
	ProjectID       string
	ProjectDomain   string
	ProjectDomainID string
	Region          string
	EndpointType    string // public (default), internal or admin

	ApplicationCredentialID     string
	ApplicationCredentialName   string
	ApplicationCredentialSecret string

	StorageURL string // pre-authenticated: skip auth with AuthToken
	AuthToken  string

	// Timeout bounds the wait for any single response or data transfer
	// step (ncw/swift's data channel timeout; default 60 s).
	Timeout time.Duration
}

// ParseURL parses swift://CONTAINER[/PREFIX][?segment_size=BYTES&segment_container=NAME]
// and takes the credentials from env (os.Getenv in production): ST_AUTH,
// ST_USER, ST_KEY, ST_AUTH_VERSION for v1, and OS_AUTH_URL, OS_USERNAME,
// OS_USER_ID, OS_PASSWORD, OS_USER_DOMAIN_NAME, OS_USER_DOMAIN_ID,
// OS_PROJECT_NAME (or OS_TENANT_NAME), OS_PROJECT_ID (or OS_TENANT_ID),
// OS_PROJECT_DOMAIN_NAME, OS_PROJECT_DOMAIN_ID, OS_REGION_NAME,
// OS_INTERFACE (or OS_ENDPOINT_TYPE), OS_IDENTITY_API_VERSION,
// OS_APPLICATION_CREDENTIAL_{ID,NAME,SECRET}, OS_STORAGE_URL and
// OS_AUTH_TOKEN for Keystone. When ST_AUTH is set the ST_* variables win,
// as in ncw/swift's ApplyEnvironment.
func ParseURL(raw string, env func(string) string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, fmt.Errorf("swift store: %w", err)
	}
	if u.Scheme != "swift" {
		return Config{}, fmt.Errorf("swift store: %q is not a swift:// URL", raw)
	}
	if u.Host == "" {
		return Config{}, fmt.Errorf("swift store: %q names no container (swift://CONTAINER[/PREFIX])", raw)
	}
	cfg := Config{Container: u.Host, Prefix: strings.Trim(u.Path, "/")}
	if cfg.Prefix != "" {
		cfg.Prefix += "/"
	}
	q := u.Query()
	if s := q.Get("segment_size"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return Config{}, fmt.Errorf("swift store: segment_size %q is not a positive number of bytes", s)
		}
		cfg.SegmentSize = n
	}
	cfg.SegmentContainer = q.Get("segment_container")

	ver := func(s string) (int, error) {
		if s == "" {
			return 0, nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, fmt.Errorf("swift store: auth version %q: %w", s, err)
		}
		return int(f), nil
	}
	if env("ST_AUTH") != "" {
		cfg.AuthURL, cfg.User, cfg.Key = env("ST_AUTH"), env("ST_USER"), env("ST_KEY")
		if cfg.AuthVersion, err = ver(env("ST_AUTH_VERSION")); err != nil {
			return Config{}, err
		}
	} else {
		first := func(names ...string) string {
			for _, n := range names {
				if v := env(n); v != "" {
					return v
				}
			}
			return ""
		}
		cfg.AuthURL = env("OS_AUTH_URL")
		cfg.User = env("OS_USERNAME")
		cfg.UserID = env("OS_USER_ID")
		cfg.Key = env("OS_PASSWORD")
		cfg.UserDomain = env("OS_USER_DOMAIN_NAME")
		cfg.UserDomainID = env("OS_USER_DOMAIN_ID")
		cfg.Project = first("OS_PROJECT_NAME", "OS_TENANT_NAME")
		cfg.ProjectID = first("OS_PROJECT_ID", "OS_TENANT_ID")
		cfg.ProjectDomain = env("OS_PROJECT_DOMAIN_NAME")
		cfg.ProjectDomainID = env("OS_PROJECT_DOMAIN_ID")
		cfg.Region = env("OS_REGION_NAME")
		cfg.EndpointType = strings.TrimSuffix(first("OS_INTERFACE", "OS_ENDPOINT_TYPE"), "URL")
		cfg.ApplicationCredentialID = env("OS_APPLICATION_CREDENTIAL_ID")
		cfg.ApplicationCredentialName = env("OS_APPLICATION_CREDENTIAL_NAME")
		cfg.ApplicationCredentialSecret = env("OS_APPLICATION_CREDENTIAL_SECRET")
		if cfg.AuthVersion, err = ver(env("OS_IDENTITY_API_VERSION")); err != nil {
			return Config{}, err
		}
	}
	cfg.StorageURL, cfg.AuthToken = env("OS_STORAGE_URL"), env("OS_AUTH_TOKEN")
	if cfg.AuthURL == "" && (cfg.StorageURL == "" || cfg.AuthToken == "") {
		return Config{}, fmt.Errorf("swift store: no credentials: set ST_AUTH, ST_USER and ST_KEY (v1), or OS_AUTH_URL and the other OS_* variables (Keystone), or OS_STORAGE_URL and OS_AUTH_TOKEN")
	}
	return cfg, nil
}
