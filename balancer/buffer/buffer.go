package buffer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"berth/balancer"
	"berth/balancer/h1"
)

// Config configures a Buffer. Next is required.
type Config struct {
	// Next is the rest of the chain (ending in the proxy).
	Next balancer.Handler
	// Dir is where temporary files go (they are unlinked at once). If
	// empty, os.TempDir().
	Dir string
	// MemoryBytes is how much of one body is held in memory before a
	// temporary file takes the rest. If zero, DefaultMemoryBytes.
	MemoryBytes int
	// MaxMemory bounds the memory held by all exchanges together; past
	// it, bodies go to files from their first byte. If zero,
	// DefaultMaxMemory.
	MaxMemory int64
	// MaxFileBytes bounds one response held in a file; past it the rest
	// passes through. If zero, DefaultMaxFileBytes.
	MaxFileBytes int64
	// StreamPaths are path prefixes whose requests and responses pass
	// through unbuffered ("/upload/stream"). A prefix matches whole
	// segments: "/live" matches "/live" and "/live/x", not "/lively".
	StreamPaths []string
	// Log receives failures to hold a body (no temporary file could be
	// made or written), at most one line per WarnEvery. If nil, nothing
	// is logged.
	Log *slog.Logger
}

// Defaults for Config.
const (
	DefaultMemoryBytes  = 256 << 10
	DefaultMaxMemory    = 64 << 20
	DefaultMaxFileBytes = 1 << 30
	// PassBelow: responses with a Content-Length up to this pass
	// through; a socket's send buffer holds them.
	PassBelow = 64 << 10
	// WarnEvery: failures to hold a body are logged at most this often,
	// each line counting those since the last.
	WarnEvery = 10 * time.Second
)

// Buffer is the buffering link.
type Buffer struct {
	cfg  Config
	log  *slog.Logger
	mem  atomic.Int64 // bytes held in memory by all exchanges
	bufs sync.Pool    // *[]byte of cap MemoryBytes
	held sync.Pool    // *heldWriter

	holdFailures atomic.Int64 // bodies that could not be held, since New
	unlogged     atomic.Int64 // of those, not yet logged
	warned       atomic.Int64 // when the last was logged, Unix nanoseconds
}

// Stats is what the link counts.
type Stats struct {
	// HoldFailures counts the bodies, since the link was made, that passed
	// through unbuffered because no temporary file could be made or
	// written for them (a full disk).
	HoldFailures int64
	// MemoryBytes is what held bodies take in memory now.
	MemoryBytes int64
}

// Stats returns the link's counts.
func (b *Buffer) Stats() Stats {
	return Stats{HoldFailures: b.holdFailures.Load(), MemoryBytes: b.mem.Load()}
}

// New returns the link.
func New(cfg Config) (*Buffer, error) {
	if cfg.Next == nil {
		return nil, errors.New("buffer: Config.Next is nil")
	}
	if cfg.Dir == "" {
		cfg.Dir = os.TempDir()
	}
	if cfg.MemoryBytes == 0 {
		cfg.MemoryBytes = DefaultMemoryBytes
	}
	if cfg.MaxMemory == 0 {
		cfg.MaxMemory = DefaultMaxMemory
	}
	if cfg.MaxFileBytes == 0 {
		cfg.MaxFileBytes = DefaultMaxFileBytes
	}
	if cfg.MemoryBytes < 0 || cfg.MaxMemory < 0 || cfg.MaxFileBytes < 0 {
		return nil, errors.New("buffer: negative size")
	}
	for _, p := range cfg.StreamPaths {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("buffer: stream path %q does not begin with /", p)
		}
	}
	b := &Buffer{cfg: cfg, log: cfg.Log}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	b.bufs.New = func() any { s := make([]byte, 0, cfg.MemoryBytes); return &s }
	b.held.New = func() any { return &heldWriter{} }
	return b, nil
}

// ServeExchange implements balancer.Handler.
func (b *Buffer) ServeExchange(x *balancer.Exchange) {
	if x.Req.Upgrade || b.streaming(x.Req.Path()) {
		b.cfg.Next.ServeExchange(x)
		return
	}
	if x.Req.ContentLength != 0 {
		body, ok := b.readBody(x)
		if !ok {
			return
		}
		defer body.release()
	}
	h := b.held.Get().(*heldWriter)
	*h = heldWriter{b: b, real: x.W, head: bytes.Equal(x.Req.Method, []byte("HEAD")), resp: h.resp, mem: h.mem}
	x.W = h
	b.cfg.Next.ServeExchange(x)
	x.W = h.real
	h.drain()
	h.real = nil
	b.held.Put(h)
}

// streaming reports whether path is under one of the StreamPaths.
func (b *Buffer) streaming(path []byte) bool {
	for _, p := range b.cfg.StreamPaths {
		if bytes.HasPrefix(path, []byte(p)) && (len(path) == len(p) || path[len(p)] == '/' || p[len(p)-1] == '/') {
			return true
		}
	}
	return false
}

