// Package cache is berth's response cache: a shared HTTP cache (RFC 9111)
// in front of the app, one link of the balancer's handler chain.
//
//	c, err := cache.New(cache.Config{VaryCookies: []string{"session"}})
//	chain := c.Wrap(proxy)
//
// It is safe by default: it stores only what the app opts into with
// explicit freshness, and never what could belong to one client.
//
//   - Stored: responses to GET (HEAD is answered from them) with status
//     200, 203, 204, 300, 301, 308, 404, 405, 410, 414 or 501 (RFC 9110
//     §15.1) and Cache-Control s-maxage or max-age, or Expires. s-maxage
//     beats max-age beats Expires. No heuristic freshness.
//   - Never stored: no-store, private (qualified or not), any Set-Cookie,
//     Vary: *, responses to requests with Authorization unless the response
//     says public, s-maxage or must-revalidate (RFC 9111 §3.5), bodies over
//     Config.MaxEntry (they stream through), and bodies whose end the cache
//     cannot verify (no Content-Length, and the link below did not call
//     BodyComplete).
//   - no-cache: stored when it has a validator, and revalidated with the
//     app before every use.
//   - The key is the scheme, the Host field and the request-target, never
//     X-Forwarded-Host or any other field unless the response's Vary names
//     it. Accept-Encoding is normalized to the set of codings accepted.
//     Config.VaryCookies adds the values of the named cookies to every key;
//     other cookies are ignored (a response that must differ by the whole
//     Cookie field says Vary: Cookie, or private).
//
// Concurrent misses for one key send one request to the app; the others
// wait (Config.CoalesceWait at most) and then look the store up again, so a
// waiter is never handed another client's response: if it was not stored,
// each waiter asks the app itself.
//
// Stale entries are revalidated with their ETag or Last-Modified. Within a
// response's stale-while-revalidate window every request gets the stale
// entry at once, and the first starts a refresh in the background
// (balancer.Do): one per entry at a time, leading the key's coalescing
// flight, bounded by Config.RefreshTimeout, made of the entry's key alone
// (GET, Host, target, the Vary'd fields and the Config.VaryCookies
// cookies; never the client's Authorization or other cookies). An entry
// that varies on Cookie or Authorization is refreshed by a client's own
// request instead. Close ends the refreshes and waits for them. An app error
// (500, 502, 503, 504) within stale-if-error, and an outage (502, 503,
// 504, or Config.Unavailable) within Config.StaleOnOutage, are answered
// with the stale entry — unless the response said must-revalidate,
// proxy-revalidate, no-cache or (for the outage grace) s-maxage.
//
// A successful unsafe method (POST, PUT, DELETE, …) invalidates its target
// and a same-origin Location or Content-Location (RFC 9111 §4.4).
//
// Every response that passes through carries a Cache-Status field (RFC
// 9211): "berth; hit", "berth; fwd=miss" (with "stored" or "collapsed"),
// "berth; fwd=stale", "berth; fwd=bypass"; a stale answer adds a negative
// ttl, and fwd-status when the app's error was replaced ("berth; fwd=stale;
// ttl=-N" without fwd-status: this request started a background refresh).
//
// The store holds Config.MaxBytes (64 MiB) and evicts by CLOCK, an LRU
// approximation whose hits only set a bit under a read lock: a hit takes
// no worker, no write lock and no allocation.
package cache
