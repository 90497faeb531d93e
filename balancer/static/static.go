package static

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"berth/balancer"
	"berth/balancer/h1"
)

// Config configures Files. Next and Dir or Root are required.
type Config struct {
	// Dir is the directory served, e.g. the app's public/.
	Dir string
	// Root, if not nil, is the directory served instead of Dir, already
	// open (e.g. through the app directory's own os.Root, so that a
	// public/ that is a symbolic link cannot point outside the app).
	// Files takes it over: Close closes it.
	Root *os.Root
	// Next answers every request Files does not: the rest of the chain.
	Next balancer.Handler
	// MaxAge, if positive, is sent as "Cache-Control: public,
	// max-age=N, immutable" with files whose names carry a content hash
	// (see Fingerprinted). If zero, no Cache-Control is sent and clients
	// revalidate with the ETag.
	MaxAge time.Duration
	// SiblingTTL is how long the presence of a file's precompressed
	// siblings (NAME.br, NAME.gz), and the absence of a file, is
	// remembered: a new sibling or file is seen at most this late. If
	// zero, DefaultSiblingTTL; if negative, they are looked up on every
	// request.
	SiblingTTL time.Duration
	// Log receives files that exist but cannot be served. If nil,
	// nothing is logged.
	Log *slog.Logger
}

// DefaultSiblingTTL is Config.SiblingTTL's default. Looking the siblings
// up costs four system calls per request through the os.Root (an openat
// and close of the directory, a failing fstatat, per sibling): a third
// of a small file's.
const DefaultSiblingTTL = time.Second

// maxSiblings bounds the sibling cache; it is emptied when full.
const maxSiblings = 4096

// Files is the static-file link of the handler chain.
type Files struct {
	cfg  Config
	root *os.Root
	log  *slog.Logger
	// immutable is the Cache-Control value for fingerprinted names; nil
	// when MaxAge is zero.
	immutable []byte
	replies   sync.Pool // *reply

	mu       sync.RWMutex // protects siblings, missing, contents, contentBytes
	siblings map[string]siblingInfo
	// missing remembers for SiblingTTL the names that are no file here,
	// so that the requests for the app (most of them) cost no openat
	// each: a file deployed later is served at most SiblingTTL late. A
	// key ending in '/' is a first path segment that is no directory
	// here ("api/"): every name under it is missing, however many the
	// app's routes make.
	missing map[string]time.Time
	// contents holds small files' bytes for SiblingTTL, so that serving
	// one costs no open, stat, read or close, and leaves in the same
	// write as its head; contentBytes is their total.
	contents     map[string]content
	contentBytes int64
}

// content is a small file as it was read at a time.
type content struct {
	data []byte
	st   fs.FileInfo
	at   time.Time
}

// Bounds of the small-file cache: files up to maxCachedFile, up to
// maxCachedBytes in all (the cache is emptied when it would grow past).
const (
	maxCachedFile  = 64 << 10
	maxCachedBytes = 16 << 20
)

// source is a file to answer with: its bytes when cached, else the open
// file (the caller closes it).
type source struct {
	data []byte
	file *os.File
	st   fs.FileInfo
}

func (s source) close() {
	if s.file != nil {
		s.file.Close()
	}
}

// siblingInfo is which precompressed siblings a file had at a time.
type siblingInfo struct {
	has [len(encodings)]bool
	at  time.Time
}

// New opens cfg.Dir and returns the link. The directory must exist; the
// caller decides whether a missing one is an error or means "no static
// files" (see os.ErrNotExist).
func New(cfg Config) (*Files, error) {
	if cfg.Next == nil {
		return nil, errors.New("static: Config.Next is nil")
	}
	if cfg.MaxAge < 0 {
		return nil, fmt.Errorf("static: negative max age %s", cfg.MaxAge)
	}
	root := cfg.Root
	if root == nil {
		var err error
		if root, err = os.OpenRoot(cfg.Dir); err != nil {
			return nil, fmt.Errorf("static files directory: %w", err)
		}
	}
	if cfg.SiblingTTL == 0 {
		cfg.SiblingTTL = DefaultSiblingTTL
	}
	f := &Files{cfg: cfg, root: root, log: cfg.Log, siblings: map[string]siblingInfo{}, missing: map[string]time.Time{}, contents: map[string]content{}}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxAge > 0 {
		f.immutable = fmt.Appendf(nil, "public, max-age=%d, immutable", int64(cfg.MaxAge/time.Second))
	}
	f.replies.New = func() any { return &reply{} }
	return f, nil
}

