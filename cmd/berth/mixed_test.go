package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMixedTraffic serves everything at once, as a busy site does: 16
// clients each make 150 exchanges picked at random from uploads (with a
// length, chunked, behind Expect: 100-continue), downloads of up to
// 2 MiB, chunked and event-stream answers, slow answers, an answer the
// app cuts off, HEAD, pipelined requests, cached answers, clients that
// leave mid-request or mid-answer, and garbage; a third of the way in,
// `berth restart` replaces the workers one by one. Every exchange must
// end as it should (a hash, a length, a status), the restart included,
// berth must keep serving, and once the clients are gone it must hold
// no client connection, no file and no more memory than the load
// explains.
func TestMixedTraffic(t *testing.T) {
	t.Setenv("BERTH_RUNTIME_BASE", t.TempDir())
	b := startBerth(t, "testdata/mixed", "--workers", "2", "--name", "mixed")
	b.WaitForN(`msg="worker ready"`, 2, 30*time.Second)
	pid := b.cmd.Process.Pid
	addr := strings.TrimPrefix(b.URL, "http://")
	fds0, rss0 := procCounts(t, pid)

	const clients, rounds = 16, 150
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	var done atomic.Int64
	third, restarted := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(restarted)
		<-third
		if out, err := exec.Command(berthBin, "restart", "mixed").CombinedOutput(); err != nil || !strings.Contains(string(out), "restarted") {
			t.Errorf("berth restart under mixed traffic: %v\n%s", err, out)
		}
	}()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			m := &mixedClient{t: t, addr: addr, rnd: rand.New(rand.NewPCG(seed, uint64(i))),
				c: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableCompression: true}}}
			defer m.c.CloseIdleConnections()
			// At least rounds exchanges, and on until the restart is
			// over, so that it happens under load.
			for n := 0; n < rounds || !closed(restarted); n++ {
				op := mixedOps[m.rnd.IntN(len(mixedOps))]
				if err := op.run(m); err != nil {
					t.Errorf("%s: %v", op.name, err)
				}
				if done.Add(1) == clients*rounds/3 {
					close(third)
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if n := len(regexp.MustCompile(`msg="worker replaced" .*reason=restart`).FindAllString(b.Output(), -1)); n != 2 {
		t.Errorf("the restart replaced %d workers, want 2", n)
	}

	once := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if code, body := get(t, once, b.URL+"/"); code != http.StatusOK || body != "hello world\n" {
		t.Fatalf("after the load: %d %q", code, body)
	}
	// The clients are gone: their connections must be too. Idle
	// connections to the workers may stay pooled, one per overlapping
	// request at most.
	deadline := time.Now().Add(10 * time.Second)
	for {
		fds, rss := procCounts(t, pid)
		if fds.tcp <= fds0.tcp && fds.files <= fds0.files && fds.other <= fds0.other+clients {
			if rss > rss0+48<<10 {
				t.Errorf("berth's memory grew from %d kB to %d kB", rss0, rss)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("berth holds %+v descriptors after the load, %+v before: %s", fds, fds0, fdList(pid))
		}
		time.Sleep(20 * time.Millisecond) // polling /proc: no event to wait on
	}
	if out := b.Output(); strings.Contains(out, "panic") || strings.Contains(out, "level=ERROR") {
		t.Errorf("berth logged a panic or an error under mixed traffic:\n%s", out)
	}
}

// closed reports whether ch is closed.
func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// mixedClient is one client of TestMixedTraffic.
type mixedClient struct {
	t    *testing.T
	addr string
	rnd  *rand.Rand
	c    *http.Client
}

type mixedOp struct {
	name string
	run  func(m *mixedClient) error
}

var mixedOps = []mixedOp{
	{"GET /", func(m *mixedClient) error { return m.want("/", "hello world\n") }},
	{"upload", func(m *mixedClient) error { return m.upload(false, false) }},
	{"chunked upload", func(m *mixedClient) error { return m.upload(true, false) }},
	{"upload after 100-continue", func(m *mixedClient) error { return m.upload(false, true) }},
	{"download", func(m *mixedClient) error {
		n := m.rnd.IntN(2 << 20)
		body, err := m.get(fmt.Sprintf("/big?n=%d", n))
		if err == nil && len(body) != n {
			err = fmt.Errorf("%d bytes, want %d", len(body), n)
		}
		return err
	}},
	{"chunked answer", func(m *mixedClient) error {
		return m.want("/chunked", strings.Repeat("a", 1000)+strings.Repeat("b", 3000)+"c")
	}},
	{"event stream", func(m *mixedClient) error {
		return m.want("/events", "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n")
	}},
	{"slow answer", func(m *mixedClient) error { return m.want(fmt.Sprintf("/slow?ms=%d", m.rnd.IntN(200)), "slow") }},
	{"cached answer", func(m *mixedClient) error {
		k := m.rnd.IntN(20)
		return m.want(fmt.Sprintf("/cached?%d", k), fmt.Sprintf("cached ?%d", k))
	}},
	{"HEAD", func(m *mixedClient) error {
		resp, err := m.c.Head("http://" + m.addr + "/big?n=12345")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ContentLength != 12345 {
			return fmt.Errorf("%d, Content-Length %d, want 200 and 12345", resp.StatusCode, resp.ContentLength)
		}
		return nil
	}},
	{"answer cut off by the app", func(m *mixedClient) error {
		resp, err := m.c.Get("http://" + m.addr + "/cut")
		if err != nil {
			return nil // berth may close before the head went out
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			return fmt.Errorf("a 7-byte body promised as 100 bytes read as complete")
		}
		return nil
	}},
	{"pipelined requests", func(m *mixedClient) error {
		return m.raw(func(c net.Conn, br *bufio.Reader) error {
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /chunked HTTP/1.1\r\nHost: x\r\n\r\nGET /cached?p HTTP/1.1\r\nHost: x\r\n\r\n")
			for i, want := range []int{12, 4001, len("cached ?p")} {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					return fmt.Errorf("answer %d: %v", i+1, err)
				}
				body, err := io.ReadAll(resp.Body)
				if err != nil || resp.StatusCode != http.StatusOK || len(body) != want {
					return fmt.Errorf("answer %d: %d, %d bytes (%v), want 200 and %d bytes", i+1, resp.StatusCode, len(body), err, want)
				}
			}
			return nil
		})
	}},
	{"client leaves mid-request", func(m *mixedClient) error {
		return m.raw(func(c net.Conn, br *bufio.Reader) error {
			req := "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + strings.Repeat("z", 500)
			_, err := io.WriteString(c, req[:1+m.rnd.IntN(len(req)-1)])
			return err
		})
	}},
	{"client leaves mid-answer", func(m *mixedClient) error {
		return m.raw(func(c net.Conn, br *bufio.Reader) error {
			fmt.Fprintf(c, "GET /big?n=%d HTTP/1.1\r\nHost: x\r\n\r\n", 1<<20+m.rnd.IntN(3<<20))
			_, err := io.ReadFull(br, make([]byte, 1+m.rnd.IntN(200000)))
			return err
		})
	}},
	{"garbage", func(m *mixedClient) error {
		return m.raw(func(c net.Conn, br *bufio.Reader) error {
			g := make([]byte, 1+m.rnd.IntN(300))
			for i := range g {
				g[i] = byte(m.rnd.IntN(256))
			}
			c.Write(append(g, "\r\n\r\n"...))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return nil // closed unanswered
			}
			if resp.StatusCode/100 != 4 {
				return fmt.Errorf("garbage %q answered %d", g, resp.StatusCode)
			}
			return nil
		})
	}},
}

