package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	httpstore "github.com/glimpse-project/glimpse/backend/http"
	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
)

// stageData is PUT /v2/images/{id}/stage (glance-direct, first half).
func (s *Server) stageData(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	if err := requireOctetStream(r); err != nil {
		return err
	}
	id := r.PathValue("id")
	buf, err := s.uploads.take(w, r)
	if err != nil {
		return err
	}
	defer s.uploads.put(buf) // a slot, not a buffer: Stage copies with its own
	if _, err := s.svc.Stage(r.Context(), p, id, r.Body); err != nil {
		return notFound(id, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type importRequest struct {
	Method *struct {
		Name string `json:"name"`
		URI  string `json:"uri"`
	} `json:"method"`
	AllStoresMustSucceed *bool `json:"all_stores_must_succeed"`
}

// importImage is POST /v2/images/{id}/import. glance-direct runs before the
// 202 (the staged data is local); web-download runs in the background and
// clients poll the image's status, as with Glance.
func (s *Server) importImage(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	var req importRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.Method == nil || req.Method.Name == "" {
		return errorf(http.StatusBadRequest, "Import request requires a 'method' field with a 'name'.")
	}
	if req.AllStoresMustSucceed != nil && !*req.AllStoresMustSucceed {
		return errorf(http.StatusBadRequest, "This cloud does not support multiple stores: all_stores_must_succeed must be true.")
	}
	id := r.PathValue("id")
	switch req.Method.Name {
	case "glance-direct":
		if err := s.svc.CheckImport(r.Context(), p, id, meta.Uploading); err != nil {
			return notFound(id, err)
		}
		if _, err := s.svc.ImportStaged(context.WithoutCancel(r.Context()), p, id); err != nil {
			// The image is settled (killed with the reason); the import
			// request itself was acceptable, as Glance's async task is.
			s.log.Warn("glance-direct import failed", "image", id, "err", err)
		}
	case "web-download":
		u, err := s.checkURL(req.Method.URI)
		if err != nil {
			return err
		}
		buf, err := s.uploads.take(w, r)
		if err != nil {
			return err
		}
		up, err := s.svc.BeginImport(r.Context(), p, id)
		if err != nil {
			s.uploads.put(buf)
			return notFound(id, err)
		}
		go s.webDownload(up, u, buf)
	default:
		return errorf(http.StatusBadRequest, "Unknown import method name '%s'.", req.Method.Name)
	}
	w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// checkURL refuses what web-download may never fetch: schemes other than
// http and https. Addresses are checked when connecting (httpstore.GuardedClient).
func (s *Server) checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, errorf(http.StatusBadRequest, "URI for web-download does not pass filtering: %s", raw)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errorf(http.StatusBadRequest, "URI for web-download does not pass filtering: %s (the scheme %s is not allowed: http or https)", raw, u.Scheme)
	}
	if u.User != nil {
		return nil, errorf(http.StatusBadRequest, "URI for web-download must not carry credentials.")
	}
	return u, nil
}

func (s *Server) httpClient() *http.Client {
	return httpstore.GuardedClient(s.opts.WebDownloadAllowPrivate, 0)
}

// webDownload fetches u into the image being imported and settles it.
// buf is the copy buffer of its upload slot, given back at the end.
func (s *Server) webDownload(up *lifecycle.Upload, u *url.URL, buf []byte) {
	defer s.uploads.put(buf)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.fetchInto(ctx, up, u, buf); err != nil {
		s.log.Warn("web-download import failed", "image", up.ID(), "err", err)
		return
	}
	s.log.Info("web-download import done", "image", up.ID(), "uri", u.Redacted())
}

// fetchForTask is fetchInto for an import task, once an upload slot is
// free: tasks count against --max-uploads as web-download imports do.
func (s *Server) fetchForTask(ctx context.Context, up *lifecycle.Upload, u *url.URL) error {
	buf, err := s.uploads.wait(ctx)
	if err != nil {
		reason := fmt.Sprintf("web-download of %s failed: %v", u.Redacted(), err)
		up.Abort(context.Background(), reason)
		return errors.New(reason)
	}
	defer s.uploads.put(buf)
	return s.fetchInto(ctx, up, u, buf)
}

// fetchInto copies the content at u into up and commits it, through buf:
// the web-download import, also run by import tasks. Whatever fails, up
// is settled (killed with the reason) and the error says why.
func (s *Server) fetchInto(ctx context.Context, up *lifecycle.Upload, u *url.URL, buf []byte) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.closed:
			cancel()
		case <-up.Done():
		case <-ctx.Done():
		}
	}()
	fail := func(err error) error {
		reason := fmt.Sprintf("web-download of %s failed: %v", u.Redacted(), err)
		up.Abort(context.Background(), reason)
		return errors.New(reason)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fail(err)
	}
	resp, err := s.httpClient().Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(fmt.Errorf("server answered %s", resp.Status))
	}
	if err := copyFull(up, resp.Body, buf); err != nil {
		return fail(err)
	}
	if _, err := up.Commit(context.Background()); err != nil {
		return fmt.Errorf("image %s refused: %w", up.ID(), err)
	}
	return nil
}