// Close releases the directory.
func (f *Files) Close() error { return f.root.Close() }

// reply is the response being composed; pooled.
type reply struct {
	resp    h1.Response
	scratch []byte // backs the composed field values
}

var (
	methodGET  = []byte("GET")
	methodHEAD = []byte("HEAD")

	hAcceptRanges    = []byte("Accept-Ranges")
	hCacheControl    = []byte("Cache-Control")
	hContentEncoding = []byte("Content-Encoding")
	hContentRange    = []byte("Content-Range")
	hContentType     = []byte("Content-Type")
	hETag            = []byte("ETag")
	hLastModified    = []byte("Last-Modified")
	hVary            = []byte("Vary")

	vBytes          = []byte("bytes")
	vAcceptEncoding = []byte("Accept-Encoding")
	vOctetStream    = []byte("application/octet-stream")
)

// encodings are the precompressed siblings looked for, best first.
var encodings = [...]struct {
	ext, token string
	value      []byte
}{
	{".br", "br", []byte("br")},
	{".gz", "gzip", []byte("gzip")},
}

// ServeExchange implements balancer.Handler.
func (f *Files) ServeExchange(x *balancer.Exchange) {
	req := x.Req
	head := bytes.Equal(req.Method, methodHEAD)
	if !head && !bytes.Equal(req.Method, methodGET) || req.Upgrade {
		f.cfg.Next.ServeExchange(x)
		return
	}
	var nb [128]byte
	bname, ok := cleanPath(nb[:0], req.Path())
	if !ok {
		f.cfg.Next.ServeExchange(x)
		return
	}
	now := x.Now()
	if f.knownMissing(bname, now) {
		f.cfg.Next.ServeExchange(x)
		return
	}
	name := string(bname)
	src, ok := f.get(name, now)
	if !ok {
		f.rememberMissing(name, now)
		f.cfg.Next.ServeExchange(x)
		return
	}
	f.serve(x, name, src, head, now)
}

