package main

// version is stamped at link time from packaging/VERSION
// (go build -ldflags "-X main.version=$(cat packaging/VERSION)").
// A plain `go build` reports "devel".
var version = "devel"
