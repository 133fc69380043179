package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// showProgress: --progress, or by default when stderr is a terminal.
func showProgress(c *cli.Context) bool {
	if c.IsSet("progress") {
		return c.Bool("progress")
	}
	return isTerminal(os.Stderr)
}

// progressReader draws a progress bar on w as bytes are read, at most ten
// times a second.
type progressReader struct {
	r     io.Reader
	total int64 // -1: unknown
	done  int64
	label string
	w     io.Writer
	start time.Time
	last  time.Time
}

func newProgressReader(r io.Reader, total int64, label string, w io.Writer) *progressReader {
	now := time.Now()
	return &progressReader{r: r, total: total, label: label, w: w, start: now}
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond {
		p.last = now
		p.draw()
	}
	return n, err
}

func (p *progressReader) draw() {
	secs := time.Since(p.start).Seconds()
	rate := ""
	if secs > 0 {
		rate = fmt.Sprintf(" %s/s", human(int64(float64(p.done)/secs)))
	}
	if p.total <= 0 {
		fmt.Fprintf(p.w, "\r%s %s%s   ", p.label, human(p.done), rate)
		return
	}
	frac := float64(p.done) / float64(p.total)
	const width = 30
	fill := int(frac * width)
	fill = min(max(fill, 0), width)
	fmt.Fprintf(p.w, "\r%s [%s%s] %3.0f%% %s/%s%s   ", p.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill), frac*100, human(p.done), human(p.total), rate)
}

func (p *progressReader) finish() {
	p.draw()
	fmt.Fprintln(p.w)
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
