// Package keystonetest gives tests a real Keystone (scripts/keystone on
// loopback, once per test binary), the identities they need, and a
// counting reverse proxy in front of it that can be taken down.
package keystonetest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/backend/backendtest"
)

// The identities scripts/keystone creates.
const (
	AdminUser       = "admin"
	AdminPassword   = "secret"
	ServiceUser     = "glimpse-service"
	ServicePassword = "glimpse-service-secret"
	ServiceProject  = "service"
)

// Server is the Keystone one test binary shares. TokenLifetime is the
// lifetime of every token it issues.
type Server struct {
	TokenLifetime time.Duration
	script        *backendtest.ScriptServer
}

// NewServer describes a Keystone started by scripts/keystone (relative to
// the test's directory) whose tokens live for lifetime. Call Stop from
// TestMain after m.Run.
func NewServer(script string, lifetime time.Duration) *Server {
	return &Server{TokenLifetime: lifetime, script: &backendtest.ScriptServer{
		Store:  "keystone",
		Script: script,
		Bins:   []string{"keystone-manage", "keystone-wsgi-public", "curl"},
		Hint:   "apt-get install -y --no-install-recommends python3-keystone curl",
		Ports:  1,
		Env: func(dir string, ports []int) []string {
			return []string{
				"KEYSTONE_DIR=" + dir + "/keystone",
				"KEYSTONE_PORT=" + strconv.Itoa(ports[0]),
				"KEYSTONE_TOKEN_EXPIRATION=" + strconv.Itoa(int(lifetime.Seconds())),
			}
		},
	}}
}

// Need starts Keystone the first time (or skips the test, or fails it
// when GLIMPSE_TEST_STORES names keystone) and returns its v3 URL.
func (s *Server) Need(t testing.TB) string {
	t.Helper()
	s.script.Need(t)
	return s.URL()
}

// URL is the identity v3 endpoint.
func (s *Server) URL() string { return fmt.Sprintf("http://127.0.0.1:%d/v3", s.script.Port(0)) }

// Stop stops the Keystone this binary started.
func (s *Server) Stop() error { return s.script.Stop() }

// Client makes Keystone calls for a test, failing it on an error.
type Client struct {
	t   testing.TB
	url string
}

// Client returns a client of s (started already by Need).
func (s *Server) Client(t testing.TB) *Client { return &Client{t: t, url: s.URL()} }

// do sends a JSON request and decodes the answer into out (if not nil),
// failing the test unless the status is want.
func (c *Client) do(method, path, token string, body any, want int, out any) http.Header {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.url+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		c.t.Fatalf("keystone %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("keystone %s %s: %d, want %d: %s", method, path, resp.StatusCode, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("keystone %s %s: %v: %s", method, path, err, raw)
		}
	}
	return resp.Header
}

func passwordAuth(user, password string, scope any) map[string]any {
	auth := map[string]any{"identity": map[string]any{
		"methods":  []string{"password"},
		"password": map[string]any{"user": map[string]any{"name": user, "domain": map[string]string{"id": "default"}, "password": password}},
	}}
	if scope != nil {
		auth["scope"] = scope
	}
	return map[string]any{"auth": auth}
}

// Token issues a token of user scoped to project (by name, Default domain).
func (c *Client) Token(user, password, project string) string {
	c.t.Helper()
	scope := map[string]any{"project": map[string]any{"name": project, "domain": map[string]string{"id": "default"}}}
	return c.do("POST", "/auth/tokens", "", passwordAuth(user, password, scope), http.StatusCreated, nil).Get("X-Subject-Token")
}

// DomainToken issues a token of user scoped to the Default domain.
func (c *Client) DomainToken(user, password string) string {
	c.t.Helper()
	scope := map[string]any{"domain": map[string]string{"id": "default"}}
	return c.do("POST", "/auth/tokens", "", passwordAuth(user, password, scope), http.StatusCreated, nil).Get("X-Subject-Token")
}

// Admin is a token of the bootstrap admin.
func (c *Client) Admin() string {
	c.t.Helper()
	return c.Token(AdminUser, AdminPassword, "admin")
}

// Revoke revokes token (DELETE /v3/auth/tokens).
func (c *Client) Revoke(token string) {
	c.t.Helper()
	req, _ := http.NewRequest("DELETE", c.url+"/auth/tokens", nil)
	req.Header.Set("X-Auth-Token", c.Admin())
	req.Header.Set("X-Subject-Token", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		c.t.Fatalf("revoking a token: %d", resp.StatusCode)
	}
}

// Identity is a user made for one test: its name, password, id, and its
// project's name and id.
type Identity struct {
	User, Password, UserID string
	Project, ProjectID     string
}

// NewIdentity creates a project and a user holding roles on it, named
// after prefix and a random suffix, so that tests sharing the Keystone
// never meet.
func (c *Client) NewIdentity(prefix string, roles ...string) Identity {
	c.t.Helper()
	admin := c.Admin()
	suffix := make([]byte, 4)
	rand.Read(suffix)
	name := prefix + "-" + hex.EncodeToString(suffix)
	id := Identity{User: name, Password: name + "-pw", Project: name}
	var p struct{ Project struct{ ID string } }
	c.do("POST", "/projects", admin, map[string]any{"project": map[string]any{"name": name, "domain_id": "default"}}, http.StatusCreated, &p)
	id.ProjectID = p.Project.ID
	var u struct{ User struct{ ID string } }
	c.do("POST", "/users", admin, map[string]any{"user": map[string]any{"name": name, "password": id.Password, "domain_id": "default"}}, http.StatusCreated, &u)
	id.UserID = u.User.ID
	for _, r := range roles {
		c.do("PUT", "/projects/"+id.ProjectID+"/users/"+id.UserID+"/roles/"+c.roleID(admin, r), admin, nil, http.StatusNoContent, nil)
	}
	return id
}

