package kvtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Etcd is a real etcd cluster of 1 or 3 members on loopback ports, started
// by scripts/etcd (which builds the pinned server once into .cache/) for
// one test and stopped when it ends.
type Etcd struct {
	Endpoints []string // host:port of each member, in member order
	Dir       string   // the members' data, logs and command lines
	script    string
}

// StartEtcd starts a cluster of members (1 or 3) and waits until it has a
// leader.
func StartEtcd(t testing.TB, members int) *Etcd {
	t.Helper()
	script := filepath.Join(RepoRoot(t), "scripts", "etcd")
	dir := t.TempDir()
	out, err := exec.Command(script, "start", strconv.Itoa(members), dir).Output()
	e := &Etcd{Dir: dir, script: script}
	t.Cleanup(func() {
		if out, err := exec.Command(script, "stop", dir).CombinedOutput(); err != nil {
			t.Errorf("scripts/etcd stop: %v\n%s", err, out)
		}
	})
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("scripts/etcd start %d: %v\n%s", members, err, stderr)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, _ := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if k == "ETCD_ENDPOINTS" {
			e.Endpoints = strings.Split(v, ",")
		}
	}
	if len(e.Endpoints) != members {
		t.Fatalf("scripts/etcd start printed no endpoints:\n%s", out)
	}
	return e
}

// URL is the registry URL of the cluster under prefix.
func (e *Etcd) URL(prefix string) string {
	return "etcd://" + strings.Join(e.Endpoints, ",") + "/" + prefix
}

// PID is member i's process id (from 0).
func (e *Etcd) PID(t testing.TB, i int) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.Dir, fmt.Sprintf("m%d.pid", i+1)))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// Kill SIGKILLs member i and waits until it is gone.
func (e *Etcd) Kill(t testing.TB, i int) {
	t.Helper()
	pid := e.PID(t, i)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(pid, 0) == nil; {
		if time.Now().After(deadline) {
			t.Fatalf("etcd member %d (pid %d) still there after SIGKILL", i, pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Pause SIGSTOPs member i: it holds its connections but answers nothing,
// as a member cut off or stalled does.
func (e *Etcd) Pause(t testing.TB, i int) {
	t.Helper()
	if err := syscall.Kill(e.PID(t, i), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
}

// Resume SIGCONTs member i.
func (e *Etcd) Resume(t testing.TB, i int) {
	t.Helper()
	if err := syscall.Kill(e.PID(t, i), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// Restart starts member i again with its first command line and data.
func (e *Etcd) Restart(t testing.TB, i int) {
	t.Helper()
	line, err := os.ReadFile(filepath.Join(e.Dir, fmt.Sprintf("m%d.cmd", i+1)))
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Fields(string(line))
	log, err := os.OpenFile(filepath.Join(e.Dir, fmt.Sprintf("m%d.log", i+1)), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait() // reaped here; scripts/etcd stop kills it by pid
	if err := os.WriteFile(filepath.Join(e.Dir, fmt.Sprintf("m%d.pid", i+1)), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Leader is the index of the member that leads the cluster now, asked of
// each live member in turn.
func (e *Etcd) Leader(t testing.TB) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for i, ep := range e.Endpoints {
			c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: time.Second, Logger: zap.NewNop()})
			if err != nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			resp, err := c.Status(ctx, ep)
			cancel()
			c.Close()
			if err == nil && resp.Leader != 0 && resp.Leader == resp.Header.MemberId {
				return i
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no etcd member says it leads")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Count is how many keys under prefix (a raw etcd key, with the
// registry's prefix) the cluster holds now.
func (e *Etcd) Count(t testing.TB, prefix string) int64 {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("count the keys under %s: %v", prefix, err)
	}
	return resp.Count
}

// RepoRoot is the checkout's top directory (where go.mod is), found from
// the test's working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "etcd")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no scripts/etcd above the test's directory")
		}
		dir = parent
	}
}
