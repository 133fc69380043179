package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/glimpse-project/glimpse/api/keystone"
	"github.com/glimpse-project/glimpse/convert"
	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/lifecycle/metadefs"
)

// httpError is an error that already knows its status: request-decoding
// failures found in this package.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// statusOf maps an error to Glance's status code. It is the one place where
// lifecycle errors become HTTP statuses.
func statusOf(err error) int {
	var he *httpError
	switch {
	case errors.As(err, &he):
		return he.status
	case errors.Is(err, keystone.ErrInvalidToken):
		return http.StatusUnauthorized
	case errors.Is(err, keystone.ErrNotProjectScoped):
		// Glance's image rules are all scope_types=['project']: oslo.policy
		// refuses other scopes (InvalidScope), which Glance answers 403.
		return http.StatusForbidden
	case errors.Is(err, keystone.ErrTokenTooLong):
		return http.StatusBadRequest
	case errors.Is(err, keystone.ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, lifecycle.ErrNotFound),
		errors.Is(err, lifecycle.ErrNoMember):
		return http.StatusNotFound
	case errors.Is(err, lifecycle.ErrForbidden),
		errors.Is(err, lifecycle.ErrReadOnly),
		errors.Is(err, lifecycle.ErrProtected):
		return http.StatusForbidden
	case errors.Is(err, lifecycle.ErrTooLarge),
		errors.Is(err, lifecycle.ErrRecordTooLarge),
		errors.Is(err, lifecycle.ErrOverQuota),
		errors.Is(err, lifecycle.ErrStoreFull):
		// Glance: image_size_cap, StorageQuotaFull, ProjectOverLimit
		// and StorageFull are all 413.
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, lifecycle.ErrStoreUnavailable), errors.Is(err, lifecycle.ErrRegistryUnavailable):
		// Glance's download answers 503 when the store cannot be reached
		// (RemoteServiceUnavailable); glimpse says the same of an upload
		// the store failed, where Glance's generic path answers 500: the
		// request was fine and may be repeated once the store is back.
		// Content at an HTTP location that does not answer is the same,
		// and so is a registry (etcd) without a quorum.
		return http.StatusServiceUnavailable
	case errors.Is(err, lifecycle.ErrConflict),
		errors.Is(err, metadefs.ErrDuplicate),
		errors.Is(err, lifecycle.ErrMemberExists),
		errors.Is(err, lifecycle.ErrNoProperty),
		errors.Is(err, lifecycle.ErrUploadClosed):
		return http.StatusConflict
	case errors.Is(err, convert.ErrUnsafe), errors.Is(err, convert.ErrCorrupt):
		// Glance ≥ 2024.2 answers 415 when the content fails inspection.
		return http.StatusUnsupportedMediaType
	case errors.Is(err, lifecycle.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, context.Canceled):
		return 499 // the client went away; nobody reads this
	}
	return http.StatusInternalServerError
}

// writeError answers with err's status and a body negotiated on the
// request's Accept header as webob does: HTML for */* or no Accept (what
// glanceclient sends), flat JSON for application/json (SDK, gophercloud),
// plain text otherwise.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	msg := publicMessage(err, status)
	if status == http.StatusUnauthorized && s.wwwAuthenticate != "" {
		w.Header().Set("WWW-Authenticate", s.wwwAuthenticate)
	}
	if status >= 500 && w.Header().Get("Retry-After") == "" {
		// (A 503 with Retry-After is load shed on purpose: logging each
		// as an error would let a flood of uploads flood the log too.)
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		s.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	writeErrorBody(w, r, status, msg)
}

// publicMessage is what the client is told of err: the error itself,
// except for Keystone's answers, which are told as Glance and
// keystonemiddleware tell them (the details, such as the Keystone URL or a
// user id, are for the log).
func publicMessage(err error, status int) string {
	switch {
	case errors.Is(err, keystone.ErrInvalidToken):
		return errUnauthorized.Error()
	case errors.Is(err, keystone.ErrNotProjectScoped):
		return "You are not authorized to complete this action: the token is not scoped to a project."
	case errors.Is(err, keystone.ErrUnavailable):
		return "The Keystone service is temporarily unavailable."
	}
	return err.Error()
}

func writeErrorBody(w http.ResponseWriter, r *http.Request, status int, msg string) {
	text := http.StatusText(status)
	if text == "" {
		text = "Error"
	}
	title := fmt.Sprintf("%d %s", status, text)
	h := w.Header()
	h.Del("Content-Length")
	h.Del("Content-MD5")
	switch acceptKind(r.Header.Get("Accept")) {
	case "json":
		h.Set("Content-Type", "application/json")
		w.WriteHeader(status)
		writeJSONBody(w, map[string]string{"message": msg + "<br /><br />\n\n\n", "code": title, "title": text})
	case "text":
		h.Set("Content-Type", "text/plain; charset=UTF-8")
		w.WriteHeader(status)
		fmt.Fprintf(w, "%s\n\n%s", title, msg)
	default:
		h.Set("Content-Type", "text/html; charset=UTF-8")
		w.WriteHeader(status)
		fmt.Fprintf(w, "<html>\n <head>\n  <title>%s</title>\n </head>\n <body>\n  <h1>%s</h1>\n  %s<br /><br />\n\n\n\n </body>\n</html>",
			title, title, webobEscape(msg))
	}
}

// webobEscape escapes an error message for the HTML body as webob's
// html_escape does (Python's html.escape with quotes, then non-ASCII as
// numeric references), so the body is byte for byte what Glance sends.
func webobEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '&':
			b.WriteString("&amp;")
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case r == '"':
			b.WriteString("&quot;")
		case r == '\'':
			b.WriteString("&#x27;")
		case r > 0x7f:
			fmt.Fprintf(&b, "&#%d;", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// acceptKind picks the error body webob would: html, json or text.
func acceptKind(accept string) string {
	accept = strings.TrimSpace(accept)
	if accept == "" {
		return "html"
	}
	best, bestQ := "", -1.0
	for _, part := range strings.Split(accept, ",") {
		mt, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && k == "q" {
				fmt.Sscanf(v, "%g", &q)
			}
		}
		kind := ""
		switch strings.ToLower(strings.TrimSpace(mt)) {
		case "*/*", "text/*", "text/html":
			kind = "html"
		case "application/json", "application/*":
			kind = "json"
		}
		if kind != "" && q > bestQ {
			best, bestQ = kind, q
		}
	}
	if best == "" {
		return "text"
	}
	return best
}
