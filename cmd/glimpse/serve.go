package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"

	"github.com/glimpse-project/glimpse/api"
	"github.com/glimpse-project/glimpse/api/keystone"
	"github.com/glimpse-project/glimpse/backend"
	httpstore "github.com/glimpse-project/glimpse/backend/http"
	"github.com/glimpse-project/glimpse/backend/local"
	"github.com/glimpse-project/glimpse/backend/metered"
	"github.com/glimpse-project/glimpse/backend/rbd"
	"github.com/glimpse-project/glimpse/backend/s3"
	"github.com/glimpse-project/glimpse/backend/spool"
	"github.com/glimpse-project/glimpse/backend/swift"
	"github.com/glimpse-project/glimpse/fs"
	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/metadefs"
	"github.com/glimpse-project/glimpse/lifecycle/policy"
	"github.com/glimpse-project/glimpse/meta"
)

type serveOptions struct {
	data         string
	registry     string
	leaseTTL     time.Duration
	mount        string
	listen       string
	store        string
	storeTimeout time.Duration
	fsProject    string
	maxImageSize int64
	allowOther   bool
	pprof        bool
	uid, gid     int
	tlsCert      string
	tlsKey       string
	debugFUSE    bool
	rawCache     int64
	logLevel     string
	logFormat    string
	authTokens   string
	policyFile   string
	// allowFormatMismatch accepts content that contradicts the declared
	// disk_format: --require-image-format-match=false (Glance's
	// [image_format] require_image_format_match). Negated so that the
	// zero options keep the safe default.
	allowFormatMismatch bool
	allowPrivate        bool
	timeouts            api.Timeouts
	quota               lifecycle.Quota
	keystone            keystone.Config
	taskTTL             time.Duration
	memberQuota         int // 0: lifecycle.DefaultMemberLimit
	dataReserve         int64
	maxUploads          int
	// allowOtherWithAuth: the operator knows --allow-other opens what the
	// fs project sees to every local user, whatever the REST tokens say.
	allowOtherWithAuth bool
	// noMountWatchdog: no watchdog process beside the daemon. For a daemon
	// run inside another program (the tests' in-process daemons), where
	// os.Executable is not glimpse and a kill -9 takes the mount's only
	// client along anyway.
	noMountWatchdog bool
}

func serveCommand() *cli.Command { return serveCommandRunning(runServe) }

