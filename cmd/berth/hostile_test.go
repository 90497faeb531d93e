package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The hostile-input suite: a real berth serve in front of a real Node app
// (testdata/recorder, which logs every request it sees), fed what attackers
// and broken clients send. Each case asserts berth's exact answer, what
// the app saw (nothing, or a request exactly as berth forwarded it), and
// that berth's file descriptors and memory come back to their baseline.

// seenReq is one request as the recorder app saw it.
type seenReq struct {
	M string            `json:"m"`
	U string            `json:"u"`
	H map[string]string `json:"h"`
	B string            `json:"b"`
}

// hostileBerth is the berth under test and what its app saw.
type hostileBerth struct {
	*berthProc
	addr   string
	marker int
}

// seen returns the requests the app logged after berth's output had
// length before, made exact by a marker request: the single worker logs
// in order.
func (h *hostileBerth) seen(t *testing.T, before int) []seenReq {
	t.Helper()
	h.marker++
	mark := fmt.Sprintf("/marker-%d", h.marker)
	if code, _ := get(t, nil, "http://"+h.addr+mark); code != 200 {
		t.Fatalf("marker request: %d", code)
	}
	h.WaitFor(`SAW .*"u":"`+mark+`"`, 10*time.Second)
	var out []seenReq
	for _, l := range strings.Split(h.Output()[before:], "\n") {
		_, js, ok := strings.Cut(l, "SAW ")
		if !ok {
			continue
		}
		var s seenReq
		if err := json.Unmarshal([]byte(js), &s); err != nil {
			t.Fatalf("app log %q: %v", l, err)
		}
		if s.U == mark {
			break
		}
		out = append(out, s)
	}
	return out
}

// fdCounts is what berth holds open, by kind.
type fdCounts struct {
	tcp   int // client connections and listeners
	other int // sockets of other kinds: worker connections (Unix), admin, readiness
	files int // everything that is not a socket: files, pipes, temp files
}

// procCounts reads a process's open descriptors by kind and its resident
// memory.
func procCounts(t *testing.T, pid int) (fdCounts, int) {
	t.Helper()
	tcpInodes := map[string]bool{}
	for _, f := range []string{"tcp", "tcp6"} {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		for _, l := range strings.Split(string(b), "\n")[1:] {
			if fs := strings.Fields(l); len(fs) > 9 {
				tcpInodes[fs[9]] = true
			}
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	var c fdCounts
	for _, e := range ents {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		switch ino, ok := strings.CutPrefix(l, "socket:["); {
		case ok && tcpInodes[strings.TrimSuffix(ino, "]")]:
			c.tcp++
		case ok:
			c.other++
		default:
			c.files++
		}
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	rssKB := 0
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			rssKB, _ = strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		}
	}
	return c, rssKB
}

// atBaseline reports whether berth holds no more client connections and
// files than at baseline; its pool of idle connections to the one worker
// may have grown by one (two requests overlapped at the worker).
func atBaseline(c, c0 fdCounts) bool {
	return c.tcp <= c0.tcp && c.files <= c0.files && c.other <= c0.other+1
}

// fdList names a process's descriptors, for failure messages.
func fdList(pid int) string {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		out = append(out, e.Name()+"="+l)
	}
	return strings.Join(out, " ")
}

// backToBaseline waits until berth holds no more descriptors than at
// baseline (atBaseline), and checks its memory did not grow past slackKB.
func backToBaseline(t *testing.T, pid int, fds0 fdCounts, rss0, slackKB int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		fds, rss := procCounts(t, pid)
		if atBaseline(fds, fds0) {
			if rss > rss0+slackKB {
				t.Errorf("berth's memory grew from %d kB to %d kB (slack %d kB)", rss0, rss, slackKB)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("berth holds %+v descriptors, %+v at baseline: %s", fds, fds0, fdList(pid))
		}
		time.Sleep(20 * time.Millisecond) // polling /proc: no event to wait on
	}
}

// exchangeRaw writes req on a new connection and reads the answer: the
// status (0 if the connection closed without one), the body, and whether
// berth closed the connection after it.
func exchangeRaw(t *testing.T, addr, req string) (status int, body string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, "", true
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// Closed: berth said so, and the connection reads EOF.
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = br.ReadByte()
	return resp.StatusCode, string(b), resp.Close && err != nil
}

