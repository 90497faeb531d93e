package spawner

import "context"

// Probe reports whether the app at network/addr answers an HTTP request,
// trying until it does or ctx ends. Back ends outside this package use it
// for apps that may not report readiness (Spec.Probe).
func Probe(ctx context.Context, network, addr string) bool { return probe(ctx, network, addr) }