// serve answers x from the file name, src. Its own function: its defers
// are too many for the compiler to open-code, and a function holding such
// defers runs the runtime's slow defer path at every return, which the
// requests ServeExchange passes on (every cache hit, every app route)
// should not pay.
func (f *Files) serve(x *balancer.Exchange, name string, src source, head bool, now time.Time) {
	req := x.Req
	defer func() { src.close() }()

	// A precompressed sibling the client accepts replaces the file; any
	// sibling at all makes the answer depend on Accept-Encoding.
	var enc []byte
	vary := false
	if ext := path.Ext(name); ext != ".br" && ext != ".gz" {
		has := f.siblingsOf(name, now)
		ae := req.Header.Get("Accept-Encoding")
		for i, e := range encodings {
			if !has[i] {
				continue
			}
			vary = true
			if ae != nil && accepts(ae, e.token) {
				if sib, ok := f.get(name+e.ext, now); ok {
					src.close()
					src, enc = sib, e.value
					break
				}
			}
		}
	}

	r := f.replies.Get().(*reply)
	defer f.replies.Put(r)
	r.scratch = r.scratch[:0]
	r.resp = h1.Response{Header: r.resp.Header[:0]}
	resp := &r.resp

	mod := src.st.ModTime()
	size := src.st.Size()
	r.scratch = append(r.scratch, '"')
	r.scratch = strconv.AppendInt(r.scratch, mod.UnixNano(), 36)
	r.scratch = append(r.scratch, '-')
	r.scratch = strconv.AppendInt(r.scratch, size, 36)
	if enc != nil {
		r.scratch = append(r.scratch, '-')
		r.scratch = append(r.scratch, enc...)
	}
	r.scratch = append(r.scratch, '"')
	etag := r.scratch
	start := len(r.scratch)
	r.scratch = mod.UTC().AppendFormat(r.scratch, http.TimeFormat)
	lastMod := r.scratch[start:]

	// Fields every answer about this file carries, 304 included.
	resp.Header = append(resp.Header, h1.Field{Name: hETag, Value: etag}, h1.Field{Name: hLastModified, Value: lastMod})
	if vary {
		resp.Header = append(resp.Header, h1.Field{Name: hVary, Value: vAcceptEncoding})
	}
	if f.immutable != nil && Fingerprinted(name) {
		resp.Header = append(resp.Header, h1.Field{Name: hCacheControl, Value: f.immutable})
	}

	if notModified(req.Header, etag, mod) {
		resp.Status = 304
		resp.ContentLength = 0
		x.W.WriteHead(resp)
		return
	}

	ctype := vOctetStream
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		start := len(r.scratch)
		r.scratch = append(r.scratch, t...)
		ctype = r.scratch[start:]
	}
	resp.Header = append(resp.Header, h1.Field{Name: hContentType, Value: ctype}, h1.Field{Name: hAcceptRanges, Value: vBytes})
	if enc != nil {
		resp.Header = append(resp.Header, h1.Field{Name: hContentEncoding, Value: enc})
	}

	resp.Status = 200
	off, n := int64(0), size
	if rng := req.Header.Get("Range"); rng != nil && ifRange(req.Header.Get("If-Range"), etag, lastMod) {
		o, l, ok := parseRange(rng, size)
		switch {
		case !ok:
			// Malformed or several ranges: the whole file (RFC 9110
			// §14.2 lets a server ignore Range).
		case l < 0:
			start := len(r.scratch)
			r.scratch = append(r.scratch, "bytes */"...)
			r.scratch = strconv.AppendInt(r.scratch, size, 10)
			text := "berth: the requested range is not satisfiable\n"
			resp.Status = 416
			resp.ContentLength = int64(len(text))
			resp.Header = append(resp.Header[:0], h1.Field{Name: hContentRange, Value: r.scratch[start:]},
				h1.Field{Name: hContentType, Value: []byte("text/plain; charset=utf-8")})
			if x.W.WriteHead(resp) == nil {
				io.WriteString(x.W, text)
			}
			return
		default:
			off, n = o, l
			resp.Status = 206
			start := len(r.scratch)
			r.scratch = append(r.scratch, "bytes "...)
			r.scratch = strconv.AppendInt(r.scratch, o, 10)
			r.scratch = append(r.scratch, '-')
			r.scratch = strconv.AppendInt(r.scratch, o+l-1, 10)
			r.scratch = append(r.scratch, '/')
			r.scratch = strconv.AppendInt(r.scratch, size, 10)
			resp.Header = append(resp.Header, h1.Field{Name: hContentRange, Value: r.scratch[start:]})
		}
	}
	resp.ContentLength = n
	if err := x.W.WriteHead(resp); err != nil || head || n == 0 {
		return
	}
	if src.data != nil {
		x.W.Write(src.data[off : off+n])
		return
	}
	if off > 0 {
		if _, err := src.file.Seek(off, io.SeekStart); err != nil {
			return // the front door closes a response cut short
		}
	}
	if _, err := io.Copy(x.W, &io.LimitedReader{R: src.file, N: n}); err != nil {
		f.log.Debug("static file not sent whole", "file", name, "err", err)
	}
}

