// Package keystone authenticates REST requests with OpenStack Keystone
// (identity v3), as keystonemiddleware's auth_token does for Glance: each
// X-Auth-Token is validated with GET /v3/auth/tokens under glimpse's own
// service token, and the answer is kept until the token expires or the
// cache time passes, whichever comes first.
package keystone

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"

	"github.com/glimpse-project/glimpse/lifecycle"
)

// Errors the validator returns; the REST listener maps them to statuses.
var (
	// ErrInvalidToken: no token, or one Keystone does not accept (forged,
	// expired, revoked, its user disabled). 401.
	ErrInvalidToken = errors.New("invalid token")
	// ErrNotProjectScoped: a valid token without a project (domain-scoped,
	// system-scoped or unscoped). Every image rule is project-scoped. 403.
	ErrNotProjectScoped = errors.New("token is not scoped to a project")
	// ErrTokenTooLong: longer than any token Keystone issues; refused
	// without asking Keystone. 400.
	ErrTokenTooLong = errors.New("token too long")
	// ErrUnavailable: Keystone could not be asked (down, slow, or it
	// refused glimpse's own credentials). 503.
	ErrUnavailable = errors.New("keystone unavailable")
)

// MaxTokenLen bounds what is sent to Keystone: fernet tokens are under 256
// bytes and JWS tokens around 1 KiB; anything longer is not a token.
const MaxTokenLen = 8192

// DefaultCacheTime is keystonemiddleware's token_cache_time.
const DefaultCacheTime = 300 * time.Second

// DefaultTimeout bounds one request to Keystone.
const DefaultTimeout = 10 * time.Second

// maxAsking bounds the validations in flight at once: a flood of distinct
// forged tokens queues here (and answers 503 after the timeout) instead of
// passing its whole weight on to Keystone.
const maxAsking = 16

// maxCached bounds the cache: a client sending many forged tokens must not
// grow the daemon without end.
const maxCached = 100_000

// Config names Keystone and glimpse's service user.
type Config struct {
	URL      string // the identity v3 endpoint, e.g. http://keystone:5000/v3
	User     string
	Password string
	Project  string
	Domain   string        // of the user and the project; "Default" if empty
	Cache    time.Duration // DefaultCacheTime if zero
	Timeout  time.Duration // DefaultTimeout if zero
	Logger   *slog.Logger
	// Observe, if set, is told of every validation with Keystone: its
	// result (valid, invalid, not_project_scoped, unavailable) and time.
	Observe func(result string, took time.Duration)
}

// Validator checks tokens with Keystone and caches the answers.
type Validator struct {
	cfg      Config
	log      *slog.Logger
	provider *gophercloud.ProviderClient
	identity *gophercloud.ServiceClient

	mu       sync.Mutex
	cache    map[[sha256.Size]byte]entry
	inflight map[[sha256.Size]byte]*call
	renewAt  time.Time     // when the service token should be replaced
	asking   chan struct{} // one slot per validation in flight (maxAsking)
}

// entry is a cached answer: a principal, or ErrInvalidToken /
// ErrNotProjectScoped (Keystone's "no" is cached too, so a client
// repeating a bad token does not make Keystone work for each request).
type entry struct {
	p       lifecycle.Principal
	err     error
	expires time.Time
}

// call is a validation in flight, shared by every request with its token.
type call struct {
	done chan struct{}
	e    entry
}

