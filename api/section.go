package api

import (
	"errors"
	"io"

	"github.com/glimpse-project/glimpse/backend"
)

// section is an io.ReadSeeker over a backend.Reader whose Read fills the
// caller's buffer with large ReadAt calls, so that http.ServeContent's copy
// streams without buffering the image.
type section struct {
	r    backend.Reader
	off  int64
	size int64
}

func bufferedSection(r backend.Reader) *section { return &section{r: r, size: r.Size()} }

func (s *section) Read(p []byte) (int, error) {
	if s.off >= s.size {
		return 0, io.EOF
	}
	if rest := s.size - s.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := s.r.ReadAt(p, s.off)
	s.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// WriteTo lets io.Copy use a large buffer instead of its 32 KiB default.
func (s *section) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, copyBuffer)
	var total int64
	for {
		n, err := s.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func (s *section) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += s.off
	case io.SeekEnd:
		offset += s.size
	default:
		return 0, errors.New("seek: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("seek: negative position")
	}
	s.off = offset
	return offset, nil
}
