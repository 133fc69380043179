package api_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/glimpse-project/glimpse/api"
	"github.com/glimpse-project/glimpse/lifecycle"
)

// dialRaw opens a plain TCP connection to the server, for a client that
// misbehaves below what net/http lets a client do. Reads give up after
// limit, so that a server that never answers fails the test instead of
// hanging it.
func dialRaw(t *testing.T, e *env, limit time.Duration) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetReadDeadline(time.Now().Add(limit))
	return conn
}

// closedByServer reads until the server closes the connection; a read
// that times out on our side means the server held it open.
func closedByServer(t *testing.T, what string, conn io.Reader) {
	t.Helper()
	_, err := io.Copy(io.Discard, conn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: the server kept the connection open", what)
	}
}

// waitStatusIs polls the image until it has status want: the readiness
// check for "the upload has started".
func waitStatusIs(t *testing.T, e *env, id, want string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := e.do("GET", "/v2/images/"+id, nil, nil).json(t)
		if v["status"] == want {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("image %s is %v, never %s", id, v["status"], want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSlowClients(t *testing.T) {
	// Long enough that a loaded machine never stalls a test client by
	// accident, short enough to wait for.
	const stall = time.Second
	e, lt := hostileEnv(t, lifecycle.Config{}, api.Options{Timeouts: api.Timeouts{ReadHeader: stall, Idle: stall, BodyStall: stall}})
	host := strings.TrimPrefix(e.url, "http://")

	t.Run("headers never finished", func(t *testing.T) {
		conn := dialRaw(t, e, 20*stall)
		fmt.Fprintf(conn, "GET /v2/images HTTP/1.1\r\nHost: %s\r\nX-Slow: ", host)
		closedByServer(t, "half a header", conn)
	})

	t.Run("idle keep-alive", func(t *testing.T) {
		conn := dialRaw(t, e, 20*stall)
		fmt.Fprintf(conn, "GET /healthcheck HTTP/1.1\r\nHost: %s\r\n\r\n", host)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("healthcheck on the raw connection: %v %v", resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		closedByServer(t, "idle connection", br)
	})

	t.Run("upload stalls", func(t *testing.T) {
		id := e.create(`{"name": "stalled", "disk_format": "raw", "container_format": "bare"}`)["id"].(string)
		conn := dialRaw(t, e, 20*stall)
		fmt.Fprintf(conn, "PUT /v2/images/%s/file HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nAccept: application/json\r\nContent-Length: 1000000\r\n\r\n", id, host)
		conn.Write(make([]byte, 1000))
		waitStatusIs(t, e, id, "saving")
		// Others are served while the stalled client holds its upload.
		other := e.create(`{"name": "meanwhile"}`)
		if r := e.do("GET", "/v2/images/"+other["id"].(string), nil, nil); r.status != 200 {
			t.Fatalf("another client during the stall: %d", r.status)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer to the stalled upload: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		glanceError(t, "stalled upload", reply{resp.StatusCode, resp.Header, body}, http.StatusRequestTimeout, "sent no data for 1s")
		v := waitStatusIs(t, e, id, "killed")
		if !strings.Contains(fmt.Sprint(v["glimpse.error"]), "no data") {
			t.Errorf("kill reason: %v", v["glimpse.error"])
		}
		if keys := storeKeys(t, lt); len(keys) != 0 {
			t.Errorf("the stalled upload left %v in the store", keys)
		}
	})

	t.Run("create body stalls", func(t *testing.T) {
		before := snapshot(t, e.svc)
		conn := dialRaw(t, e, 20*stall)
		fmt.Fprintf(conn, "POST /v2/images HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: 100\r\n\r\n{\"name\": ", host)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer to the stalled create: %v", err)
		}
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("stalled create: %d", resp.StatusCode)
		}
		if after := snapshot(t, e.svc); after != before {
			t.Errorf("a stalled create changed the registry")
		}
	})

	t.Run("a slow upload that keeps moving is not cut", func(t *testing.T) {
		id := e.create(`{"name": "trickle", "disk_format": "raw", "container_format": "bare"}`)["id"].(string)
		pr, pw := io.Pipe()
		go func() {
			// 20 bytes, one every stall/6: the whole takes over 3 stalls.
			for i := 0; i < 20; i++ {
				time.Sleep(stall / 6)
				pw.Write([]byte{byte(i)})
			}
			pw.Close()
		}()
		start := time.Now()
		r := e.do("PUT", "/v2/images/"+id+"/file", map[string]string{"Content-Type": "application/octet-stream"}, pr)
		if r.status != 204 {
			t.Fatalf("trickled upload: %d %s", r.status, r.body)
		}
		if took := time.Since(start); took < 3*stall {
			t.Fatalf("the trickle took %v, not longer than the stall bound: the test proves nothing", took)
		}
		if v := e.do("GET", "/v2/images/"+id, nil, nil).json(t); v["status"] != "active" || v["size"] != float64(20) {
			t.Fatalf("trickled upload: %v %v", v["status"], v["size"])
		}
	})
}