// get returns the file name: a small one from the cache while its entry
// is younger than SiblingTTL at now (a changed file is seen at most that
// late), else opened.
func (f *Files) get(name string, now time.Time) (source, bool) {
	if f.cfg.SiblingTTL > 0 {
		f.mu.RLock()
		c, ok := f.contents[name]
		f.mu.RUnlock()
		if ok && now.Sub(c.at) < f.cfg.SiblingTTL {
			return source{data: c.data, st: c.st}, true
		}
	}
	file, st, ok := f.open(name)
	if !ok {
		return source{}, false
	}
	if f.cfg.SiblingTTL <= 0 || st.Size() > maxCachedFile {
		return source{file: file, st: st}, true
	}
	data := make([]byte, st.Size())
	if _, err := io.ReadFull(file, data); err != nil {
		// Changed while read: serve it from the file as it is now.
		if _, err := file.Seek(0, io.SeekStart); err != nil {
			file.Close()
			return source{}, false
		}
		return source{file: file, st: st}, true
	}
	file.Close()
	f.mu.Lock()
	if old, ok := f.contents[name]; ok {
		f.contentBytes -= int64(len(old.data))
	}
	if f.contentBytes+int64(len(data)) > maxCachedBytes || len(f.contents) >= maxSiblings {
		clear(f.contents)
		f.contentBytes = 0
	}
	f.contents[name] = content{data: data, st: st, at: now}
	f.contentBytes += int64(len(data))
	f.mu.Unlock()
	return source{data: data, st: st}, true
}

// siblingsOf reports which precompressed siblings name has, from the
// cache while its entry is younger than SiblingTTL at now.
func (f *Files) siblingsOf(name string, now time.Time) [len(encodings)]bool {
	if f.cfg.SiblingTTL > 0 {
		f.mu.RLock()
		si, ok := f.siblings[name]
		f.mu.RUnlock()
		if ok && now.Sub(si.at) < f.cfg.SiblingTTL {
			return si.has
		}
	}
	si := siblingInfo{at: now}
	for i, e := range encodings {
		if st, err := f.root.Stat(name + e.ext); err == nil && st.Mode().IsRegular() {
			si.has[i] = true
		}
	}
	if f.cfg.SiblingTTL > 0 {
		f.mu.Lock()
		if len(f.siblings) >= maxSiblings {
			clear(f.siblings)
		}
		f.siblings[name] = si
		f.mu.Unlock()
	}
	return si.has
}

// open opens name under the root if it is a regular file. A name whose
// last segment is a directory is not served (no listings).
func (f *Files) open(name string) (*os.File, fs.FileInfo, bool) {
	file, err := f.root.Open(name)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) && !isNotDir(err) {
			f.log.Debug("static file not opened", "file", name, "err", err)
		}
		return nil, nil, false
	}
	st, err := file.Stat()
	if err != nil || !st.Mode().IsRegular() {
		file.Close()
		return nil, nil, false
	}
	return file, st, true
}

// knownMissing reports whether name, or the directory of its first
// segment, was found to be missing less than SiblingTTL before now.
func (f *Files) knownMissing(name []byte, now time.Time) bool {
	if f.cfg.SiblingTTL < 0 {
		return false
	}
	f.mu.RLock()
	at, ok := f.missing[string(name)]
	if !ok {
		if i := bytes.IndexByte(name, '/'); i > 0 {
			at, ok = f.missing[string(name[:i+1])]
		}
	}
	f.mu.RUnlock()
	return ok && now.Sub(at) < f.cfg.SiblingTTL
}

// rememberMissing remembers that name is no file as of now; when its
// first segment is no directory either, it remembers that instead (one
// entry for all of an app route's names, such as /api/users/1 …
// /api/users/99999).
func (f *Files) rememberMissing(name string, now time.Time) {
	if f.cfg.SiblingTTL < 0 {
		return
	}
	if i := strings.IndexByte(name, '/'); i > 0 {
		if _, err := f.root.Stat(name[:i]); errors.Is(err, fs.ErrNotExist) {
			name = name[:i+1]
		}
	}
	f.mu.Lock()
	if len(f.missing) >= maxSiblings {
		clear(f.missing)
	}
	f.missing[name] = now
	f.mu.Unlock()
}

func isNotDir(err error) bool { return errors.Is(err, syscall.ENOTDIR) }
