package buffer

import (
	"io"

	"berth/balancer"
	"berth/balancer/h1"
)

// heldWriter is the ResponseWriter the rest of the chain writes to: it
// passes a response through or holds it until drain.
type heldWriter struct {
	b       *Buffer
	real    balancer.ResponseWriter
	head    bool // a HEAD request
	holding bool // the final head and body are held
	passing bool // the final head went to the client
	resp    h1.Response
	mem     []byte // backs the copied head
	body    store
	ended   bool // the proxy read the whole body (BodyComplete)
}

// BodyComplete passes the proxy's word that the body was read whole on
// to the writer outside (the response cache), once what is held went out.
func (h *heldWriter) BodyComplete() {
	if h.holding {
		h.ended = true
		return
	}
	if bc, ok := h.real.(balancer.BodyCompleter); ok {
		bc.BodyComplete()
	}
}

func (h *heldWriter) WriteHead(resp *h1.Response) error {
	switch {
	case resp.Status/100 == 1 && resp.Status != 101, // interim: before any final head
		h.holding, h.passing: // a second final head: the front door refuses it
		return h.real.WriteHead(resp)
	case h.head || h1.NoBody(resp.Status) || resp.Status == 101 || resp.ContentLength <= PassBelow:
		h.passing = true
		return h.real.WriteHead(resp)
	}
	// Held: copy the head out of the worker connection's buffer.
	h.holding = true
	h.body = store{b: h.b}
	h.mem = h.mem[:0]
	h.resp = h1.Response{Status: resp.Status, Minor: resp.Minor, ContentLength: resp.ContentLength, KeepAlive: resp.KeepAlive, Header: h.resp.Header[:0]}
	h.resp.Reason = h.copy(resp.Reason)
	for _, f := range resp.Header {
		h.resp.Header = append(h.resp.Header, h1.Field{Name: h.copy(f.Name), Value: h.copy(f.Value)})
	}
	return nil
}

func (h *heldWriter) copy(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	start := len(h.mem)
	h.mem = append(h.mem, b...)
	return h.mem[start:len(h.mem):len(h.mem)]
}

func (h *heldWriter) Write(p []byte) (int, error) {
	if !h.holding {
		return h.real.Write(p)
	}
	held := 0
	if h.body.size()+int64(len(p)) <= h.b.cfg.MaxFileBytes+int64(h.b.cfg.MemoryBytes) {
		k, err := h.body.write(p)
		if err == nil {
			return len(p), nil
		}
		h.b.cannotHold("a response", err)
		held = k // goes out with what was held before
	}
	// Too large to hold, or nowhere to hold it: send what is held, pass
	// the rest.
	if err := h.flushHeld(); err != nil {
		return 0, err
	}
	n, err := h.real.Write(p[held:])
	return held + n, err
}

func (h *heldWriter) Flush() error {
	if h.holding {
		return nil
	}
	return h.real.Flush()
}

// ReadFrom keeps the front door's sendfile path for a passing body (a
// static file behind this link).
func (h *heldWriter) ReadFrom(r io.Reader) (int64, error) {
	if !h.holding {
		return io.Copy(h.real, r)
	}
	return io.Copy(writerOnly{h}, r)
}

type writerOnly struct{ io.Writer }

// flushHeld sends the held head and body and switches to passing.
func (h *heldWriter) flushHeld() error {
	h.holding, h.passing = false, true
	defer h.body.release()
	if err := h.real.WriteHead(&h.resp); err != nil {
		return err
	}
	s := &h.body
	if s.mem != nil {
		if _, err := h.real.Write(*s.mem); err != nil {
			return err
		}
	}
	if s.file == nil {
		return nil
	}
	// From the file by sendfile(2), through the front door's ReadFrom.
	if _, err := s.file.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, err := io.Copy(h.real, &io.LimitedReader{R: s.file, N: s.fn})
	return err
}

// drain sends a held response to the client, after the rest of the chain
// returned (and the worker was released).
func (h *heldWriter) drain() {
	if h.holding {
		if h.flushHeld() == nil && h.ended {
			if bc, ok := h.real.(balancer.BodyCompleter); ok {
				bc.BodyComplete()
			}
		}
	}
	h.body.release()
}