// serveCommandRunning is serve with run in place of the daemon, so that
// tests can see the options that flags, environment and config file give.
func serveCommandRunning(run func(context.Context, serveOptions) error) *cli.Command {
	var o serveOptions
	return &cli.Command{
		Name:  "serve",
		Usage: "run the daemon: mount the catalogue and serve the Glance v2 REST API",
		Description: `Every flag can also be set by its environment variable (shown beside
it) or by a line in the YAML file given with --config (the flag's name as
the key: "listen: 0.0.0.0:9292"). A flag wins over its variable, the
variable over the file, the file over the default.

Prometheus metrics are served on the listener at /metrics; the daemon logs
one line per REST request, with its X-Openstack-Request-Id.

Examples:
   glimpse serve --mount /mnt/glimpse
   glimpse serve --data /srv/glimpse --mount /mnt/glimpse --listen 0.0.0.0:9292
   glimpse serve --mount '' --listen 127.0.0.1:9292     (REST only)
   glimpse serve --config /etc/glimpse/glimpse.yaml --log-format json
   GLIMPSE_STORE=s3://images AWS_ENDPOINT_URL=http://127.0.0.1:9000 glimpse serve`,
		Flags: withEnv([]cli.Flag{
			&cli.StringFlag{Name: "config", Category: "Configuration", Usage: "YAML file of settings, keyed by flag name (flags and environment variables override it)", TakesFile: true},
			&cli.StringFlag{Name: "data", Category: "Storage", Usage: "directory for the registry and the default local store", Value: defaultDataDir(), Destination: &o.data, EnvVars: []string{"GLIMPSE_DATA"}},
			&cli.StringFlag{Name: "registry", Category: "Storage", Usage: "where the catalogue lives: badger under --data (default), or etcd://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...][/PREFIX][?cacert=F&cert=F&key=F] (etcds:// for TLS) shared by several daemons", Destination: &o.registry, EnvVars: []string{"GLIMPSE_REGISTRY"}},
			&cli.DurationFlag{Name: "registry-lease", Category: "Storage", Usage: "how long after this daemon dies the others sharing its registry kill its uploads in flight", Value: defaultLeaseTTL, Destination: &o.leaseTTL, EnvVars: []string{"GLIMPSE_REGISTRY_LEASE"}},
			&cli.StringFlag{Name: "mount", Category: "Mount", Usage: "where to mount the catalogue ('' for no mount)", Value: "/mnt/glimpse", Destination: &o.mount, EnvVars: []string{"GLIMPSE_MOUNT"}},
			&cli.StringFlag{Name: "listen", Category: "REST listener", Usage: "HOST:PORT of the REST listener ('' for none)", Value: "127.0.0.1:9292", Destination: &o.listen, EnvVars: []string{"GLIMPSE_LISTEN"}},
			&cli.StringFlag{Name: "store", Category: "Storage", Usage: "where image content lives: file:///path (default DATA/images) s3://BUCKET[/PREFIX] (AWS_* variables), swift://CONTAINER[/PREFIX] (ST_* or OS_* variables), rbd://POOL (CEPH_CONF; builds with -tags ceph,pacific)", Destination: &o.store, EnvVars: []string{"GLIMPSE_STORE"}},
			&cli.Int64Flag{Name: "data-reserve", Category: "Storage", Usage: "bytes a file store on the registry's filesystem leaves free for the registry: an upload that would take more fails with 413/ENOSPC (0: none; badger dies of SIGBUS on a full filesystem)", Value: defaultDataReserve, Destination: &o.dataReserve, EnvVars: []string{"GLIMPSE_DATA_RESERVE"}},
			&cli.DurationFlag{Name: "store-timeout", Category: "Storage", Usage: "fail a store request (S3, Swift, RBD) that makes no progress for this long: the upload is killed, the read fails", Value: defaultStoreTimeout, Destination: &o.storeTimeout, EnvVars: []string{"GLIMPSE_STORE_TIMEOUT"}},
			&cli.Int64Flag{Name: "raw-cache-size", Category: "Mount", Usage: "bytes raw/ keeps of decompressed clusters and format tables, for all images together (-1: none)", Value: fs.DefaultRawCacheBytes, Destination: &o.rawCache, EnvVars: []string{"GLIMPSE_RAW_CACHE_SIZE"}},
			&cli.StringFlag{Name: "fs-project", Category: "Mount", Usage: "project the mount acts as ('admin' sees and manages everything)", Value: "admin", Destination: &o.fsProject, EnvVars: []string{"GLIMPSE_FS_PROJECT"}},
			&cli.Int64Flag{Name: "max-image-size", Category: "Limits", Aliases: []string{"image-size-cap"}, Usage: "largest upload in bytes (0: no cap)", Destination: &o.maxImageSize, EnvVars: []string{"GLIMPSE_MAX_IMAGE_SIZE"}},
			&cli.IntFlag{Name: "max-uploads", Category: "Limits", Usage: "most REST uploads (PUT file, stage, web-download) in flight for everyone together, each holding a 1 MiB buffer; beyond it 503 with Retry-After", Value: api.DefaultMaxUploads, Destination: &o.maxUploads, EnvVars: []string{"GLIMPSE_MAX_UPLOADS"}},
			&cli.Int64Flag{Name: "quota-images", Category: "Limits", Usage: "most images one project may own, in any status (Glance's image_count_total; 0: no limit)", Destination: &o.quota.Images, EnvVars: []string{"GLIMPSE_QUOTA_IMAGES"}},
			&cli.Int64Flag{Name: "quota-uploading", Category: "Limits", Usage: "most images one project may be uploading at once (Glance's image_count_uploading; 0: no limit)", Destination: &o.quota.Uploading, EnvVars: []string{"GLIMPSE_QUOTA_UPLOADING"}},
			&cli.IntFlag{Name: "image-member-quota", Category: "Limits", Usage: "most members (projects it is shared with) one image may have (Glance's image_member_quota; -1: no limit)", Value: lifecycle.DefaultMemberLimit, Destination: &o.memberQuota, EnvVars: []string{"GLIMPSE_IMAGE_MEMBER_QUOTA"},
				// 0 is the options' "default" inside glimpse, so it is refused here.
				Action: func(_ *cli.Context, n int) error {
					if n == 0 || n < -1 {
						return errors.New("--image-member-quota takes 1 or more, or -1 (no limit)")
					}
					return nil
				}},
			&cli.Int64Flag{Name: "quota-bytes", Category: "Limits", Usage: "most bytes of content one project may store, uploads in flight included (Glance's image_size_total, user_storage_quota; 0: no limit)", Destination: &o.quota.Bytes, EnvVars: []string{"GLIMPSE_QUOTA_BYTES"}},
			&cli.DurationFlag{Name: "read-header-timeout", Category: "REST listener", Usage: "longest a REST client may take to send a request's headers", Value: api.DefaultTimeouts.ReadHeader, Destination: &o.timeouts.ReadHeader, EnvVars: []string{"GLIMPSE_READ_HEADER_TIMEOUT"}},
			&cli.DurationFlag{Name: "idle-timeout", Category: "REST listener", Usage: "longest a kept-alive REST connection may wait for its next request", Value: api.DefaultTimeouts.Idle, Destination: &o.timeouts.Idle, EnvVars: []string{"GLIMPSE_IDLE_TIMEOUT"}},
			&cli.DurationFlag{Name: "body-stall-timeout", Category: "REST listener", Usage: "longest a REST client may send no body bytes before its request (and upload) fails", Value: api.DefaultTimeouts.BodyStall, Destination: &o.timeouts.BodyStall, EnvVars: []string{"GLIMPSE_BODY_STALL_TIMEOUT"}},
			&cli.StringFlag{Name: "auth-tokens", Category: "REST listener", Usage: "JSON file mapping REST tokens to a project and roles (default: no auth, every request is admin)", Destination: &o.authTokens, EnvVars: []string{"GLIMPSE_AUTH_TOKENS"}},
			&cli.StringFlag{Name: "policy-file", Category: "REST listener", Usage: "Glance-style policy.yaml (or .json) overriding Glance's default rules; an unknown rule name is an error", TakesFile: true, Destination: &o.policyFile, EnvVars: []string{"GLIMPSE_POLICY_FILE"}},
			&cli.BoolFlag{Name: "require-image-format-match", Category: "Limits", Usage: "refuse uploads whose content is not the declared disk_format (false: accept them, recording the detected format in glimpse.detected_format; unsafe content is refused either way)", Value: true, EnvVars: []string{"GLIMPSE_REQUIRE_IMAGE_FORMAT_MATCH"}},
			&cli.StringFlag{Name: "keystone-url", Category: "Keystone auth", Usage: "validate every REST X-Auth-Token with this Keystone (identity v3 URL, e.g. http://keystone:5000/v3); excludes --auth-tokens", Destination: &o.keystone.URL},
			&cli.StringFlag{Name: "keystone-user", Category: "Keystone auth", Usage: "glimpse's service user, which validates the tokens (it needs Keystone's service or admin role)", Destination: &o.keystone.User},
			&cli.StringFlag{Name: "keystone-password", Category: "Keystone auth", Usage: "the service user's password", Destination: &o.keystone.Password},
			&cli.StringFlag{Name: "keystone-project", Category: "Keystone auth", Usage: "the service user's project", Destination: &o.keystone.Project},
			&cli.StringFlag{Name: "keystone-domain", Category: "Keystone auth", Usage: "domain of the service user and its project", Value: "Default", Destination: &o.keystone.Domain},
			&cli.DurationFlag{Name: "keystone-token-cache-time", Category: "Keystone auth", Usage: "keep a validated token's answer this long, or until the token expires if sooner (keystonemiddleware's token_cache_time)", Value: keystone.DefaultCacheTime, Destination: &o.keystone.Cache},
			&cli.DurationFlag{Name: "keystone-timeout", Category: "Keystone auth", Usage: "longest a request to Keystone may take; a token that could not be validated gets 503", Value: keystone.DefaultTimeout, Destination: &o.keystone.Timeout},
			&cli.DurationFlag{Name: "task-time-to-live", Category: "REST listener", Usage: "how long a settled task of the tasks API is kept (Glance's task_time_to_live)", Value: lifecycle.DefaultTaskTimeToLive, Destination: &o.taskTTL, EnvVars: []string{"GLIMPSE_TASK_TIME_TO_LIVE"}},
			&cli.BoolFlag{Name: "web-download-allow-private", Category: "REST listener", Usage: "let web-download imports and HTTP locations reach loopback, private and link-local addresses", Destination: &o.allowPrivate},
			&cli.IntFlag{Name: "uid", Category: "Mount", Usage: "owner of the files in the mount", Value: os.Getuid(), DefaultText: "the daemon's uid", Destination: &o.uid},
			&cli.IntFlag{Name: "gid", Category: "Mount", Usage: "group of the files in the mount", Value: os.Getgid(), DefaultText: "the daemon's gid", Destination: &o.gid},
			&cli.StringFlag{Name: "tls-cert", Category: "REST listener", Usage: "serve REST over TLS with this certificate (PEM)", Destination: &o.tlsCert, EnvVars: []string{"GLIMPSE_TLS_CERT"}},
			&cli.StringFlag{Name: "tls-key", Category: "REST listener", Usage: "the TLS certificate's private key (PEM)", Destination: &o.tlsKey, EnvVars: []string{"GLIMPSE_TLS_KEY"}},
			&cli.BoolFlag{Name: "allow-other", Category: "Mount", Usage: "let other users use the mount (with default_permissions)", Destination: &o.allowOther},
			&cli.BoolFlag{Name: "allow-other-with-auth", Category: "Mount", Usage: "accept --allow-other together with --auth-tokens: every local user then reads, through the mount, all that --fs-project sees", Destination: &o.allowOtherWithAuth},
			&cli.BoolFlag{Name: "debug-pprof", Category: "Logs and debugging", Usage: "serve Go profiles under /debug/pprof/ on the listener (no auth: for debugging only)", Destination: &o.pprof},
			&cli.BoolFlag{Name: "debug-fuse", Category: "Logs and debugging", Usage: "log every FUSE request", Destination: &o.debugFUSE},
			&cli.StringFlag{Name: "log-level", Category: "Logs and debugging", Usage: "debug, info, warn or error", Value: "info", Destination: &o.logLevel, EnvVars: []string{"GLIMPSE_LOG_LEVEL"}},
			&cli.StringFlag{Name: "log-format", Category: "Logs and debugging", Usage: "text (logfmt) or json", Value: "text", Destination: &o.logFormat},
		}),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef(c, "serve takes no arguments (got %q)", c.Args().First())
			}
			if err := applyConfigFile(c); err != nil {
				return err
			}
			o.allowFormatMismatch = !c.Bool("require-image-format-match")
			return run(c.Context, o)
		},
	}
}