// New authenticates glimpse's service user with Keystone; wrong credentials
// or an unreachable Keystone are an error, so a misconfigured daemon does
// not start.
func New(ctx context.Context, cfg Config) (*Validator, error) {
	if cfg.URL == "" || cfg.User == "" || cfg.Password == "" || cfg.Project == "" {
		return nil, errors.New("Keystone auth needs the URL, and the service user's name, password and project")
	}
	if cfg.Domain == "" {
		cfg.Domain = "Default"
	}
	if cfg.Cache <= 0 {
		cfg.Cache = DefaultCacheTime
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	v := &Validator{cfg: cfg, log: cfg.Logger, cache: map[[sha256.Size]byte]entry{}, inflight: map[[sha256.Size]byte]*call{}, asking: make(chan struct{}, maxAsking)}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	provider, err := openstack.NewClient(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("Keystone URL %q: %w", cfg.URL, err)
	}
	provider.HTTPClient = http.Client{Timeout: cfg.Timeout}
	opts := gophercloud.AuthOptions{
		IdentityEndpoint: cfg.URL,
		Username:         cfg.User,
		Password:         cfg.Password,
		DomainName:       cfg.Domain,
		// A 401 on glimpse's own token (revoked early) renews it once.
		AllowReauth: true,
		Scope:       &gophercloud.AuthScope{ProjectName: cfg.Project, DomainName: cfg.Domain},
	}
	actx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if err := openstack.AuthenticateV3(actx, provider, &opts, gophercloud.EndpointOpts{}); err != nil {
		return nil, fmt.Errorf("authenticating glimpse's service user %s (project %s) with Keystone %s: %w", cfg.User, cfg.Project, cfg.URL, err)
	}
	identity, err := openstack.NewIdentityV3(provider, gophercloud.EndpointOpts{})
	if err != nil {
		return nil, fmt.Errorf("Keystone %s: %w", cfg.URL, err)
	}
	v.provider, v.identity = provider, identity
	v.scheduleRenewal()
	return v, nil
}

// Authenticate returns who token belongs to.
func (v *Validator) Authenticate(ctx context.Context, token string) (lifecycle.Principal, error) {
	if token == "" {
		return lifecycle.Principal{}, fmt.Errorf("no X-Auth-Token: %w", ErrInvalidToken)
	}
	if len(token) > MaxTokenLen {
		return lifecycle.Principal{}, fmt.Errorf("X-Auth-Token of %d bytes, longer than any Keystone token (at most %d): %w", len(token), MaxTokenLen, ErrTokenTooLong)
	}
	key := sha256.Sum256([]byte(token))
	now := time.Now()
	v.mu.Lock()
	if e, ok := v.cache[key]; ok {
		if now.Before(e.expires) {
			v.mu.Unlock()
			return e.p, e.err
		}
		delete(v.cache, key)
	}
	c, shared := v.inflight[key]
	if !shared {
		c = &call{done: make(chan struct{})}
		v.inflight[key] = c
	}
	v.mu.Unlock()

	if shared {
		select {
		case <-c.done:
			return c.e.p, c.e.err
		case <-ctx.Done():
			return lifecycle.Principal{}, ctx.Err()
		}
	}
	// The validation is not the request's: a client that goes away must
	// not fail the others waiting on the same token.
	started := time.Now()
	c.e = v.validate(context.WithoutCancel(ctx), token)
	if v.cfg.Observe != nil {
		v.cfg.Observe(result(c.e.err), time.Since(started))
	}
	v.mu.Lock()
	delete(v.inflight, key)
	if !c.e.expires.IsZero() {
		v.store(key, c.e, now)
	}
	v.mu.Unlock()
	close(c.done)
	return c.e.p, c.e.err
}

// store caches e under key; v.mu is held.
func (v *Validator) store(key [sha256.Size]byte, e entry, now time.Time) {
	if len(v.cache) >= maxCached {
		for k, old := range v.cache {
			if !now.Before(old.expires) {
				delete(v.cache, k)
			}
		}
		// Still full: forget arbitrary entries; they are asked again.
		for k := range v.cache {
			if len(v.cache) < maxCached {
				break
			}
			delete(v.cache, k)
		}
	}
	v.cache[key] = e
}

// result names a validation's outcome for metrics.
func result(err error) string {
	switch {
	case err == nil:
		return "valid"
	case errors.Is(err, ErrNotProjectScoped):
		return "not_project_scoped"
	case errors.Is(err, ErrInvalidToken):
		return "invalid"
	}
	return "unavailable"
}

// tokenBody is what glimpse reads of Keystone's token validation.
type tokenBody struct {
	Token struct {
		ExpiresAt time.Time `json:"expires_at"`
		User      struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"user"`
		Project *struct {
			ID string `json:"id"`
		} `json:"project"`
		Roles []struct {
			Name string `json:"name"`
		} `json:"roles"`
	} `json:"token"`
}

// validate asks Keystone about token. The entry's expiry is zero when the
// answer must not be cached (Keystone could not be asked).
func (v *Validator) validate(ctx context.Context, token string) entry {
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	select {
	case v.asking <- struct{}{}:
		defer func() { <-v.asking }()
	case <-ctx.Done():
		return entry{err: fmt.Errorf("%d validations with Keystone %s already waiting: %w", maxAsking, v.cfg.URL, ErrUnavailable)}
	}
	if err := v.renew(ctx); err != nil {
		return entry{err: err}
	}
	var body tokenBody
	started := time.Now()
	// nocatalog: the catalogue is most of the answer and glimpse needs
	// none of it.
	_, err := v.identity.Get(ctx, v.identity.ServiceURL("auth", "tokens")+"?nocatalog", &body, &gophercloud.RequestOpts{
		MoreHeaders: map[string]string{"X-Subject-Token": token},
		OkCodes:     []int{http.StatusOK, http.StatusNonAuthoritativeInfo},
	})
	cacheUntil := started.Add(v.cfg.Cache)
	switch {
	case gophercloud.ResponseCodeIs(err, http.StatusNotFound), gophercloud.ResponseCodeIs(err, http.StatusBadRequest):
		// Keystone's answer for a token it did not issue, or one
		// expired, revoked or of a disabled user.
		return entry{err: fmt.Errorf("Keystone does not accept the token: %w", ErrInvalidToken), expires: cacheUntil}
	case err != nil:
		v.log.Error("validating a token with Keystone", "keystone", v.cfg.URL, "err", err)
		return entry{err: fmt.Errorf("validating the token with Keystone %s: %v: %w", v.cfg.URL, err, ErrUnavailable)}
	}
	t := body.Token
	if !t.ExpiresAt.IsZero() && t.ExpiresAt.Before(cacheUntil) {
		cacheUntil = t.ExpiresAt
	}
	if !time.Now().Before(cacheUntil) {
		return entry{err: fmt.Errorf("the token expired at %s: %w", t.ExpiresAt.Format(time.RFC3339), ErrInvalidToken), expires: started.Add(v.cfg.Cache)}
	}
	if t.Project == nil || t.Project.ID == "" {
		return entry{err: fmt.Errorf("user %s: %w", t.User.ID, ErrNotProjectScoped), expires: cacheUntil}
	}
	roles := make([]string, 0, len(t.Roles))
	for _, r := range t.Roles {
		roles = append(roles, r.Name)
	}
	return entry{p: principal(t.Project.ID, t.User.ID, roles), expires: cacheUntil}
}

// principal is Glance's reading of a token's roles: admin is an admin;
// without member (or admin) the caller can only read, as with a reader.
func principal(project, user string, roles []string) lifecycle.Principal {
	admin := slices.Contains(roles, "admin")
	return lifecycle.Principal{
		Project:  project,
		User:     user,
		Roles:    roles,
		Admin:    admin,
		ReadOnly: !admin && !slices.Contains(roles, "member"),
	}
}

// renew replaces glimpse's own token when it is close to expiring, so a
// validation never goes out with a token Keystone is about to refuse
// (gophercloud alone would renew only after a 401).
func (v *Validator) renew(ctx context.Context) error {
	v.mu.Lock()
	due := !time.Now().Before(v.renewAt)
	v.mu.Unlock()
	if !due {
		return nil
	}
	if err := v.provider.Reauthenticate(ctx, v.provider.Token()); err != nil {
		v.log.Error("renewing glimpse's Keystone token", "keystone", v.cfg.URL, "err", err)
		return fmt.Errorf("renewing glimpse's own token with Keystone %s: %v: %w", v.cfg.URL, err, ErrUnavailable)
	}
	v.scheduleRenewal()
	v.log.Info("renewed glimpse's Keystone token", "keystone", v.cfg.URL)
	return nil
}

// scheduleRenewal sets when the current service token is replaced: two
// minutes before it expires (keystoneauth's margin), or half-way through
// its life if that is shorter.
func (v *Validator) scheduleRenewal() {
	now := time.Now()
	expires := now.Add(time.Hour)
	if res, ok := v.provider.GetAuthResult().(tokens.CreateResult); ok {
		if tok, err := res.ExtractToken(); err == nil && !tok.ExpiresAt.IsZero() {
			expires = tok.ExpiresAt
		}
	}
	margin := min(2*time.Minute, expires.Sub(now)/2)
	v.mu.Lock()
	v.renewAt = expires.Add(-margin)
	v.mu.Unlock()
}
