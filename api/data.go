package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strings"
	"syscall"

	"github.com/glimpse-project/glimpse/backend"
	"github.com/glimpse-project/glimpse/lifecycle"
	"github.com/glimpse-project/glimpse/meta"
)

// copyBuffer is the size of the buffer uploads and downloads stream through.
const copyBuffer = 1 << 20

func requireOctetStream(r *http.Request) error {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/octet-stream" {
		return errorf(http.StatusUnsupportedMediaType, "Invalid content type %s", r.Header.Get("Content-Type"))
	}
	return nil
}

// uploadData is PUT /v2/images/{id}/file: stream the body into the image,
// hashing and inspecting it on the way, and activate it.
func (s *Server) uploadData(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	if err := requireOctetStream(r); err != nil {
		return err
	}
	id := r.PathValue("id")
	img, err := s.svc.Get(r.Context(), p, id)
	if err != nil {
		return notFound(id, err)
	}
	if img.Status == meta.Queued && (img.DiskFormat == "" || img.ContainerFormat == "") {
		return errorf(http.StatusBadRequest, "Properties disk_format, container_format must be set prior to saving data.")
	}
	buf, err := s.uploads.take(w, r)
	if err != nil {
		return err
	}
	defer s.uploads.put(buf)
	if _, err := s.receive(r, p, id, buf); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// receive streams r's body into image id through the lifecycle's upload,
// and settles the image: active, or killed with the reason.
// buf is the copy buffer, taken from the upload slots.
func (s *Server) receive(r *http.Request, p lifecycle.Principal, id string, buf []byte) (*meta.Image, error) {
	up, err := s.svc.BeginUpload(r.Context(), p, id)
	if err != nil {
		return nil, notFound(id, err)
	}
	err = copyFull(up, r.Body, buf)
	if err != nil {
		// A failed write is the upload's own error (size cap, store); a
		// failed read is the client's.
		reason := fmt.Sprintf("upload through REST failed: %v", err)
		up.Abort(context.WithoutCancel(r.Context()), reason)
		var he *httpError
		if errors.Is(err, lifecycle.ErrTooLarge) || errors.Is(err, lifecycle.ErrOverQuota) || errors.Is(err, lifecycle.ErrStoreFull) || errors.As(err, &he) {
			return nil, err
		}
		if errors.Is(err, lifecycle.ErrInvalid) || errors.Is(err, lifecycle.ErrUploadClosed) ||
			errors.Is(err, lifecycle.ErrStoreFull) || errors.Is(err, lifecycle.ErrStoreUnavailable) {
			return nil, err
		}
		return nil, errorf(http.StatusBadRequest, "Error reading the image data: %v", err)
	}
	img, err := up.Commit(context.WithoutCancel(r.Context()))
	if err != nil {
		return nil, err
	}
	return img, nil
}

// copyFull streams src into dst in whole buffers: chunked request bodies
// arrive in small pieces, and each Write of an upload hashes and stores in
// parallel, which pays off only for large writes.
func copyFull(dst io.Writer, src io.Reader, buf []byte) error {
	for {
		// Fill the buffer; unlike io.ReadFull, keep a truncated body's
		// io.ErrUnexpectedEOF distinct from a clean end.
		n := 0
		var err error
		for n < len(buf) && err == nil {
			var m int
			m, err = src.Read(buf[n:])
			n += m
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// downloadData is GET /v2/images/{id}/file, with Range support. The
// content type is always application/octet-stream and Content-MD5 is the
// hex md5 of the whole image, as Glance sends it.
func (s *Server) downloadData(w http.ResponseWriter, r *http.Request, p lifecycle.Principal) error {
	id := r.PathValue("id")
	// As in Glance, admins may download deactivated content.
	rd, img, err := s.svc.Open(r.Context(), p, id, lifecycle.OpenOptions{AdminsReadDeactivated: true})
	if err != nil {
		return notFound(id, err)
	}
	defer rd.Close()
	if !img.Status.HasData() {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	if img.Checksum != "" {
		h.Set("Content-MD5", img.Checksum)
	}
	if r.Header.Get("Range") == "" && r.Header.Get("Content-Range") != "" {
		// Glance also takes the legacy request header Content-Range.
		r.Header.Set("Range", contentRangeToRange(r.Header.Get("Content-Range")))
	}
	if onlyEmptySuffixes(r.Header.Get("Range")) {
		// Go's ServeContent answers "bytes=-0" with an empty 206; a
		// suffix of no bytes is unsatisfiable (RFC 9110 14.1.2).
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", rd.Size()))
		return errorf(http.StatusRequestedRangeNotSatisfiable, "Requested range not satisfiable: a suffix of 0 bytes selects nothing.")
	}
	var content io.ReadSeeker = bufferedSection(rd)
	if f := dupFile(rd); f != nil {
		// An *os.File lets the server send with sendfile(2).
		defer f.Close()
		content = f
	}
	http.ServeContent(w, r, "", img.UpdatedAt, content)
	return nil
}

// dupFile returns a private *os.File on the content when the store keeps
// it in a local file, or nil. The duplicate shares the file offset with
// rd's descriptor, which rd never uses (it reads with pread).
func dupFile(rd backend.Reader) *os.File {
	fr, ok := rd.(backend.FileReader)
	if !ok {
		return nil
	}
	fd, err := syscall.Dup(int(fr.Fd()))
	if err != nil {
		return nil
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "image")
}

// onlyEmptySuffixes reports whether a Range header asks only for suffixes
// of zero bytes ("bytes=-0", "bytes=-0, -00").
func onlyEmptySuffixes(rangeHeader string) bool {
	specs, ok := strings.CutPrefix(rangeHeader, "bytes=")
	if !ok {
		return false
	}
	for spec := range strings.SplitSeq(specs, ",") {
		digits, ok := strings.CutPrefix(strings.TrimSpace(spec), "-")
		if !ok || digits == "" || strings.Trim(digits, "0") != "" {
			return false
		}
	}
	return true
}

// contentRangeToRange turns "bytes a-b/*" into "bytes=a-b".
func contentRangeToRange(cr string) string {
	var a, b int64
	if n, _ := fmt.Sscanf(cr, "bytes %d-%d", &a, &b); n == 2 {
		return fmt.Sprintf("bytes=%d-%d", a, b)
	}
	return "bytes=invalid"
}