// store is a body held in memory, then in an unlinked file.
type store struct {
	b    *Buffer
	mem  *[]byte // nil until used
	n    int64   // bytes in mem (counted in b.mem)
	file *os.File
	fn   int64 // bytes in file
}

// write appends p, spilling to a file past the memory limit. It returns
// how many bytes of p it holds: after an error (no file could be made, the
// file system is full) the rest of p is the caller's to pass on, and
// nothing more may be written.
func (s *store) write(p []byte) (int, error) {
	held := 0
	if s.file == nil {
		if s.mem == nil && s.b.mem.Load() < s.b.cfg.MaxMemory {
			s.mem = s.b.bufs.Get().(*[]byte)
			*s.mem = (*s.mem)[:0]
		}
		if s.mem != nil {
			room := s.b.cfg.MemoryBytes - len(*s.mem)
			held = min(room, len(p))
			*s.mem = append(*s.mem, p[:held]...)
			s.n += int64(held)
			s.b.mem.Add(int64(held))
			p = p[held:]
		}
		if len(p) == 0 {
			return held, nil
		}
		f, err := os.CreateTemp(s.b.cfg.Dir, ".berth-body-*")
		if err != nil {
			return held, err
		}
		os.Remove(f.Name()) // unlinked: gone with its last descriptor
		s.file = f
	}
	n, err := s.file.Write(p) // a short write (ENOSPC) keeps what it wrote
	s.fn += int64(n)
	return held + n, err
}

// cannotHold logs that what (a request body, a response) could not be held
// and passes through instead: at most one line per WarnEvery, with the
// number of such failures since the last line.
func (b *Buffer) cannotHold(what string, err error) {
	b.holdFailures.Add(1)
	b.unlogged.Add(1)
	now := time.Now().UnixNano()
	last := b.warned.Load()
	if last != 0 && now-last < int64(WarnEvery) || !b.warned.CompareAndSwap(last, now) {
		return
	}
	b.log.Warn("cannot hold "+what+"; it passes through unbuffered, so a slow client holds a worker meanwhile: free space in the directory, or point --buffer-dir at a larger file system",
		"dir", b.cfg.Dir, "err", err, "failures", b.unlogged.Swap(0))
}

// size is the bytes held.
func (s *store) size() int64 { return s.n + s.fn }

// reader reads what is held, from the start.
func (s *store) reader() io.Reader {
	var m io.Reader = bytes.NewReader(nil)
	if s.mem != nil {
		m = bytes.NewReader(*s.mem)
	}
	if s.file == nil {
		return m
	}
	return io.MultiReader(m, io.NewSectionReader(s.file, 0, s.fn))
}

// release gives memory back and closes the file.
func (s *store) release() {
	if s.mem != nil {
		s.b.mem.Add(-s.n)
		*s.mem = (*s.mem)[:0]
		s.b.bufs.Put(s.mem)
		s.mem = nil
	}
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
	s.n, s.fn = 0, 0
}

// readBody reads the request body whole; on failure it answers the
// client itself and reports false.
func (b *Buffer) readBody(x *balancer.Exchange) (*store, bool) {
	s := &store{b: b}
	buf := make([]byte, 32<<10)
	for {
		n, err := x.Body.Read(buf)
		if n > 0 {
			if k, werr := s.write(buf[:n]); werr != nil {
				// Nowhere to hold the rest: the app gets what is held,
				// then the rest as the client sends it, unbuffered.
				b.cannotHold("a request body", werr)
				x.Body = io.MultiReader(s.reader(), bytes.NewReader(buf[k:n]), x.Body)
				return s, true
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			s.release()
			bodyError(x, err)
			return nil, false
		}
	}
	x.Body = s.reader()
	x.Req.ContentLength = s.size()
	x.Req.Chunked = false
	return s, true
}

// bodyError answers a request whose body could not be read.
func bodyError(x *balancer.Exchange, err error) {
	x.Refuse()
	var he *h1.Error
	var ne interface{ Timeout() bool }
	switch {
	case errors.As(err, &he):
		answer(x.W, he.Status, "berth: "+he.Reason+"\n")
	case errors.Is(err, h1.ErrBodyTooLarge):
		answer(x.W, 413, "berth: the request body is larger than this server accepts.\n")
	case errors.As(err, &ne) && ne.Timeout():
		answer(x.W, 408, "berth: the request body did not arrive in time.\n")
	default:
		// The client is gone: nobody is left to answer. The front door
		// notices when it writes.
		answer(x.W, 400, "berth: the request body ended early.\n")
	}
}

func answer(w balancer.ResponseWriter, status int, text string) {
	resp := h1.Response{Status: status, ContentLength: int64(len(text)), Header: h1.Fields{
		{Name: []byte("Content-Type"), Value: []byte("text/plain; charset=utf-8")},
		{Name: []byte("Cache-Control"), Value: []byte("no-store")},
	}}
	if w.WriteHead(&resp) == nil {
		io.WriteString(w, text)
	}
}
