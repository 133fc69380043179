package http

import (
	"errors"
	"fmt"
	"net"
	nethttp "net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// ErrPrivateAddress marks a connection refused because it would reach a
// loopback, private, link-local or otherwise internal address.
var ErrPrivateAddress = errors.New("address not allowed")

// CheckURL refuses what glimpse never fetches from a user's URL: schemes
// other than http and https, a missing host, and credentials in the URL.
// Addresses are checked when connecting (GuardedClient).
func CheckURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("invalid URL %q", raw)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("URL scheme %q is not allowed (http, https)", u.Scheme)
	}
	if u.User != nil {
		return nil, errors.New("URL must not carry credentials")
	}
	return u, nil
}

// GuardedClient returns a client for URLs that users give (web-download,
// locations): unless allowPrivate, it refuses to connect to loopback,
// private, link-local and other internal addresses, checked after DNS
// resolution on the address actually dialled, for the first request and
// every redirect; redirects must pass CheckURL; proxy variables are
// ignored, since a proxy would hide the real target from the check.
// timeout bounds each request, body included (0: none).
func GuardedClient(allowPrivate bool, timeout time.Duration) *nethttp.Client {
	dialer := &net.Dialer{Timeout: 30 * time.Second}
	if !allowPrivate {
		dialer.Control = refusePrivate
	}
	tr := &nethttp.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		MaxIdleConnsPerHost:   8,
	}
	return &nethttp.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(req *nethttp.Request, via []*nethttp.Request) error {
			if len(via) >= 10 {
				return errors.New("too many redirects")
			}
			_, err := CheckURL(req.URL.String())
			return err
		},
	}
}

// refusePrivate is a net.Dialer Control: it runs after DNS resolution.
func refusePrivate(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrPrivateAddress, address)
	}
	a := ap.Addr().Unmap()
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsUnspecified() || a.IsMulticast() || a.IsInterfaceLocalMulticast() || cgnat.Contains(a) {
		return fmt.Errorf("%w: %s", ErrPrivateAddress, a)
	}
	return nil
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")