// get GETs path and returns the body of a 200.
func (m *mixedClient) get(path string) ([]byte, error) {
	resp, err := m.c.Get("http://" + m.addr + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%d %q", resp.StatusCode, body)
	}
	return body, nil
}

// want GETs path and checks the body.
func (m *mixedClient) want(path, body string) error {
	got, err := m.get(path)
	if err == nil && string(got) != body {
		err = fmt.Errorf("GET %s: body %.60q, want %.60q", path, got, body)
	}
	return err
}

// upload POSTs random bytes to /echo and checks the app got them all.
func (m *mixedClient) upload(chunked, expect bool) error {
	n := m.rnd.IntN(512 << 10)
	if m.rnd.IntN(3) == 0 {
		n = m.rnd.IntN(100)
	}
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(m.rnd.IntN(256))
	}
	sum := sha256.Sum256(data)
	want := fmt.Sprintf("%d %s", n, hex.EncodeToString(sum[:]))
	var body io.Reader = bytes.NewReader(data)
	if chunked {
		// Pieces of random sizes, so chunks cross berth's buffers.
		pr, pw := io.Pipe()
		sizes := make([]int, 0, 8)
		for left := n; left > 0; {
			k := min(left, 1+m.rnd.IntN(70000))
			sizes = append(sizes, k)
			left -= k
		}
		go func() {
			off := 0
			for _, k := range sizes {
				if _, err := pw.Write(data[off : off+k]); err != nil {
					return
				}
				off += k
			}
			pw.Close()
		}()
		body = pr
	}
	req, err := http.NewRequest("POST", "http://"+m.addr+"/echo", body)
	if err != nil {
		return err
	}
	if chunked {
		req.ContentLength = -1
	}
	if expect {
		req.Header.Set("Expect", "100-continue")
	}
	resp, err := m.c.Do(req)
	if err != nil {
		return err
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || string(got) != want {
		return fmt.Errorf("%d %.90q (%v), want 200 %.90q", resp.StatusCode, got, err, want)
	}
	return nil
}

// raw runs f on a connection of its own.
func (m *mixedClient) raw(f func(c net.Conn, br *bufio.Reader) error) error {
	c, err := net.DialTimeout("tcp", m.addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return f(c, bufio.NewReader(c))
}
