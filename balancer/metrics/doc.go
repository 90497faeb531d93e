// Package metrics is berth's Prometheus instrumentation: a link of the
// handler chain that counts and times requests, and collectors that read
// the pool and the workers at scrape time. Each berth has its own
// registry (no global state); the status listener (balancer/health)
// serves it at /metrics, and the admin socket at /metrics for
// `berth metrics`.
//
// The link is built for the request path: the series of a worker are
// made once, the first time it serves (children pre-curried for every
// method and status class), and a request then costs a few atomic adds
// and no allocation. With metrics off, cmd adds no link at all.
//
// Series (all prefixed berth_):
//
//	requests_total{worker,method,code}     counter; code is 1xx…5xx
//	request_duration_seconds               histogram, whole request in berth
//	request_queue_seconds                  histogram, wait for a worker
//	queue_length                           gauge
//	workers{state}                         gauge: wanted, ready, busy, held (out of rotation)
//	worker_inflight{worker}                gauge
//	worker_events_total{event}             counter: spawn and exit (cmd counts them as the
//	                                       pool gains and loses workers); spawn_failure,
//	                                       restart and recycle once the spawner reports them
//	worker_resident_memory_bytes{worker}   gauge, from /proc
//	worker_cpu_seconds_total{worker}       counter, from /proc
//	worker_recycles_total                  counter: workers replaced for a limit
//	worker_restarts{worker}                gauge: restarts of a ready worker's slot
//	draining                               gauge, 1 while draining
package metrics