// defaultDataReserve covers what badger may write between two flushes and
// a compaction of a registry of some 10,000 images: two 8 MiB memtables'
// logs, the level-0 tables they become, and the tables a compaction
// writes before it removes the old ones.
const defaultDataReserve = 64 << 20

// sameFilesystem reports whether two directories are on one filesystem
// (when it cannot tell, it says yes: the reserve is then kept for nothing).
func sameFilesystem(a, b string) bool {
	var sa, sb syscall.Stat_t
	if syscall.Stat(a, &sa) != nil || syscall.Stat(b, &sb) != nil {
		return true
	}
	return sa.Dev == sb.Dev
}

// defaultStoreTimeout: long enough for a busy store to answer a large
// part, short enough that a writer's close does not hang for minutes.
const defaultStoreTimeout = 60 * time.Second

func defaultDataDir() string {
	if dir := os.Getenv("XDG_DATA_HOME"); dir != "" {
		return filepath.Join(dir, "glimpse")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "glimpse")
	}
	return "glimpse-data"
}

// runServe runs the daemon until ctx is cancelled (SIGINT/SIGTERM) or the
// mount is taken away.
func runServe(ctx context.Context, o serveOptions) error {
	log, err := newLogger(os.Stderr, o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if o.tlsCert != "" {
		if _, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey); err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
	}
	if o.maxUploads < 0 {
		return errors.New("--max-uploads takes 1 or more (0: the default)")
	}
	if o.quota.Images < 0 || o.quota.Uploading < 0 || o.quota.Bytes < 0 {
		return errors.New("--quota-images, --quota-uploading and --quota-bytes take 0 (no limit) or more")
	}
	if o.memberQuota < -1 {
		return errors.New("--image-member-quota takes 1 or more, or -1 (no limit)")
	}
	if o.mount == "" && o.listen == "" {
		return errors.New("nothing to serve: both --mount and --listen are empty")
	}
	auth := o.authTokens != "" || o.keystone.URL != ""
	if o.allowOther && o.mount != "" && auth && !o.allowOtherWithAuth {
		return fmt.Errorf("--allow-other with REST auth would let every local user read, through the mount, every image project %q sees, whatever their token; add --allow-other-with-auth if that is meant", o.fsProject)
	}
	// The policy is read before anything opens: a bad file stops the start.
	var pol *policy.Enforcer
	if o.policyFile != "" {
		if pol, err = policy.LoadFile(o.policyFile); err != nil {
			return fmt.Errorf("--policy-file: %w", err)
		}
		log.Info("policy file loaded", "file", o.policyFile, "overridden", pol.Overridden())
	}
	data, err := filepath.Abs(o.data)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("--data: %w", err)
	}

	db, registry, err := openRegistry(ctx, o.registry, data, log)
	if err != nil {
		return err
	}
	defer db.Close()
	store, err := meta.Open(db, meta.WithLogger(log))
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.Join(ctx, o.leaseTTL); err != nil {
		return err
	}
	// Given up after Shutdown (deferred below, so run first) settled this
	// daemon's uploads.
	defer store.Leave(context.Background())
	if o.storeTimeout <= 0 {
		o.storeTimeout = defaultStoreTimeout
	}
	reg := newMetricsRegistry()
	storeMetrics := metered.NewMetrics(reg)
	be, storeDir, err := openStore(ctx, o.store, data, o.storeTimeout, o.dataReserve, storeMetrics)
	if err != nil {
		return err
	}
	defer be.Close()
	if o.mount != "" {
		if err := checkMountOverlap(o.mount, data, storeDir); err != nil {
			return err
		}
		if err := checkMountPoint(o.mount, os.Geteuid()); err != nil {
			return err
		}
	}

	// Images registered by URL (HTTP locations) are read with ranged
	// GETs, through the same address rules as web-download.
	web, err := httpstore.Open(httpstore.Config{Client: httpstore.GuardedClient(o.allowPrivate, 30*time.Second)})
	if err != nil {
		return err
	}
	locations := metered.Wrap(web, "http", storeMetrics)
	defer locations.Close()
	svc := lifecycle.New(lifecycle.Config{Store: store, Backend: be, Locations: locations, MaxImageSize: o.maxImageSize, Quota: o.quota, MemberLimit: o.memberQuota, Logger: log, Metrics: lifecycle.NewMetrics(reg), Policy: pol, AllowFormatMismatch: o.allowFormatMismatch})
	reg.MustRegister(svc.CatalogueCollector())
	if err := svc.Recover(ctx); err != nil {
		return err
	}
	// Whatever happens next, nothing is left saving.
	defer svc.Shutdown(context.Background())
	reapCtx, stopReaper := context.WithCancel(ctx)
	defer stopReaper()
	go svc.RunReaper(reapCtx, reapInterval(o.leaseTTL))

	rest, err := api.New(svc, api.Options{Metadefs: metadefs.New(db, svc.Authorizer()), Logger: log, AuthTokens: o.authTokens, Keystone: o.keystone, WebDownloadAllowPrivate: o.allowPrivate, Metrics: api.NewMetrics(reg), Timeouts: o.timeouts, TaskTimeToLive: o.taskTTL, MaxUploads: o.maxUploads})
	if err != nil {
		return err
	}
	defer rest.Close()
	var httpSrv *http.Server
	httpDone := make(chan error, 1)
	if o.listen != "" {
		ln, err := net.Listen("tcp", o.listen)
		if err != nil {
			return fmt.Errorf("--listen: %w", err)
		}
		httpSrv = api.NewHTTPServer(listenerHandler(rest, reg, o.pprof), o.timeouts)
		if o.tlsCert != "" {
			go func() { httpDone <- httpSrv.ServeTLS(ln, o.tlsCert, o.tlsKey) }()
		} else {
			go func() { httpDone <- httpSrv.Serve(ln) }()
		}
		log.Info("REST listener up", "addr", ln.Addr().String())
	}

	var mnt *fs.Server
	mountGone := make(chan struct{})
	if o.mount != "" {
		mnt, err = fs.Mount(o.mount, svc, fs.Options{
			Principal:  lifecycle.Principal{Project: o.fsProject, Admin: o.fsProject == "admin"},
			UID:        uint32(o.uid),
			GID:        uint32(o.gid),
			AllowOther: o.allowOther,
			StatfsDir:  storeDir, // df: the local store's filesystem
			Logger:     log,
			Debug:      o.debugFUSE,
			Metrics:    fs.NewMetrics(reg),

			RawCacheBytes: o.rawCache,
		})
		if err != nil {
			if httpSrv != nil {
				httpSrv.Close()
			}
			return err
		}
		go func() { mnt.Wait(); close(mountGone) }()
		log.Info("catalogue mounted", "mount", o.mount)
		if !o.noMountWatchdog {
			startMountWatchdog(o.mount, log)
		}
	}

	rest.SetReady(true)
	log.Info("glimpse ready", "data", data, "registry", registry, "version", strings.ReplaceAll(buildVersion(), "\n", ", "))
	if err := sdNotify("READY=1"); err != nil {
		log.Warn("telling systemd we are ready", "err", err)
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case <-mountGone:
		log.Warn("the mount was removed from outside; shutting down")
	case err := <-httpDone:
		runErr = fmt.Errorf("REST listener: %w", err)
	}
	sdNotify("STOPPING=1")
	rest.SetReady(false)
	svc.Shutdown(context.Background())
	if mnt != nil {
		if err := mnt.Unmount(); err != nil {
			log.Error("unmount", "mount", o.mount, "err", err)
		}
	}
	if httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		httpSrv.Shutdown(sctx)
		cancel()
	}
	return runErr
}

