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

// progressBar draws "label [====    ]  42% 1.2 GiB/2.9 GiB 310.4 MiB/s ETA 6s"
// on w, redrawn in place at most ten times a second. Callers create one
// only when the user should see it (a terminal, or --progress).
type progressBar struct {
	label string
	total int64 // <= 0: unknown, no bar or ETA
	w     io.Writer
	start time.Time
	last  time.Time
	done  int64
}

func newProgressBar(label string, total int64, w io.Writer) *progressBar {
	return &progressBar{label: label, total: total, w: w, start: time.Now()}
}

// update records done bytes and redraws if a tenth of a second has passed.
func (p *progressBar) update(done int64) {
	p.done = done
	if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond {
		p.last = now
		p.draw()
	}
}

func (p *progressBar) draw() {
	secs := time.Since(p.start).Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(p.done) / secs
	}
	if p.total <= 0 {
		fmt.Fprintf(p.w, "\r%s %s %s/s   ", p.label, human(p.done), human(int64(rate)))
		return
	}
	frac := min(max(float64(p.done)/float64(p.total), 0), 1)
	const width = 30
	fill := int(frac * width)
	eta := "ETA --"
	if rate > 0 {
		left := time.Duration(float64(p.total-p.done) / rate * float64(time.Second))
		eta = "ETA " + left.Round(time.Second).String()
	}
	fmt.Fprintf(p.w, "\r%s [%s%s] %3.0f%% %s/%s %s/s %s   ", p.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
		frac*100, human(p.done), human(p.total), human(int64(rate)), eta)
}

// finish draws the final state and ends the line.
func (p *progressBar) finish() {
	p.draw()
	fmt.Fprintln(p.w)
}

// progressReader draws a progress bar as bytes are read through it.
type progressReader struct {
	r   io.Reader
	bar *progressBar
	n   int64
}

func newProgressReader(r io.Reader, total int64, label string, w io.Writer) *progressReader {
	return &progressReader{r: r, bar: newProgressBar(label, total, w)}
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	p.bar.update(p.n)
	return n, err
}

func (p *progressReader) finish() { p.bar.finish() }

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
