package limits

import (
	"errors"
	"fmt"
	"io"
	"strconv"

	"berth/balancer"
	"berth/balancer/h1"
)

// BodyConfig configures Body. Next is required.
type BodyConfig struct {
	// Max is the largest request body accepted, in bytes. If zero, no
	// limit.
	Max int64
	// Next is the rest of the chain.
	Next balancer.Handler
}

// Body is the chain link that refuses request bodies over a size.
type Body struct {
	cfg  BodyConfig
	text string // the 413 answer
}

// NewBody returns the link.
func NewBody(cfg BodyConfig) (*Body, error) {
	if cfg.Next == nil {
		return nil, errors.New("limits: BodyConfig.Next is nil")
	}
	if cfg.Max < 0 {
		return nil, fmt.Errorf("limits: negative body size %d", cfg.Max)
	}
	return &Body{cfg: cfg, text: "berth: the request body is larger than the " + FormatSize(cfg.Max) + " this server accepts.\n"}, nil
}

// ServeExchange implements balancer.Handler.
func (b *Body) ServeExchange(x *balancer.Exchange) {
	switch {
	case b.cfg.Max == 0 || x.Req.ContentLength == 0:
	case x.Req.ContentLength > b.cfg.Max:
		x.Refuse()
		resp := h1.Response{Status: 413, ContentLength: int64(len(b.text)), Header: h1.Fields{
			{Name: []byte("Content-Type"), Value: []byte("text/plain; charset=utf-8")},
			{Name: []byte("Cache-Control"), Value: []byte("no-store")},
		}}
		if x.W.WriteHead(&resp) == nil {
			io.WriteString(x.W, b.text)
		}
		return
	case x.Req.ContentLength < 0:
		x.Body = &capped{r: x.Body, left: b.cfg.Max}
	}
	b.cfg.Next.ServeExchange(x)
}

// capped fails with h1.ErrBodyTooLarge (answered 413 by the proxy when
// nothing reached the client yet) once more than its limit was read.
type capped struct {
	r    io.Reader
	left int64
}

func (c *capped) Read(p []byte) (int, error) {
	if c.left < 0 {
		return 0, h1.ErrBodyTooLarge
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return n - 1, h1.ErrBodyTooLarge // the byte past the limit is not given
	}
	return n, err
}

// FormatSize writes a byte count the way --max-body-size takes it: 10M,
// 1G, 512K, or bytes.
func FormatSize(n int64) string {
	for _, u := range []struct {
		s string
		v int64
	}{{"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if n >= u.v && n%u.v == 0 {
			return strconv.FormatInt(n/u.v, 10) + u.s
		}
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// ParseSize reads a byte count: digits with an optional K, M or G
// (powers of 1024; a trailing B and lower case are accepted).
func ParseSize(s string) (int64, error) {
	t := s
	if len(t) > 1 && (t[len(t)-1] == 'B' || t[len(t)-1] == 'b') {
		t = t[:len(t)-1]
	}
	mult := int64(1)
	if len(t) > 0 {
		switch t[len(t)-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		}
		if mult > 1 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want bytes, or a number with K, M or G", s)
	}
	return n * mult, nil
}
