package keystone_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/api/keystone"
	"github.com/glimpse-project/glimpse/api/keystone/keystonetest"
)

// Every token of this binary's Keystone lives this long: short enough
// that a test sees tokens expire and the service token renewed, long
// enough for any one test step.
const lifetime = 40 * time.Second

var ks = keystonetest.NewServer("../../scripts/keystone", lifetime)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := ks.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// validator is a Validator for glimpse's service user at url (Keystone or
// a proxy in front of it). A zero timeout is a minute, not the daemon's
// default: Keystone's password hashing on a loaded two-core machine can
// take longer than 10 s, and only the timeout test is about timing.
func validator(t *testing.T, url string, cache, timeout time.Duration) *keystone.Validator {
	t.Helper()
	if timeout == 0 {
		timeout = time.Minute
	}
	v, err := keystone.New(context.Background(), keystone.Config{
		URL: url, User: keystonetest.ServiceUser, Password: keystonetest.ServicePassword,
		Project: keystonetest.ServiceProject, Cache: cache, Timeout: timeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestRoles(t *testing.T) {
	url := ks.Need(t)
	t.Parallel()
	kc := ks.Client(t)
	v := validator(t, url, 0, 0)
	for _, c := range []struct {
		role            string
		admin, readOnly bool
	}{
		{"admin", true, false},
		{"member", false, false},
		{"reader", false, true},
	} {
		id := kc.NewIdentity("roles-"+c.role, c.role)
		p, err := v.Authenticate(context.Background(), kc.TokenOf(id))
		if err != nil {
			t.Fatalf("%s: %v", c.role, err)
		}
		if p.Project != id.ProjectID || p.User != id.UserID || p.Admin != c.admin || p.ReadOnly != c.readOnly || !slices.Contains(p.Roles, c.role) {
			t.Errorf("%s token: %+v, want project %s user %s admin %v read-only %v", c.role, p, id.ProjectID, id.UserID, c.admin, c.readOnly)
		}
	}
}

func TestBadTokens(t *testing.T) {
	url := ks.Need(t)
	t.Parallel()
	kc := ks.Client(t)
	proxy := keystonetest.NewProxy(t, url)
	v := validator(t, proxy.URL(), 0, 0)
	ctx := context.Background()

	member := kc.NewIdentity("bad-member", "member")
	good := kc.TokenOf(member)
	if _, err := v.Authenticate(ctx, good); err != nil {
		t.Fatalf("a member's token: %v", err)
	}
	forged := []byte(good)
	forged[len(forged)/2] ^= 1
	revoked := kc.TokenOf(member)
	kc.Revoke(revoked)
	disabled := kc.NewIdentity("bad-disabled", "member")
	disabledTok := kc.TokenOf(disabled)
	kc.DisableUser(disabled)
	domainUser := kc.NewIdentity("bad-domain", "member")
	kc.GrantDomainRole(domainUser, "member")
	domainTok := kc.DomainToken(domainUser.User, domainUser.Password)

	for _, c := range []struct {
		name, token string
		want        error
		asks        int // validations with Keystone
	}{
		{"no token", "", keystone.ErrInvalidToken, 0},
		{"forged", string(forged), keystone.ErrInvalidToken, 1},
		{"random", "gAAAAABnot-a-token-at-all", keystone.ErrInvalidToken, 1},
		{"revoked", revoked, keystone.ErrInvalidToken, 1},
		{"disabled user's", disabledTok, keystone.ErrInvalidToken, 1},
		{"domain-scoped", domainTok, keystone.ErrNotProjectScoped, 1},
		{"64 KiB", strings.Repeat("a", 64<<10), keystone.ErrTokenTooLong, 0},
	} {
		before := proxy.Validations()
		// Twice: the second answer comes from the cache.
		for range 2 {
			if _, err := v.Authenticate(ctx, c.token); !errors.Is(err, c.want) {
				t.Errorf("%s token: %v, want %v", c.name, err, c.want)
			}
		}
		calls := proxy.Validations() - before
		if calls != c.asks {
			t.Errorf("%s token: %d validations with Keystone, want %d", c.name, calls, c.asks)
		}
	}
}

// TestCache: a token is validated once for many requests, concurrent ones
// included, until the cache time passes; then it is asked again, and a
// token revoked meanwhile is refused from then on.
func TestCache(t *testing.T) {
	url := ks.Need(t)
	t.Parallel()
	kc := ks.Client(t)
	proxy := keystonetest.NewProxy(t, url)
	const cacheTime = 2 * time.Second
	v := validator(t, proxy.URL(), cacheTime, 0)
	ctx := context.Background()
	tok := kc.TokenOf(kc.NewIdentity("cache", "member"))

	asked := time.Now() // no later than the validation began
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for range 200 {
		wg.Go(func() {
			if _, err := v.Authenticate(ctx, tok); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := proxy.Validations(); n != 1 {
		t.Fatalf("200 requests with one token made %d validations, want 1", n)
	}
	kc.Revoke(tok)
	// Until the cache time passes the revoked token still works (as with
	// keystonemiddleware); then Keystone is asked and refuses it.
	for {
		_, err := v.Authenticate(ctx, tok)
		if err != nil {
			if !errors.Is(err, keystone.ErrInvalidToken) {
				t.Fatal(err)
			}
			break
		}
		if time.Since(asked) > cacheTime+10*time.Second {
			t.Fatal("a revoked token still accepted long after the cache time")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if took := time.Since(asked); took < cacheTime {
		t.Errorf("revalidated after %v, before the cache time %v", took, cacheTime)
	}
	if n := proxy.Validations(); n != 2 {
		t.Errorf("%d validations, want 2 (one per cache time)", n)
	}
}

// TestKeystoneAway: with Keystone unreachable or slower than the timeout,
// a token not in the cache is ErrUnavailable (and not cached: it works
// once Keystone is back); a cached token keeps working.
func TestKeystoneAway(t *testing.T) {
	url := ks.Need(t)
	t.Parallel()
	kc := ks.Client(t)
	proxy := keystonetest.NewProxy(t, url)
	// The validator's one timeout also bounds its own sign-in and every
	// validation while Keystone is up: a loaded run took over 2 s to issue
	// the service user's token (one Python process hashing a password).
	const timeout = 5 * time.Second
	v := validator(t, proxy.URL(), 0, timeout)
	ctx := context.Background()
	id := kc.NewIdentity("away", "member")
	cached, fresh := kc.TokenOf(id), kc.TokenOf(id)
	if _, err := v.Authenticate(ctx, cached); err != nil {
		t.Fatal(err)
	}

	proxy.Down()
	if _, err := v.Authenticate(ctx, fresh); !errors.Is(err, keystone.ErrUnavailable) {
		t.Errorf("Keystone down, a new token: %v, want ErrUnavailable", err)
	}
	if p, err := v.Authenticate(ctx, cached); err != nil || p.Project != id.ProjectID {
		t.Errorf("Keystone down, a cached token: %+v %v", p, err)
	}
	proxy.Up(t)
	if _, err := v.Authenticate(ctx, fresh); err != nil {
		t.Errorf("Keystone back, the token refused while it was down: %v", err)
	}

	slow := kc.TokenOf(id)
	proxy.SetDelay(2 * timeout)
	t0 := time.Now()
	if _, err := v.Authenticate(ctx, slow); !errors.Is(err, keystone.ErrUnavailable) {
		t.Errorf("Keystone slow, a new token: %v, want ErrUnavailable", err)
	}
	if took := time.Since(t0); took > timeout+time.Second {
		t.Errorf("Keystone slow: answered after %v, timeout %v", took, timeout)
	}
	if _, err := v.Authenticate(ctx, cached); err != nil {
		t.Errorf("Keystone slow, a cached token: %v", err)
	}
}

// TestLifetimes: a cached token stops working when it expires, before the
// cache time; glimpse's own token is renewed before it expires, so no
// validation is ever refused for it.
func TestLifetimes(t *testing.T) {
	url := ks.Need(t)
	t.Parallel()
	kc := ks.Client(t)
	proxy := keystonetest.NewProxy(t, url)
	// A cache time shorter than the tests' token lifetime would hide
	// expiry; the validator's one is the default, 300 s.
	v := validator(t, proxy.URL(), 0, 0)
	ctx := context.Background()
	id := kc.NewIdentity("lifetime", "member")
	expiring := kc.TokenOf(id)
	issued := time.Now()
	if _, err := v.Authenticate(ctx, expiring); err != nil {
		t.Fatal(err)
	}
	// Fresh tokens validated all through the service token's life keep
	// glimpse's token in use past its expiry.
	var expired time.Duration
	for time.Since(issued) < lifetime+lifetime/2 {
		if expired == 0 {
			if _, err := v.Authenticate(ctx, expiring); errors.Is(err, keystone.ErrInvalidToken) {
				expired = time.Since(issued)
			} else if err != nil {
				t.Fatal(err)
			}
		}
		if _, err := v.Authenticate(ctx, kc.TokenOf(id)); err != nil {
			t.Fatalf("a fresh token after %v: %v", time.Since(issued).Round(time.Second), err)
		}
		time.Sleep(time.Second)
	}
	if expired == 0 || expired > lifetime+5*time.Second {
		t.Errorf("a token of %v lifetime still accepted %v after it was issued", lifetime, expired)
	}
	if expired < lifetime-5*time.Second {
		t.Errorf("a token of %v lifetime refused after %v", lifetime, expired)
	}
	if n := proxy.Count("POST /v3/auth/tokens"); n < 2 {
		t.Errorf("glimpse authenticated %d times in %v, want its token renewed", n, lifetime+lifetime/2)
	}
	if n := proxy.Count("GET /v3/auth/tokens 401"); n != 0 {
		t.Errorf("Keystone refused glimpse's own token %d times: not renewed in time", n)
	}
}

func TestWrongServicePassword(t *testing.T) {
	url := ks.Need(t)
	t.Parallel()
	_, err := keystone.New(context.Background(), keystone.Config{URL: url, User: keystonetest.ServiceUser, Password: "wrong", Project: keystonetest.ServiceProject})
	if err == nil || !strings.Contains(err.Error(), keystonetest.ServiceUser) {
		t.Fatalf("wrong service password: %v", err)
	}
}

// TestFlood: many distinct bad tokens at once reach Keystone a bounded
// number at a time, and each is still answered.
func TestFlood(t *testing.T) {
	url := ks.Need(t)
	t.Parallel()
	proxy := keystonetest.NewProxy(t, url)
	v := validator(t, proxy.URL(), 0, 0)
	proxy.SetDelay(200 * time.Millisecond) // so that they overlap
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Go(func() {
			if _, err := v.Authenticate(context.Background(), fmt.Sprintf("forged-%d", i)); !errors.Is(err, keystone.ErrInvalidToken) {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a forged token in a flood: %v", err)
	}
	if n := proxy.MaxInflight(); n > 16 {
		t.Errorf("%d validations at once reached Keystone", n)
	}
	if n := proxy.Validations(); n != 100 {
		t.Errorf("%d validations for 100 distinct tokens", n)
	}
}
