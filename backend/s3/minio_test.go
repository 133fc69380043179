package s3_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A minioServer is a real MinIO process on loopback, started by the tests.
// No mocks: the binary comes from scripts/minio build.
type minioServer struct {
	bin    string
	addr   string // 127.0.0.1:PORT
	dir    string // data dir
	log    string // server output
	access string
	secret string

	cmd    *exec.Cmd
	exited chan struct{}
}

// findMinio returns the MinIO binary: $MINIO_BIN, the repo's
// .cache/bin/minio (scripts/minio build), or minio on PATH.
func findMinio() (string, error) {
	if p := os.Getenv("MINIO_BIN"); p != "" {
		return p, nil
	}
	if p, err := filepath.Abs("../../.cache/bin/minio"); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	return "", errors.New("no minio binary: run scripts/minio build (or set MINIO_BIN)")
}

// needMinio skips the test when there is no MinIO binary, except under CI
// (CI set), where a missing server is a failure, not a silent skip.
func needMinio(t testing.TB) string {
	t.Helper()
	bin, err := findMinio()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v (CI is set, so this fails instead of skipping)", err)
		}
		t.Skip(err)
	}
	return bin
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func randomHex(n int) string {
	p := make([]byte, n)
	rand.Read(p)
	return hex.EncodeToString(p)
}

// newMinio prepares a server with fresh credentials and data dir under
// root; start runs it.
func newMinio(bin, root string) (*minioServer, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	m := &minioServer{
		bin:    bin,
		addr:   addr,
		dir:    filepath.Join(root, "data"),
		log:    filepath.Join(root, "minio.log"),
		access: "glimpse" + randomHex(4),
		secret: randomHex(16),
	}
	return m, m.start()
}

// start runs the server (again, on the same address and data) and waits
// until it is ready (polled, for at most 60 s).
func (m *minioServer) start() error {
	console, err := freeAddr()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(m.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(m.bin, "server", "--quiet", "--address", m.addr, "--console-address", console, m.dir)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.access, "MINIO_ROOT_PASSWORD="+m.secret,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so a test's ^C does not race our kill.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start minio: %w", err)
	}
	m.cmd, m.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(m.exited) }()

	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-m.exited:
			out, _ := os.ReadFile(m.log)
			return fmt.Errorf("minio exited during startup:\n%s", out)
		default:
		}
		if m.ready(client) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.kill()
	return errors.New("minio not healthy after 60 s")
}

// ready tells whether the server serves S3 requests. The health endpoints
// answer 200 a moment before the object layer is up (which answers 503
// "Server not initialized yet"), so an anonymous GET / must also get past
// that (to 403 Access Denied).
func (m *minioServer) ready(client *http.Client) bool {
	for _, path := range []string{"/minio/health/cluster", "/"} {
		resp, err := client.Get("http://" + m.addr + path)
		if err != nil {
			return false
		}
		resp.Body.Close()
		if path != "/" && resp.StatusCode != http.StatusOK ||
			resp.StatusCode == http.StatusServiceUnavailable {
			return false
		}
	}
	return true
}

// kill stops the server at once (SIGKILL, as a crash would) and waits.
func (m *minioServer) kill() {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Kill()
	<-m.exited
	m.cmd = nil
}

func (m *minioServer) endpoint() string { return "http://" + m.addr }

// shared is the one server most tests use, started on first need and
// stopped by TestMain.
var shared struct {
	once sync.Once
	m    *minioServer
	root string
	err  error
}

func sharedMinio(t testing.TB) *minioServer {
	t.Helper()
	bin := needMinio(t)
	shared.once.Do(func() {
		shared.root, shared.err = os.MkdirTemp("", "glimpse-minio-")
		if shared.err == nil {
			shared.m, shared.err = newMinio(bin, shared.root)
		}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.m
}

// ownMinio starts a server for one test alone (fault tests kill it).
func ownMinio(t testing.TB) *minioServer {
	t.Helper()
	bin := needMinio(t)
	m, err := newMinio(bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.kill)
	return m
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.m != nil {
		shared.m.kill()
	}
	if shared.root != "" {
		os.RemoveAll(shared.root)
	}
	os.Exit(code)
}
