package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"

	"github.com/glimpse-project/glimpse/api/keystone"
	"github.com/glimpse-project/glimpse/lifecycle"
)

// authenticator turns a request's X-Auth-Token into who asks: the token
// file (--auth-tokens) or Keystone (--keystone-url).
type authenticator interface {
	Authenticate(ctx context.Context, token string) (lifecycle.Principal, error)
}

// errUnauthorized is Glance's 401 (webob's HTTPUnauthorized explanation).
var errUnauthorized = errorf(http.StatusUnauthorized, "This server could not verify that you are authorized to access the document you requested.")

// newAuthenticator picks the authenticator the options name; nil: none,
// every request acts as admin.
func newAuthenticator(ctx context.Context, opts Options) (authenticator, error) {
	switch {
	case opts.AuthTokens != "" && opts.Keystone.URL != "":
		return nil, errors.New("--auth-tokens and --keystone-url exclude each other: choose one")
	case opts.AuthTokens != "":
		t, err := loadTokens(opts.AuthTokens)
		if err != nil {
			return nil, fmt.Errorf("--auth-tokens: %w", err)
		}
		return t, nil
	case opts.Keystone.URL != "":
		cfg := opts.Keystone
		if cfg.Logger == nil {
			cfg.Logger = opts.Logger
		}
		if cfg.Observe == nil && opts.Metrics != nil {
			cfg.Observe = opts.Metrics.observeKeystone
		}
		v, err := keystone.New(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("--keystone-url: %w", err)
		}
		return v, nil
	}
	return nil, nil
}

// tokens maps auth tokens to principals (--auth-tokens). It is keyed by
// the tokens' SHA-256, so a lookup's timing depends on a hash of what the
// client sent, never on how much of a real token it guessed, and the
// tokens themselves are not kept in memory.
type tokens struct {
	byToken map[[sha256.Size]byte]lifecycle.Principal
}

func (t *tokens) lookup(tok string) (lifecycle.Principal, bool) {
	if tok == "" {
		return lifecycle.Principal{}, false
	}
	p, ok := t.byToken[sha256.Sum256([]byte(tok))]
	return p, ok
}

// Authenticate looks tok up. glanceclient percent-encodes header values,
// so a token not found as sent is looked up decoded.
func (t *tokens) Authenticate(_ context.Context, tok string) (lifecycle.Principal, error) {
	if p, ok := t.lookup(tok); ok {
		return p, nil
	}
	if dec, err := url.PathUnescape(tok); err == nil {
		if p, ok := t.lookup(dec); ok {
			return p, nil
		}
	}
	return lifecycle.Principal{}, errUnauthorized
}

type tokenFile struct {
	Tokens map[string]struct {
		Project string   `json:"project"`
		Roles   []string `json:"roles"`
	} `json:"tokens"`
}

func loadTokens(path string) (*tokens, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f tokenFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	t := &tokens{byToken: map[[sha256.Size]byte]lifecycle.Principal{}}
	for tok, e := range f.Tokens {
		if tok == "" || e.Project == "" {
			return nil, fmt.Errorf("%s: every token needs a project", path)
		}
		for _, r := range e.Roles {
			if r != "admin" && r != "member" && r != "reader" {
				return nil, fmt.Errorf("%s: token for project %s: unknown role %q (admin, member, reader)", path, e.Project, r)
			}
		}
		admin := slices.Contains(e.Roles, "admin")
		t.byToken[sha256.Sum256([]byte(tok))] = lifecycle.Principal{
			Project:  e.Project,
			Admin:    admin,
			ReadOnly: !admin && !slices.Contains(e.Roles, "member"),
			Roles:    slices.Clone(e.Roles),
		}
	}
	return t, nil
}

// noAuthPrincipal acts for every request without --auth-tokens: an admin of
// the project the mount uses by default.
var noAuthPrincipal = lifecycle.Principal{Project: "admin", Admin: true}

// principal authenticates r.
func (s *Server) principal(r *http.Request) (lifecycle.Principal, error) {
	if s.auth == nil {
		return noAuthPrincipal, nil
	}
	return s.auth.Authenticate(r.Context(), r.Header.Get("X-Auth-Token"))
}