// openStore opens the store named by --store; the default is DATA/images
// on local disk. It also returns the store's local directory, if any. A
// store that only streams (S3) is wrapped in a spool under DATA/spool, so
// that the mount can take out-of-order writes; whatever a crash left in the
// spool is removed here.
// timeout bounds a remote store's request that makes no progress.
// reserve is the free space a file store on the registry's filesystem
// leaves to the registry.
func openStore(ctx context.Context, raw, data string, timeout time.Duration, reserve int64, m *metered.Metrics) (backend.Backend, string, error) {
	if raw == "" {
		raw = "file://" + filepath.Join(data, "images")
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, "", fmt.Errorf("--store %q: want file:///path, s3://BUCKET[/PREFIX], swift://CONTAINER[/PREFIX] or rbd://POOL", raw)
	}
	switch scheme {
	case "file":
		if !filepath.IsAbs(rest) {
			return nil, "", fmt.Errorf("--store %q: a file store needs an absolute path (file:///path)", raw)
		}
		if err := os.MkdirAll(rest, 0o700); err != nil {
			return nil, "", fmt.Errorf("--store: %w", err)
		}
		if !sameFilesystem(rest, data) {
			reserve = 0 // the store cannot fill the registry's filesystem
		}
		l, err := local.Open(local.Config{Dir: rest, Reserve: reserve})
		if err != nil {
			return nil, "", err
		}
		return metered.Wrap(l, scheme, m), rest, nil
	case "s3":
		cfg, err := s3.ParseURL(raw, os.Getenv)
		if err != nil {
			return nil, "", fmt.Errorf("--store: %w", err)
		}
		cfg.StallTimeout = timeout
		st, err := s3.Open(ctx, cfg)
		if err != nil {
			return nil, "", fmt.Errorf("--store: %w", err)
		}
		return spooled(metered.Wrap(st, scheme, m), data, reserve)
	case "swift":
		cfg, err := swift.ParseURL(raw, os.Getenv)
		if err != nil {
			return nil, "", fmt.Errorf("--store: %w", err)
		}
		cfg.Timeout = timeout
		st, err := swift.Open(ctx, cfg)
		if err != nil {
			return nil, "", fmt.Errorf("--store: %w", err)
		}
		return spooled(metered.Wrap(st, scheme, m), data, reserve)
	case "rbd":
		cfg, err := rbd.ParseURL(raw, os.Getenv)
		if err != nil {
			return nil, "", fmt.Errorf("--store: %w", err)
		}
		cfg.OpTimeout = timeout
		st, err := rbd.Open(ctx, cfg) // RBD takes random writes itself
		if err != nil {
			return nil, "", fmt.Errorf("--store: %w", err)
		}
		return metered.Wrap(st, scheme, m), "", nil
	}
	return nil, "", fmt.Errorf("--store %q: unknown store scheme %q (file, s3, swift, rbd)", raw, scheme)
}

