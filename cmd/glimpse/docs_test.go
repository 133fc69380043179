package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The examples in README.md and docs/*.md are run here, so that the docs
// cannot drift from what glimpse does. In the Markdown:
//
//	```sh doctest          commands, each on a line starting with "$ ", run
//	                       in order by bash against a live daemon; the lines
//	                       after a command, up to the next "$ ", are its
//	                       expected output (stdout and stderr together). A
//	                       line "..." stands for any lines, and "..." inside
//	                       a line for any text. A command shown without
//	                       output must exit 0; one shown with output is
//	                       judged by its output (so an errno can be shown).
//	```sh doctest stop     the same, run while the daemon is stopped (it is
//	                       restarted afterwards): backups, offline tools.
//	```sh daemon           the one "$ glimpse serve ..." line that starts
//	                       the daemon the file's examples run against.
//	```yaml doctest        a config file: serve must accept it.
//
// Every ```sh block in docs/ must be one of these. Exported variables and
// the working directory carry over from block to block within a file.
// The daemon is the glimpse built from this tree (the test binary run as
// glimpse, first on PATH); the docs' well-known places are rewritten to the
// test's own: /mnt/glimpse to a temporary mount, 127.0.0.1:9292 to a free
// port, /var/lib/glimpse to a temporary data directory.

type docBlock struct {
	file string
	line int
	lang string
	tags []string
	text string
}

func (b docBlock) has(tag string) bool {
	for _, t := range b.tags {
		if t == tag {
			return true
		}
	}
	return false
}

var (
	fence  = regexp.MustCompile("^```([a-z]*)(.*)$")
	spaces = regexp.MustCompile(" {2,}")
)

func docBlocks(t *testing.T, path string) []docBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []docBlock
	var cur *docBlock
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if cur != nil {
			if line == "```" {
				blocks = append(blocks, *cur)
				cur = nil
			} else {
				cur.text += line + "\n"
			}
			continue
		}
		if m := fence.FindStringSubmatch(line); m != nil {
			cur = &docBlock{file: filepath.Base(path), line: n, lang: m[1], tags: strings.Fields(m[2])}
		}
	}
	if cur != nil {
		t.Fatalf("%s:%d: unclosed code block", path, cur.line)
	}
	return blocks
}

type docCommand struct {
	line     int
	cmd      string
	expected []string // nil: only the exit status is checked
}

func docCommands(b docBlock) []docCommand {
	var cmds []docCommand
	for i, line := range strings.Split(strings.TrimRight(b.text, "\n"), "\n") {
		if c, ok := strings.CutPrefix(line, "$ "); ok {
			cmds = append(cmds, docCommand{line: b.line + 1 + i, cmd: c})
		} else if len(cmds) > 0 {
			last := &cmds[len(cmds)-1]
			last.expected = append(last.expected, strings.TrimRight(line, " "))
		}
	}
	return cmds
}

// linesMatch matches actual output lines against expected ones with the
// "..." wildcards described above.
func linesMatch(expected, actual []string) bool {
	if len(expected) == 0 {
		return len(actual) == 0
	}
	if expected[0] == "..." {
		for k := 0; k <= len(actual); k++ {
			if linesMatch(expected[1:], actual[k:]) {
				return true
			}
		}
		return false
	}
	if len(actual) == 0 {
		return false
	}
	parts := strings.Split(expected[0], "...")
	for i, p := range parts {
		// A run of spaces matches any run, so that "..." can stand in a
		// padded table column.
		parts[i] = spaces.ReplaceAllString(regexp.QuoteMeta(p), "[ \t]+")
	}
	ok, _ := regexp.MatchString("^"+strings.Join(parts, ".*")+"$", strings.TrimRight(actual[0], " "))
	return ok && linesMatch(expected[1:], actual[1:])
}

// docEnv is one file's world: the daemon, the rewriting of well-known
// places, and the shell state carried between blocks.
type docEnv struct {
	t                *testing.T
	bin, work, state string
	mnt, data, addr  string
	serveArgs        []string
	d                *daemon
	rewrite          *strings.Replacer
}

func newDocEnv(t *testing.T) *docEnv {
	dir := t.TempDir()
	e := &docEnv{t: t, bin: filepath.Join(dir, "bin"), work: filepath.Join(dir, "work"), state: filepath.Join(dir, "state"),
		mnt: filepath.Join(dir, "mnt"), data: filepath.Join(dir, "data"), addr: freeAddr(t)}
	for _, d := range []string{e.bin, e.work, e.state} {
		os.MkdirAll(d, 0o755)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	wrapper := fmt.Sprintf("#!/bin/sh\nGLIMPSE_RUN_MAIN=1 exec %q \"$@\"\n", exe)
	os.WriteFile(filepath.Join(e.bin, "glimpse"), []byte(wrapper), 0o755)
	os.WriteFile(filepath.Join(e.state, "env"), nil, 0o644)
	os.WriteFile(filepath.Join(e.state, "cwd"), []byte(e.work), 0o644)
	e.rewrite = strings.NewReplacer("/mnt/glimpse", e.mnt, "127.0.0.1:9292", e.addr, "/var/lib/glimpse", e.data)
	t.Cleanup(func() {
		if e.d != nil && e.d.cmd.ProcessState == nil {
			e.d.stop()
		}
	})
	return e
}

func (e *docEnv) environ() []string {
	return append(os.Environ(), "PATH="+e.bin+":"+os.Getenv("PATH"), "GLIMPSE_DATA="+e.data, "GLIMPSE_LISTEN="+e.addr,
		"HOME="+e.work, "COLUMNS=200", "LC_ALL=C")
}

// start runs the file's daemon (its "sh daemon" line, or a plain serve on
// the mount) and waits until it is ready.
func (e *docEnv) start() {
	t := e.t
	t.Helper()
	if e.serveArgs == nil {
		e.serveArgs = []string{"serve", "--mount", e.mnt}
	}
	exe, _ := os.Executable()
	d := &daemon{t: t, mnt: e.mnt, data: e.data, addr: e.addr, log: &bytes.Buffer{}, exited: make(chan error, 1)}
	d.cmd = &exec.Cmd{Path: exe, Args: append([]string{"glimpse"}, e.serveArgs...), Dir: e.work,
		Env: append(e.environ(), "GLIMPSE_RUN_MAIN=1"), Stdout: d.log, Stderr: d.log}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	e.d = d
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			<-d.exited
		}
		syscall.Unmount(e.mnt, syscall.MNT_DETACH)
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.log)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + e.addr + "/healthcheck")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-d.exited:
			t.Fatalf("daemon (glimpse %s) exited before it was ready: %v\n%s", strings.Join(e.serveArgs, " "), err, d.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready after 30s:\n%s", d.log)
		}
		time.Sleep(20 * time.Millisecond) // polling readiness, bounded by the deadline
	}
}

const statusMark = "@@doctest-status "

// run runs one block's commands in one bash and checks each.
func (e *docEnv) run(b docBlock) {
	t := e.t
	t.Helper()
	cmds := docCommands(b)
	if len(cmds) == 0 {
		t.Fatalf("%s:%d: a doctest block without a \"$ \" command", b.file, b.line)
	}
	var script strings.Builder
	fmt.Fprintf(&script, ". %q\ncd \"$(cat %q)\"\n", filepath.Join(e.state, "env"), filepath.Join(e.state, "cwd"))
	for _, c := range cmds {
		fmt.Fprintf(&script, "%s\nprintf '\\n%s%%d\\n' $?\n", e.rewrite.Replace(c.cmd), statusMark)
	}
	fmt.Fprintf(&script, "export -p > %q\npwd > %q\n", filepath.Join(e.state, "env"), filepath.Join(e.state, "cwd"))

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// From a file, with stdin empty: a command that reads stdin (glance
	// does when it is not a terminal) must not eat the script.
	scriptFile := filepath.Join(e.state, "block.sh")
	os.WriteFile(scriptFile, []byte(script.String()), 0o644)
	sh := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", scriptFile)
	sh.Env = e.environ()
	var out bytes.Buffer
	sh.Stdout, sh.Stderr = &out, &out
	if err := sh.Run(); err != nil {
		t.Fatalf("%s:%d: bash: %v\n%s", b.file, b.line, err, out.String())
	}
	chunks := strings.Split(out.String(), statusMark)
	if len(chunks) != len(cmds)+1 {
		t.Fatalf("%s:%d: %d commands but %d results:\n%s", b.file, b.line, len(cmds), len(chunks)-1, out.String())
	}
	for i, c := range cmds {
		output := chunks[i]
		if i > 0 { // drop the previous command's status line
			var status string
			status, output, _ = strings.Cut(output, "\n")
			_ = status
		}
		status, _, _ := strings.Cut(chunks[i+1], "\n")
		output = strings.TrimSuffix(output, "\n") // the newline printf adds
		actual := strings.Split(strings.TrimRight(output, "\n"), "\n")
		if strings.TrimSpace(output) == "" {
			actual = nil
		}
		if c.expected == nil {
			if status != "0" {
				t.Errorf("%s:%d: $ %s\nexit status %s, output:\n%s", b.file, c.line, c.cmd, status, output)
			}
			continue
		}
		expected := strings.Split(e.rewrite.Replace(strings.Join(c.expected, "\n")), "\n")
		for len(expected) > 0 && expected[len(expected)-1] == "" {
			expected = expected[:len(expected)-1]
		}
		if !linesMatch(expected, actual) {
			t.Errorf("%s:%d: $ %s\ngot (exit %s):\n%s\nwant:\n%s", b.file, c.line, c.cmd, status, output, strings.Join(expected, "\n"))
		}
	}
}

func runDocFile(t *testing.T, path string, requireTagged bool) {
	blocks := docBlocks(t, path)
	e := newDocEnv(t)
	started := false
	for _, b := range blocks {
		switch {
		case b.lang == "sh" && b.has("daemon"):
			cmds := docCommands(b)
			if len(cmds) != 1 || !strings.HasPrefix(cmds[0].cmd, "glimpse serve") {
				t.Fatalf("%s:%d: a daemon block holds one \"$ glimpse serve ...\" line", b.file, b.line)
			}
			if started {
				t.Fatalf("%s:%d: a second daemon block", b.file, b.line)
			}
			e.serveArgs = strings.Fields(e.rewrite.Replace(cmds[0].cmd))[1:]
		case b.lang == "sh" && b.has("doctest"):
			if !started {
				needMount(t)
				e.start()
				started = true
			}
			if b.has("stop") {
				e.d.stop()
				e.run(b)
				e.start()
			} else {
				e.run(b)
			}
		case b.lang == "yaml" && b.has("doctest"):
			cfg := filepath.Join(t.TempDir(), "glimpse.yaml")
			os.WriteFile(cfg, []byte(e.rewrite.Replace(b.text)), 0o600)
			if _, err := parseServe(t, "--config", cfg); err != nil {
				t.Errorf("%s:%d: serve refuses this config: %v", b.file, b.line, err)
			}
		case requireTagged && (b.lang == "sh" || b.lang == "console" || b.lang == "bash"):
			t.Errorf("%s:%d: a shell block that no test runs (tag it doctest)", b.file, b.line)
		}
	}
}

func TestDocExamples(t *testing.T) {
	needTool(t, "getfattr")
	needTool(t, "qemu-img")
	needTool(t, "glance")
	docs, _ := filepath.Glob("../../docs/*.md")
	if len(docs) == 0 {
		t.Fatal("no docs/*.md")
	}
	for _, path := range append([]string{"../../README.md"}, docs...) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			runDocFile(t, path, filepath.Base(path) != "README.md")
		})
	}
}
