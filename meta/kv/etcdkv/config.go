package etcdkv

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// DefaultPrefix is where the catalogue's keys live when the registry URL
// names no prefix.
const DefaultPrefix = "/glimpse/"

// Config says how to reach the cluster.
type Config struct {
	Endpoints []string // host:port of each member
	// Prefix is prepended to every key, so that several catalogues (or
	// other users) can share one cluster.
	Prefix             string
	Username, Password string      // an etcd user, when the cluster has auth enabled
	TLS                *tls.Config // nil: plain HTTP
	DialTimeout        time.Duration
	// RequestTimeout bounds each View and Update (default 5 s).
	RequestTimeout time.Duration
}

// ParseURL reads a registry URL:
//
//	etcd://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...][/PREFIX][?cacert=F&cert=F&key=F]
//	etcds://...   the same over TLS
//
// cacert is the CA bundle that signed the members' certificates (default:
// the system's), cert and key a client certificate for clusters that ask
// for one; any of them makes the connection TLS. PREFIX defaults to
// DefaultPrefix; it always ends in "/".
func ParseURL(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, fmt.Errorf("registry URL %q: %w", raw, err)
	}
	if u.Scheme != "etcd" && u.Scheme != "etcds" {
		return Config{}, fmt.Errorf("registry URL %q: the scheme must be etcd:// or etcds://", raw)
	}
	var cfg Config
	for _, h := range strings.Split(u.Host, ",") {
		if h == "" {
			continue
		}
		if !strings.Contains(h, ":") {
			h += ":2379"
		}
		cfg.Endpoints = append(cfg.Endpoints, h)
	}
	if len(cfg.Endpoints) == 0 {
		return Config{}, fmt.Errorf("registry URL %q names no etcd member (etcd://HOST:PORT[,HOST:PORT...])", raw)
	}
	if u.User != nil {
		cfg.Username = u.User.Username()
		cfg.Password, _ = u.User.Password()
	}
	cfg.Prefix = strings.Trim(u.Path, "/")
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	} else {
		cfg.Prefix = "/" + cfg.Prefix + "/"
	}
	q := u.Query()
	for k := range q {
		switch k {
		case "cacert", "cert", "key":
		default:
			return Config{}, fmt.Errorf("registry URL %q: unknown parameter %q (cacert, cert, key)", raw, k)
		}
	}
	ca, cert, key := q.Get("cacert"), q.Get("cert"), q.Get("key")
	if (cert == "") != (key == "") {
		return Config{}, fmt.Errorf("registry URL %q: cert and key go together", raw)
	}
	if u.Scheme == "etcds" || ca != "" || cert != "" {
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		if ca != "" {
			pem, err := os.ReadFile(ca)
			if err != nil {
				return Config{}, fmt.Errorf("registry CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return Config{}, fmt.Errorf("registry CA %s: no PEM certificate in it", ca)
			}
			cfg.TLS.RootCAs = pool
		}
		if cert != "" {
			pair, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				return Config{}, fmt.Errorf("registry client certificate: %w", err)
			}
			cfg.TLS.Certificates = []tls.Certificate{pair}
		}
	}
	return cfg, nil
}

// Redacted is the URL's text without its password, for logs.
func Redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "etcd://?"
	}
	return u.Redacted()
}
