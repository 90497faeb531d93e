# berth — build, test, demo. Packaging targets (deb, rpm) live in
# packaging/packaging.mk.

GO      ?= go
VERSION := $(shell cat packaging/VERSION)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     := bin/berth

.PHONY: build test demo vet bench clean
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/berth

test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 40m ./...

demo: build
	./$(BIN) serve examples/hello --port 3000 --workers 2

clean:
	rm -rf bin

-include packaging/packaging.mk