func TestHostileInput(t *testing.T) {
	b := startBerth(t, "testdata/recorder", "--workers", "1", "--name", "hostile",
		"--header-timeout", "1s", "--client-timeout", "2s", "--max-body-size", "64K")
	b.WaitFor(`recorder listening`, 20*time.Second)
	b.WaitFor(`msg="worker ready"`, 20*time.Second)
	h := &hostileBerth{berthProc: b, addr: strings.TrimPrefix(b.URL, "http://")}
	pid := b.cmd.Process.Pid
	h.seen(t, len(h.Output())) // warm: a worker connection in berth's pool
	fds0, rss0 := procCounts(t, pid)

	const host = "Host: x\r\n"
	for _, tc := range []struct {
		name   string
		req    string
		status int    // 0: closed without an answer
		body   string // the answer's body, if it matters
		close  bool   // berth closes the connection after answering
		app    func(t *testing.T, s []seenReq)
	}{
		// Request smuggling.
		{name: "CL and TE", req: "POST / HTTP/1.1\r\n" + host + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n" + host + "\r\n", status: 400, close: true},
		{name: "duplicate CL", req: "POST / HTTP/1.1\r\n" + host + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", status: 400, close: true},
		{name: "CL list", req: "POST / HTTP/1.1\r\n" + host + "Content-Length: 5, 6\r\n\r\nhello!", status: 400, close: true},
		{name: "CL plus sign", req: "POST / HTTP/1.1\r\n" + host + "Content-Length: +5\r\n\r\nhello", status: 400, close: true},
		{name: "TE obfuscated value", req: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", status: 400, close: true},
		{name: "TE space before colon", req: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", status: 400, close: true},
		{name: "TE chunked not last", req: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", status: 400, close: true},
		{name: "TE in HTTP/1.0", req: "POST / HTTP/1.0\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 400, close: true},
		{name: "chunk size overflow", req: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\nx\r\n0\r\n\r\n", status: 400, close: true},
		{name: "bare LF", req: "GET / HTTP/1.1\n" + host + "\n", status: 400, close: true},
		{name: "bare LF in chunk", req: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n", status: 400, close: true},
		{name: "obs-fold", req: "GET / HTTP/1.1\r\n" + host + "X-A: 1\r\n  folded\r\n\r\n", status: 400, close: true},
		// Sizes.
		{name: "header section too large", req: "GET / HTTP/1.1\r\n" + host + "X-Big: " + strings.Repeat("a", 40<<10) + "\r\n\r\n", status: 431, close: true},
		{name: "URI too long", req: "GET /" + strings.Repeat("u", 9<<10) + " HTTP/1.1\r\n" + host + "\r\n", status: 414, close: true},
		{name: "body too large", req: "POST / HTTP/1.1\r\n" + host + "Content-Length: 70000\r\n\r\n" + strings.Repeat("b", 70000), status: 413,
			body: "berth: the request body is larger than the 64K this server accepts.\n", close: true},
		// Malformed request lines.
		{name: "two spaces", req: "GET  / HTTP/1.1\r\n" + host + "\r\n", status: 400, close: true},
		{name: "trailing word", req: "GET / HTTP/1.1 x\r\n" + host + "\r\n", status: 400, close: true},
		{name: "bad method", req: "G@T / HTTP/1.1\r\n" + host + "\r\n", status: 400, close: true},
		{name: "HTTP/2.0 line", req: "GET / HTTP/2.0\r\n" + host + "\r\n", status: 505, close: true},
		{name: "lower-case version", req: "GET / http/1.1\r\n" + host + "\r\n", status: 400, close: true},
		{name: "HTTP/2 preface on cleartext", req: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", status: 505, close: true},
		{name: "CONNECT", req: "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", status: 405, close: true},
		{name: "relative target", req: "GET x HTTP/1.1\r\n" + host + "\r\n", status: 400, close: true},
		// Host.
		{name: "no Host", req: "GET / HTTP/1.1\r\n\r\n", status: 400, close: true},
		{name: "two Hosts", req: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", status: 400, close: true},
		{name: "bad Host", req: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", status: 400, close: true},
		// Bytes.
		{name: "NUL in value", req: "GET / HTTP/1.1\r\n" + host + "X-A: a\x00b\r\n\r\n", status: 400, close: true},
		{name: "NUL in target", req: "GET /a\x00b HTTP/1.1\r\n" + host + "\r\n", status: 400, close: true},
		{name: "CR in value", req: "GET / HTTP/1.1\r\n" + host + "X-A: a\rb\r\n\r\n", status: 400, close: true},
		// balancer/h1 admits obs-text in a target (as nginx does, for
		// clients that send raw UTF-8); Node's parser refuses it before
		// the app's handler runs, and berth relays that 400.
		{name: "non-ASCII in target", req: "GET /caf\xc3\xa9 HTTP/1.1\r\n" + host + "\r\n", status: 400},
		{name: "non-ASCII field name", req: "GET / HTTP/1.1\r\n" + host + "X-\xc3\xa9: 1\r\n\r\n", status: 400, close: true},
		{name: "obs-text in value is passed", req: "GET /obs HTTP/1.1\r\n" + host + "X-A: caf\xc3\xa9\r\n\r\n", status: 200,
			app: func(t *testing.T, s []seenReq) {
				if len(s) != 1 || s[0].H["x-a"] != "caf\u00c3\u00a9" {
					t.Errorf("app saw %+v, want X-A as sent (latin1 in Node)", s)
				}
			}},
		// Absolute form: the authority becomes Host; the app sees origin form.
		{name: "absolute-form other host", req: "GET http://evil.example/x?y=1 HTTP/1.1\r\nHost: x\r\n\r\n", status: 200,
			app: func(t *testing.T, s []seenReq) {
				if len(s) != 1 || s[0].U != "/x?y=1" || s[0].H["host"] != "evil.example" {
					t.Errorf("app saw %+v, want /x?y=1 with Host evil.example", s)
				}
			}},
		{name: "absolute-form userinfo", req: "GET http://user@evil.example/ HTTP/1.1\r\n" + host + "\r\n", status: 400, close: true},
		// Hop-by-hop tricks: berth's own forwarding fields survive. (The
		// test client is on loopback, a trusted proxy, so its own
		// X-Forwarded-For chain is kept and extended.)
		{name: "Connection names X-Forwarded-For", req: "GET /hop HTTP/1.1\r\n" + host + "Connection: keep-alive, X-Forwarded-For, X-Forwarded-Proto\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n", status: 200,
			app: func(t *testing.T, s []seenReq) {
				if len(s) != 1 || !strings.HasSuffix(s[0].H["x-forwarded-for"], "127.0.0.1") || s[0].H["x-forwarded-proto"] != "http" || s[0].H["connection"] != "" && s[0].H["connection"] != "keep-alive" {
					t.Errorf("app saw %+v, want berth's own X-Forwarded-For entry last, proto http, no Connection list", s)
				}
			}},
		{name: "Connection names a custom field", req: "GET /hop2 HTTP/1.1\r\n" + host + "Connection: X-Secret\r\nX-Secret: 1\r\n\r\n", status: 200,
			app: func(t *testing.T, s []seenReq) {
				if len(s) != 1 || s[0].H["x-secret"] != "" {
					t.Errorf("app saw %+v, want X-Secret dropped (hop-by-hop)", s)
				}
			}},
		{name: "TE and Upgrade not forwarded", req: "GET /hop3 HTTP/1.1\r\n" + host + "TE: trailers\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\r\n", status: 200,
			app: func(t *testing.T, s []seenReq) {
				if len(s) != 1 || s[0].H["te"] != "" || s[0].H["keep-alive"] != "" || s[0].H["proxy-connection"] != "" {
					t.Errorf("app saw %+v, want no hop-by-hop fields", s)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(h.Output())
			status, body, closed := exchangeRaw(t, h.addr, tc.req)
			if status != tc.status {
				t.Errorf("status %d, want %d (body %q)", status, tc.status, body)
			}
			if tc.body != "" && body != tc.body {
				t.Errorf("body %q, want %q", body, tc.body)
			}
			if tc.close && !closed {
				t.Errorf("connection not closed after the answer")
			}
			s := h.seen(t, before)
			if tc.app != nil {
				tc.app(t, s)
			} else if len(s) != 0 {
				t.Errorf("the app saw %+v; it should have seen nothing", s)
			}
			backToBaseline(t, pid, fds0, rss0, 16<<10)
		})
	}

	t.Run("slowloris", func(t *testing.T) {
		before := len(h.Output())
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
		c.SetDeadline(time.Now().Add(10 * time.Second))
		for i := 0; i < 3; i++ { // a byte now and then, never the end of the head
			time.Sleep(400 * time.Millisecond)
			if _, err := io.WriteString(c, "X"); err != nil {
				break
			}
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 408 {
			t.Fatalf("slow head: %v %v, want 408 after --header-timeout", resp, err)
		}
		if s := h.seen(t, before); len(s) != 0 {
			t.Errorf("the app saw %+v", s)
		}
		backToBaseline(t, pid, fds0, rss0, 16<<10)
	})

	t.Run("slow reader", func(t *testing.T) {
		before := len(h.Output())
		// A client that asks for 8 MiB and never reads: berth takes it from
		// the app and drops the client after --client-timeout.
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.(*net.TCPConn).SetReadBuffer(16 << 10)
		io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
		h.WaitFor(`SAW .*"u":"/big"`, 10*time.Second)
		// The client reads nothing: berth holds the response, and its
		// writes time out after --client-timeout (2 s).
		deadline := time.Now().Add(15 * time.Second)
		for {
			fds, _ := procCounts(t, pid)
			if fds.tcp <= fds0.tcp && fds.files <= fds0.files {
				break // the connection and the held file are gone
			}
			if time.Now().After(deadline) {
				t.Fatalf("berth still holds the slow reader's connection (%+v descriptors, %+v at baseline): %s", fds, fds0, fdList(pid))
			}
			time.Sleep(50 * time.Millisecond) // polling /proc
		}
		if s := h.seen(t, before); len(s) != 1 || s[0].U != "/big" {
			t.Errorf("the app saw %+v", s)
		}
		backToBaseline(t, pid, fds0, rss0, 32<<10)
	})

	t.Run("connection flood", func(t *testing.T) {
		const n = 2000
		conns := make([]net.Conn, 0, n)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for i := 0; i < n; i++ {
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			conns = append(conns, c)
		}
		start := time.Now()
		if code, body := get(t, &http.Client{Timeout: 5 * time.Second}, "http://"+h.addr+"/during-flood"); code != 200 || !strings.Contains(body, "/during-flood") {
			t.Fatalf("request during the flood: %d %q", code, body)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("request during a flood of %d idle connections took %s", n, d)
		}
		for _, c := range conns {
			c.Close()
		}
		conns = nil
		h.seen(t, len(h.Output()))
		backToBaseline(t, pid, fds0, rss0, 64<<10)
	})
}
