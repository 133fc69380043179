package http_test

import (
	"errors"
	nethttp "net/http"
	"net/http/httptest"
	"strings"
	"testing"

	httpstore "github.com/glimpse-project/glimpse/backend/http"
)

func TestCheckURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"http://example.com/a.img":       true,
		"https://example.com:8443/a.img": true,
		"ftp://example.com/a.img":        false,
		"file:///etc/passwd":             false,
		"http://user:pw@example.com/a":   false,
		"http:///nohost":                 false,
		"example.com/a.img":              false,
	} {
		if _, err := httpstore.CheckURL(raw); (err == nil) != ok {
			t.Errorf("CheckURL(%q): %v", raw, err)
		}
	}
}

// The guarded client refuses internal addresses after resolution, and
// follows a redirect only to a URL CheckURL takes.
func TestGuardedClient(t *testing.T) {
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.URL.Path == "/to-ftp" {
			nethttp.Redirect(w, r, "ftp://example.com/x", nethttp.StatusFound)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()

	_, err := httpstore.GuardedClient(false, 0).Get(srv.URL)
	if !errors.Is(err, httpstore.ErrPrivateAddress) {
		t.Fatalf("loopback through the guarded client: %v", err)
	}
	open := httpstore.GuardedClient(true, 0)
	resp, err := open.Get(srv.URL)
	if err != nil {
		t.Fatalf("loopback with allowPrivate: %v", err)
	}
	resp.Body.Close()
	if _, err := open.Get(srv.URL + "/to-ftp"); err == nil || !strings.Contains(err.Error(), "scheme") {
		t.Fatalf("redirect to ftp://: %v", err)
	}
	for _, addr := range []string{"10.0.0.1:80", "192.168.1.1:80", "169.254.169.254:80", "[::1]:80", "100.64.0.1:80", "0.0.0.0:80"} {
		if _, err := httpstore.GuardedClient(false, 0).Get("http://" + addr + "/"); !errors.Is(err, httpstore.ErrPrivateAddress) {
			t.Errorf("%s: %v", addr, err)
		}
	}
}