// spooled wraps a store that only streams in a spool under DATA/spool,
// removing what a crash left there; spool files leave reserve bytes free
// for the registry beside them.
func spooled(st backend.Backend, data string, reserve int64) (backend.Backend, string, error) {
	dir := filepath.Join(data, "spool")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		st.Close()
		return nil, "", fmt.Errorf("spool: %w", err)
	}
	if err := spool.Clean(dir); err != nil {
		st.Close()
		return nil, "", err
	}
	return spool.WrapReserving(st, dir, reserve), "", nil
}

// checkMountOverlap refuses a mount point that holds or lies inside the
// registry or the store: a FUSE server reading its own files through its
// own mount deadlocks (restic GH #5234).
func checkMountOverlap(mount string, dirs ...string) error {
	m, err := filepath.Abs(mount)
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if within(m, d) || within(d, m) {
			return fmt.Errorf("--mount %s overlaps %s, which glimpse itself reads: choose another mount point", m, d)
		}
	}
	return nil
}

func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// listenerHandler serves the REST API, Prometheus metrics at /metrics and,
// with --debug-pprof, Go's profiles under /debug/pprof/. /metrics needs no
// token: it tells counts and timings, never names or ids.
func listenerHandler(rest http.Handler, reg *prometheus.Registry, pprofOn bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if pprofOn {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("/", rest)
	return mux
}

// newMetricsRegistry is the daemon's one Prometheus registry, with the Go
// runtime and process collectors; every part registers its metrics on it.
func newMetricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// newLogger is the daemon's logger on w: --log-level and --log-format
// (text, logfmt-style, or json, one object per line).
func newLogger(w io.Writer, levelName, format string) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(levelName)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