// NewUserIn creates a user holding roles on project's project (a second
// user of one project, such as the owner's reader), named after prefix and
// a random suffix.
func (c *Client) NewUserIn(project Identity, prefix string, roles ...string) Identity {
	c.t.Helper()
	admin := c.Admin()
	suffix := make([]byte, 4)
	rand.Read(suffix)
	name := prefix + "-" + hex.EncodeToString(suffix)
	id := Identity{User: name, Password: name + "-pw", Project: project.Project, ProjectID: project.ProjectID}
	var u struct{ User struct{ ID string } }
	c.do("POST", "/users", admin, map[string]any{"user": map[string]any{"name": name, "password": id.Password, "domain_id": "default"}}, http.StatusCreated, &u)
	id.UserID = u.User.ID
	for _, r := range roles {
		c.do("PUT", "/projects/"+id.ProjectID+"/users/"+id.UserID+"/roles/"+c.roleID(admin, r), admin, nil, http.StatusNoContent, nil)
	}
	return id
}

// GrantDomainRole gives the identity's user role on the Default domain,
// so that it can get a domain-scoped token.
func (c *Client) GrantDomainRole(id Identity, role string) {
	c.t.Helper()
	admin := c.Admin()
	c.do("PUT", "/domains/default/users/"+id.UserID+"/roles/"+c.roleID(admin, role), admin, nil, http.StatusNoContent, nil)
}

// DisableUser disables the identity's user; Keystone revokes its tokens.
func (c *Client) DisableUser(id Identity) {
	c.t.Helper()
	c.do("PATCH", "/users/"+id.UserID, c.Admin(), map[string]any{"user": map[string]any{"enabled": false}}, http.StatusOK, nil)
}

// Token of the identity, scoped to its project.
func (c *Client) TokenOf(id Identity) string {
	c.t.Helper()
	return c.Token(id.User, id.Password, id.Project)
}

func (c *Client) roleID(admin, name string) string {
	c.t.Helper()
	var out struct{ Roles []struct{ ID string } }
	c.do("GET", "/roles?name="+url.QueryEscape(name), admin, nil, http.StatusOK, &out)
	if len(out.Roles) != 1 {
		c.t.Fatalf("keystone has %d roles named %s", len(out.Roles), name)
	}
	return out.Roles[0].ID
}

// Proxy is a reverse proxy in front of Keystone that counts the requests
// through it and can stop listening (Keystone unreachable) and start again
// on the same port, or answer late (Keystone slow).
type Proxy struct {
	addr   string
	target *url.URL

	mu     sync.Mutex
	counts map[string]int // "METHOD /path" and "METHOD /path STATUS" -> requests
	delay  time.Duration
	srv    *http.Server
	// in flight now, and the most at once
	inflight, maxInflight int
}

// NewProxy starts a proxy to the Keystone at keystoneURL (its v3 URL),
// stopped when the test ends.
func NewProxy(t testing.TB, keystoneURL string) *Proxy {
	t.Helper()
	u, err := url.Parse(keystoneURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = ""
	p := &Proxy{target: u, counts: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.Down)
	return p
}

func (p *Proxy) serve(ln net.Listener) {
	rp := httputil.NewSingleHostReverseProxy(p.target)
	rp.ModifyResponse = func(resp *http.Response) error {
		p.mu.Lock()
		p.counts[resp.Request.Method+" "+resp.Request.URL.Path+" "+strconv.Itoa(resp.StatusCode)]++
		p.mu.Unlock()
		return nil
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.counts[r.Method+" "+r.URL.Path]++
		delay := p.delay
		p.inflight++
		p.maxInflight = max(p.maxInflight, p.inflight)
		p.mu.Unlock()
		defer func() {
			p.mu.Lock()
			p.inflight--
			p.mu.Unlock()
		}()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		rp.ServeHTTP(w, r)
	})}
	p.mu.Lock()
	p.srv = srv
	p.mu.Unlock()
	go srv.Serve(ln)
}

// URL is the proxy's identity v3 endpoint.
func (p *Proxy) URL() string { return "http://" + p.addr + "/v3" }

// Count is how many requests "METHOD /path" went through, or how many
// got status STATUS from Keystone ("METHOD /path STATUS").
func (p *Proxy) Count(methodPath string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[methodPath]
}

// Validations is how many token validations (GET /v3/auth/tokens) went
// through.
func (p *Proxy) Validations() int { return p.Count("GET /v3/auth/tokens") }

// MaxInflight is the most requests the proxy had in flight at once.
func (p *Proxy) MaxInflight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.maxInflight
}

// SetDelay makes every request wait d before it goes on to Keystone.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// Down stops listening: connections are refused.
func (p *Proxy) Down() {
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Up listens again on the same port.
func (p *Proxy) Up(t testing.TB) {
	t.Helper()
	var ln net.Listener
	var err error
	for range 100 {
		// The closed listener's port can linger a moment.
		if ln, err = net.Listen("tcp", p.addr); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("proxy up again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}
