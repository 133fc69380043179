package api

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"

	"github.com/glimpse-project/glimpse/lifecycle"
)

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

// principal authenticates r. glanceclient percent-encodes header values, so
// the token is decoded before lookup.
func (s *Server) principal(r *http.Request) (lifecycle.Principal, error) {
	if s.auth == nil {
		return noAuthPrincipal, nil
	}
	tok := r.Header.Get("X-Auth-Token")
	if p, ok := s.auth.lookup(tok); ok {
		return p, nil
	}
	if dec, err := url.PathUnescape(tok); err == nil {
		if p, ok := s.auth.lookup(dec); ok {
			return p, nil
		}
	}
	return lifecycle.Principal{}, errorf(http.StatusUnauthorized, "This server could not verify that you are authorized to access the document you requested.")
}
