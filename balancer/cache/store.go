package cache

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"berth/balancer/h1"
)

// entry is one stored response. Everything but the atomics is set before
// the entry is inserted and never changed after: readers use it without
// the store's lock, so it owns every byte it points to.
type entry struct {
	primary string // primary key (see key.go)
	variant string // variant key

	status int
	header h1.Fields // owned copies, without hop-by-hop fields
	notMod h1.Fields // the subset of header a 304 carries
	body   []byte

	etag, lastModified []byte // aliases of values in header

	respTime   time.Time     // when the response arrived (§4.2.3 response_time)
	initialAge time.Duration // corrected initial age (§4.2.3)
	lifetime   time.Duration // freshness lifetime (§4.2.1)
	swr, sie   time.Duration // RFC 5861 windows after lifetime
	noStale    bool          // never served stale
	outageOK   bool          // may be served stale when the app cannot answer
	revalidate bool          // no-cache: validate before every use

	size int64

	ref        atomic.Uint32 // CLOCK reference bit, set by every hit
	refreshing atomic.Bool   // a request is refreshing it (stale-while-revalidate)
	idx        int           // position in store.ring; protected by store.mu
}

// age is the entry's current age (§4.2.3).
func (e *entry) age(now time.Time) time.Duration {
	return e.initialAge + now.Sub(e.respTime)
}

// useless reports whether an entry can no longer serve anything: stale
// past every window it has, and without a validator to revalidate with.
func (e *entry) useless(now time.Time, outage time.Duration) bool {
	stale := e.age(now) - e.lifetime
	if stale < 0 || e.etag != nil || e.lastModified != nil {
		return false
	}
	if e.noStale {
		return true
	}
	w := max(e.swr, e.sie)
	if e.outageOK {
		w = max(w, outage)
	}
	return stale >= w
}

// entryOverhead is what an entry costs beyond its bytes, for the budget.
const entryOverhead = 256

// maxVariants bounds the variants of one resource; the oldest goes first.
const maxVariants = 32

// node holds the variants of one resource (one primary key).
type node struct {
	vary     []string // the Vary names of the latest stored response
	variants []*entry
}

// store holds the entries under a byte budget, evicting by CLOCK (an LRU
// approximation whose hits only set a bit under a read lock), and the
// flights that coalesce concurrent misses.
type store struct {
	maxBytes int64
	outage   time.Duration // the cache's stale grace, to tell useless entries

	mu    sync.RWMutex // protects m, ring, hand, bytes
	m     map[string]*node
	ring  []*entry
	hand  int
	bytes int64

	nBytes, nEntries atomic.Int64 // copies of bytes and len(ring) for Stats

	fmu     sync.Mutex // protects flights, passes
	flights map[string]*flight
	// passes holds keys whose last fetched response could not be stored,
	// until when: requests for them go to the app at once instead of
	// queueing behind one another's flight (Varnish's hit-for-miss). A
	// hot URL that is never cacheable would otherwise be served one
	// request at a time.
	passes map[string]time.Time
}

// passTTL is how long a key whose response could not be stored skips
// coalescing.
const passTTL = 10 * time.Second

// maxPasses bounds passes; past it, expired markers are dropped, and if
// none are, all of them.
const maxPasses = 10000

func newStore(maxBytes int64, outage time.Duration) *store {
	return &store{
		maxBytes: maxBytes,
		outage:   outage,
		m:        make(map[string]*node),
		flights:  make(map[string]*flight),
		passes:   make(map[string]time.Time),
	}
}

// lookup finds the entry for a primary key and a request's fields. It
// returns the variant key it computed (appended to vbuf), and false when
// the request cannot be keyed (an ambiguous cookie).
func (s *store) lookup(primary []byte, fs h1.Fields, cookies []string, vbuf []byte) (*entry, []byte, bool) {
	s.mu.RLock()
	n := s.m[string(primary)]
	var vary []string
	if n != nil {
		vary = n.vary
	}
	variant, ok := appendVariant(vbuf, fs, cookies, vary)
	if !ok || n == nil {
		s.mu.RUnlock()
		return nil, variant, ok
	}
	for _, e := range n.variants {
		if e.variant == string(variant) {
			if e.ref.Load() == 0 {
				e.ref.Store(1)
			}
			s.mu.RUnlock()
			return e, variant, true
		}
	}
	s.mu.RUnlock()
	return nil, variant, true
}

// varyOf returns the Vary names e's variant key was computed with: its
// resource's, or, once e is no longer stored, its own.
func (s *store) varyOf(e *entry) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if n := s.m[e.primary]; n != nil {
		return n.vary
	}
	return varyNames(e.header)
}

