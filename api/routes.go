package api

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/glimpse-project/glimpse/lifecycle"
)

// handler is an authenticated API handler; a returned error is written by
// writeError.
type handler func(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /healthcheck", s.healthcheck)
	m.HandleFunc("GET /versions", s.versions(http.StatusOK))
	m.HandleFunc("/", s.fallback)
	// Leniency beyond Glance (which answers 302 then 404 here):
	// keystoneauth's discovery on a versioned endpoint finds the document.
	m.HandleFunc("GET /v2", s.versions(http.StatusOK))
	m.HandleFunc("GET /v2/{$}", s.versions(http.StatusOK))

	m.Handle("GET /v2/schemas/image", s.api(s.schemaImage))
	m.Handle("GET /v2/schemas/images", s.api(s.schemaImages))
	m.Handle("GET /v2/schemas/member", s.api(s.schemaMember))
	m.Handle("GET /v2/schemas/members", s.api(s.schemaMembers))

	m.Handle("GET /v2/images", s.api(s.listImages))
	m.Handle("POST /v2/images", s.api(s.createImage))
	m.Handle("GET /v2/images/{id}", s.api(noBody(s.showImage)))
	m.Handle("PATCH /v2/images/{id}", s.api(s.patchImage))
	m.Handle("DELETE /v2/images/{id}", s.api(noBody(s.deleteImage)))
	m.Handle("PUT /v2/images/{id}/file", s.api(s.uploadData))
	m.Handle("GET /v2/images/{id}/file", s.api(noBody(s.downloadData)))
	m.Handle("PUT /v2/images/{id}/stage", s.api(s.stageData))
	m.Handle("POST /v2/images/{id}/import", s.api(s.importImage))
	m.Handle("POST /v2/images/{id}/actions/deactivate", s.api(noBody(s.deactivate)))
	m.Handle("POST /v2/images/{id}/actions/reactivate", s.api(noBody(s.reactivate)))
	m.Handle("PUT /v2/images/{id}/tags/{tag...}", s.api(noBody(s.addTag)))
	m.Handle("DELETE /v2/images/{id}/tags/{tag...}", s.api(noBody(s.removeTag)))
	m.Handle("GET /v2/images/{id}/members", s.api(noBody(s.listMembers)))
	m.Handle("POST /v2/images/{id}/members", s.api(s.addMember))
	m.Handle("GET /v2/images/{id}/members/{member}", s.api(noBody(s.showMember)))
	m.Handle("PUT /v2/images/{id}/members/{member}", s.api(s.updateMember))
	m.Handle("DELETE /v2/images/{id}/members/{member}", s.api(noBody(s.deleteMember)))
	m.Handle("GET /v2/images/{id}/tasks", s.api(noBody(s.listTasks)))
	m.Handle("POST /v2/images/{id}/locations", s.api(s.addLocation))
	m.Handle("GET /v2/images/{id}/locations", s.api(noBody(s.getLocations)))

	m.Handle("GET /v2/schemas/task", s.api(s.schemaTask))
	m.Handle("GET /v2/schemas/tasks", s.api(s.schemaTasks))
	m.Handle("GET /v2/tasks", s.api(noBody(s.listTasksAPI)))
	m.Handle("POST /v2/tasks", s.api(s.createTask))
	m.Handle("GET /v2/tasks/{id}", s.api(noBody(s.showTask)))
	m.Handle("DELETE /v2/tasks/{id}", s.api(noBody(s.deleteTask)))

	m.Handle("GET /v2/info/import", s.api(noBody(s.infoImport)))
	m.Handle("GET /v2/info/stores", s.api(noBody(s.infoStores)))
	m.Handle("GET /v2/info/usage", s.api(noBody(s.infoUsage)))

	s.adminRoutes()
	s.metadefRoutes()
}

// api authenticates the request and writes the handler's error.
func (s *Server) api(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.principal(r)
		if err != nil {
			// Unauthenticated: answer at once, whatever the body.
			s.writeError(w, r, err)
			return
		}
		noteProject(r, p.Project)
		orig := s.guardBody(w, r)
		if err := h(w, r, p); err != nil {
			r.Body = orig
			if statusOf(err) == http.StatusRequestTimeout {
				// The client stalled: waiting for the rest of its body
				// would hold the connection for nothing.
				w.Header().Set("Connection", "close")
			} else if w.Header().Get("Connection") != "close" {
				// (A handler that closes the connection, as a full
				// table of upload slots does, drained what it meant to.)
				drainBody(w, r)
			}
			s.writeError(w, r, err)
		}
	})
}

// Bounds on reading what is left of a refused request's body.
const (
	maxDrain     = 1 << 30
	drainTimeout = 30 * time.Second
)

// drainBody reads what is left of a refused upload (bounded in bytes and
// time) before the error is written: clients such as glanceclient send the
// whole body before reading the answer, and a connection closed under them
// shows as "Broken pipe" instead of the error.
func drainBody(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.ContentLength == 0 || r.Method == http.MethodGet {
		return
	}
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(drainTimeout))
	io.CopyN(io.Discard, r.Body, maxDrain)
}

// noBody refuses a request body where Glance does ("body_reject" routes).
func noBody(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
		if r.ContentLength > 0 {
			return errorf(http.StatusBadRequest, "A body is not expected with this request.")
		}
		if r.ContentLength < 0 && r.Body != nil {
			n, _ := io.CopyN(io.Discard, r.Body, 1)
			if n > 0 {
				return errorf(http.StatusBadRequest, "A body is not expected with this request.")
			}
		}
		return h(w, r, p)
	}
}

// fallback answers everything no route took: the versions document (300)
// outside /v2, as Glance's version negotiation does, and 404 inside.
func (s *Server) fallback(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v2" || strings.HasPrefix(r.URL.Path, "/v2/") {
		if _, err := s.principal(r); err != nil {
			s.writeError(w, r, err)
			return
		}
		writeErrorBody(w, r, http.StatusNotFound, "The resource could not be found.")
		return
	}
	s.versions(http.StatusMultipleChoices)(w, r)
}

// versionIDs are the API versions glimpse claims, newest first (Glance Zed
// without cache or multistore).
var versionIDs = []string{"v2.15", "v2.9", "v2.7", "v2.6", "v2.5", "v2.4", "v2.3", "v2.2", "v2.1", "v2.0"}

func (s *Server) versions(status int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		href := baseURL(r) + "/v2/"
		type link struct {
			Rel  string `json:"rel"`
			Href string `json:"href"`
		}
		type version struct {
			ID     string `json:"id"`
			Status string `json:"status"`
			Links  []link `json:"links"`
		}
		var vs []version
		for i, id := range versionIDs {
			st := "SUPPORTED"
			if i == 0 {
				st = "CURRENT"
			}
			vs = append(vs, version{ID: id, Status: st, Links: []link{{Rel: "self", Href: href}}})
		}
		writeJSON(w, status, map[string]any{"versions": vs})
	}
}

// baseURL is the scheme and host the client reached us by.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	writeJSONBody(w, v)
}

func writeJSONBody(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}
