package main

import "testing"

// TestGoroutineEngine runs tests of what users rely on most with
// `--engine goroutine`, a goroutine per connection (every other test runs
// the default engine, the event loops of balancer/loop): serving and
// balancing, forwarded headers, a graceful stop that loses nothing, a
// poison request costing one worker, WebSockets, connection limits,
// hostile input, slow clients, static files and mixed traffic.
func TestGoroutineEngine(t *testing.T) {
	engineArgs = []string{"--engine", "goroutine"}
	t.Cleanup(func() { engineArgs = nil })
	for name, test := range map[string]func(*testing.T){
		"HelloTwoWorkersBothServe":    TestHelloTwoWorkersBothServe,
		"ForwardedHeaders":            TestForwardedHeaders,
		"GracefulShutdown":            TestGracefulShutdown,
		"PoisonRequestKillsOneWorker": TestPoisonRequestKillsOneWorker,
		"SocketIOWebsocket":           TestSocketIOWebsocketThroughBerth,
		"ClientLimits":                TestClientLimits,
		"HostileInput":                TestHostileInput,
		"SlowClientsHoldNoWorker":     TestSlowClientsHoldNoWorker,
		"StaticFiles":                 TestStaticFiles,
		"MixedTraffic":                TestMixedTraffic,
	} {
		t.Run(name, test)
	}
}