// insert stores e, whose variant key was computed with vary, replacing
// the entry of the same key and evicting until the budget holds. An entry
// larger than the whole budget is not stored.
func (s *store) insert(e *entry, vary []string, now time.Time) bool {
	if e.size > s.maxBytes {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.m[e.primary]
	if n == nil {
		n = &node{}
		s.m[e.primary] = n
	}
	if !equalStrings(n.vary, vary) {
		// The resource now varies on other fields (§4.1: the most
		// recent response's Vary wins); the old variants cannot be
		// matched any more.
		for len(n.variants) > 0 {
			s.removeLocked(n.variants[0])
		}
		n = &node{vary: vary}
		s.m[e.primary] = n
	}
	for _, old := range n.variants {
		if old.variant == e.variant {
			s.removeLocked(old)
			break
		}
	}
	if len(n.variants) >= maxVariants {
		s.removeLocked(n.variants[0])
	}
	if s.m[e.primary] != n { // removeLocked dropped the emptied node
		s.m[e.primary] = n
	}
	n.variants = append(n.variants, e)
	e.idx = len(s.ring)
	s.ring = append(s.ring, e)
	s.bytes += e.size
	s.evictLocked(now, e)
	s.nBytes.Store(s.bytes)
	s.nEntries.Store(int64(len(s.ring)))
	return true
}

// evictLocked removes entries until the budget holds: useless ones at
// once, others when the clock hand finds their reference bit clear. keep
// is the entry just inserted.
func (s *store) evictLocked(now time.Time, keep *entry) {
	for s.bytes > s.maxBytes && len(s.ring) > 1 {
		if s.hand >= len(s.ring) {
			s.hand = 0
		}
		e := s.ring[s.hand]
		if e == keep {
			s.hand++
			continue
		}
		if e.ref.Load() != 0 && !e.useless(now, s.outage) {
			e.ref.Store(0)
			s.hand++
			continue
		}
		s.removeLocked(e) // moves the last entry to s.hand
	}
}

// removeLocked takes e out of the ring and its node.
func (s *store) removeLocked(e *entry) {
	i := e.idx
	if i < 0 || i >= len(s.ring) || s.ring[i] != e {
		return
	}
	last := len(s.ring) - 1
	s.ring[i] = s.ring[last]
	s.ring[i].idx = i
	s.ring[last] = nil
	s.ring = s.ring[:last]
	e.idx = -1
	s.bytes -= e.size
	if n := s.m[e.primary]; n != nil {
		for j, v := range n.variants {
			if v == e {
				n.variants = append(n.variants[:j], n.variants[j+1:]...)
				break
			}
		}
		if len(n.variants) == 0 {
			delete(s.m, e.primary)
		}
	}
	s.nBytes.Store(s.bytes)
	s.nEntries.Store(int64(len(s.ring)))
}

// remove takes e out if it is still stored.
func (s *store) remove(e *entry) {
	s.mu.Lock()
	s.removeLocked(e)
	s.mu.Unlock()
}

// invalidate removes every variant of a primary key and reports how many.
func (s *store) invalidate(primary string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.m[primary]
	if n == nil {
		return 0
	}
	c := len(n.variants)
	for len(n.variants) > 0 {
		s.removeLocked(n.variants[0])
	}
	delete(s.m, primary)
	return c
}

// purge removes the entries whose host is host (any host if empty) and
// whose path starts with prefix, and reports how many.
func (s *store) purge(host, prefix string) int {
	host = strings.ToLower(host)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := 0
	for k, n := range s.m {
		h, p := splitKey(k)
		if host != "" && h != host && h != strings.TrimSuffix(strings.TrimSuffix(host, ":80"), ":443") {
			continue
		}
		if !strings.HasPrefix(p, prefix) {
			continue
		}
		c += len(n.variants)
		for len(n.variants) > 0 {
			s.removeLocked(n.variants[0])
		}
		delete(s.m, k)
	}
	return c
}

// flight is one request to the app that concurrent misses for the same
// key wait for.
type flight struct {
	done chan struct{} // closed when the response is stored or known not storable
	// Set before done is closed:
	stored    bool // the response was stored
	errStatus int  // the app failed with this status and the leader got a stale entry
}

// join returns the flight for key and whether the caller leads it (and
// must call land); a nil flight means the key's responses were not
// storable lately: fetch without coalescing.
func (s *store) join(key []byte, now time.Time) (f *flight, fkey string, leader bool) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if until, ok := s.passes[string(key)]; ok {
		if now.Before(until) {
			return nil, "", false
		}
		delete(s.passes, string(key))
	}
	if f := s.flights[string(key)]; f != nil {
		return f, "", false
	}
	f = &flight{done: make(chan struct{})}
	fkey = string(key)
	s.flights[fkey] = f
	return f, fkey, true
}

// land ends a flight: its waiters look the store up again.
func (s *store) land(key string, f *flight, stored bool) {
	now := time.Now()
	s.fmu.Lock()
	if s.flights[key] == f {
		delete(s.flights, key)
	}
	if stored {
		delete(s.passes, key)
	} else {
		if len(s.passes) >= maxPasses {
			for k, until := range s.passes {
				if !now.Before(until) {
					delete(s.passes, k)
				}
			}
			if len(s.passes) >= maxPasses {
				clear(s.passes)
			}
		}
		s.passes[key] = now.Add(passTTL)
	}
	s.fmu.Unlock()
	f.stored = stored
	close(f.done)
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
