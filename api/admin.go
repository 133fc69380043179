package api

import (
	"net/http"
	"strconv"

	"github.com/glimpse-project/glimpse/lifecycle"
)

// glimpse's own administrative endpoints, outside Glance's API (under
// /v2/glimpse/, a path Glance never uses), for admins only:
//
//	POST /v2/glimpse/scrub[?mark=true]    re-hash stored content, report
//	                                      (and with mark, deactivate) damage
//	POST /v2/glimpse/gc[?dry_run=true]    remove stored objects no image owns
//	                                      and stale incomplete writes
//
// Both answer 200 with the lifecycle's report as JSON and are safe while
// the daemon serves.

func (s *Server) adminRoutes() {
	s.mux.Handle("POST /v2/glimpse/scrub", s.api(noBody(s.scrub)))
	s.mux.Handle("POST /v2/glimpse/gc", s.api(noBody(s.gc)))
}

func (s *Server) scrub(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	mark, err := queryBool(r, "mark")
	if err != nil {
		return err
	}
	rep, err := s.svc.Scrub(r.Context(), p, mark)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

func (s *Server) gc(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	dry, err := queryBool(r, "dry_run")
	if err != nil {
		return err
	}
	rep, err := s.svc.GC(r.Context(), p, dry)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

// queryBool reads an optional boolean query parameter (absent: false).
func queryBool(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errorf(http.StatusBadRequest, "Invalid value for %s: %s (true or false).", name, v)
	}
	return b, nil
}
