# Packaging targets, included by the top Makefile (which defines GO, VERSION
# and BIN, and `build`).
#
#   make install        install the built binary and its files (PREFIX=/usr/local)
#   make deb            dist/berth_$(VERSION)_$(ARCH).deb   (dpkg-buildpackage -us -uc -b)
#   make rpm            dist/berth-$(VERSION)-1.$(ARCH).rpm (rpmbuild -bb)
#   make packages       both
#   make lint-packages  lintian and rpmlint on what dist/ holds
#   make man            render berth(1) as text, version filled in, failing on any groff warning
#   make check-version  packaging/VERSION, debian/changelog and rpm/berth.spec agree
#   make reproducible   build the .deb twice in two trees, compare checksums
#   make src-tree DEST=dir  copy the sources a package build takes to dir
#   make clean-dist     remove dist/
#
# The version lives in packaging/VERSION only; debian/changelog and
# rpm/berth.spec must name the same one (check-version, and the test in
# packaging/buildtest, fail when they drift).

DIST       ?= dist
PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
DESTDIR    ?=
BINDIR     ?= $(PREFIX)/bin
LIBEXECDIR ?= $(PREFIX)/libexec
MANDIR     ?= $(PREFIX)/share/man
COMPLDIR   ?= $(PREFIX)/share/bash-completion/completions

# Absolute paths: the package builds run in a copy of the tree.
DIST_ABS   := $(abspath $(DIST))
GO_ABS     := $(or $(shell command -v $(GO) 2>/dev/null),/usr/local/go/bin/go)

# pkg-build: `make build` as the package builds run it. No toolchain
# download, go.mod read-only, no VCS stamp, a writable build and module cache:
# the caller's when it exists and is writable, else one under the tree (a
# clean chroot has no usable HOME). Go's config dir (telemetry counters) moves
# under the tree too when HOME is not a writable directory: nothing is
# created outside the tree. (Recursive variables: `go env` runs only for
# pkg-build.)
home_ok := $(shell [ -d "$$HOME" ] && [ -w "$$HOME" ] && echo y)
pkg_config_home := $(if $(home_ok),$(XDG_CONFIG_HOME),$(CURDIR)/_build/config)
go_dir = $(shell d=$$(XDG_CONFIG_HOME='$(pkg_config_home)' $(GO_ABS) env $(1) 2>/dev/null) && [ -n "$$d" ] && [ -d "$$d" ] && [ -w "$$d" ] && echo "$$d")
.PHONY: pkg-build
pkg-build: export GOTOOLCHAIN = local
pkg-build: export GOFLAGS = -mod=readonly -buildvcs=false
pkg-build: export XDG_CONFIG_HOME = $(pkg_config_home)
pkg-build: export GOCACHE = $(or $(call go_dir,GOCACHE),$(CURDIR)/_build/gocache)
pkg-build: export GOMODCACHE = $(or $(call go_dir,GOMODCACHE),$(CURDIR)/_build/gomodcache)
pkg-build: export GOPATH = $(or $(call go_dir,GOPATH),$(CURDIR)/_build/gopath)
pkg-build:
	$(MAKE) build GO=$(GO_ABS)

# install: what a package holds, from an already built bin/berth. The .deb
# (debian/rules) and the .rpm (rpm/berth.spec) both call it, so their
# payloads agree by construction; packaging/buildtest checks that they do.
.PHONY: install
install:
	@[ -x $(BIN) ] || { echo "$(BIN) is missing: run 'make build' first" >&2; exit 1; }
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBEXECDIR)/berth \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(COMPLDIR) $(DESTDIR)$(SYSCONFDIR)/berth
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/berth
	install -m 0755 packaging/scripts/maint $(DESTDIR)$(LIBEXECDIR)/berth/maint
	sed 's/@VERSION@/$(VERSION)/g' packaging/man/berth.1 > $(DESTDIR)$(MANDIR)/man1/berth.1
	chmod 0644 $(DESTDIR)$(MANDIR)/man1/berth.1
	install -m 0644 packaging/completion/berth.bash $(DESTDIR)$(COMPLDIR)/berth
	install -m 0644 packaging/berth.json.example $(DESTDIR)$(SYSCONFDIR)/berth/berth.json.example

# uninstall: the reverse of install (for a from-source install).
.PHONY: uninstall
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/berth $(DESTDIR)$(LIBEXECDIR)/berth/maint \
		$(DESTDIR)$(MANDIR)/man1/berth.1 $(DESTDIR)$(COMPLDIR)/berth \
		$(DESTDIR)$(SYSCONFDIR)/berth/berth.json.example
	-rmdir $(DESTDIR)$(LIBEXECDIR)/berth $(DESTDIR)$(SYSCONFDIR)/berth

# src-tree DIR: copy the source tree (tracked and untracked-but-not-ignored
# files, as git sees them; everything but build output without git) into DIR.
src_excludes := (^|/)node_modules/|^berth$$|^(dist|bin|_build|debian/_build|debian/berth|debian/\.debhelper)(/|$$)|^debian/(files|debhelper-build-stamp|berth\.substvars|.*\.log)$$
define src-tree
	rm -rf $(1) && mkdir -p $(1)
	{ if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		git ls-files -co --exclude-standard; \
	  else \
		find . -type f -o -type l | sed 's|^\./||'; \
	  fi; } | grep -Ev '$(src_excludes)' | grep -v '^\.git/' | \
	  while IFS= read -r f; do [ -e "$$f" ] && printf '%s\n' "$$f"; done | \
	  tar -cf - -T - | tar -xf - -C $(1)
endef

# src-tree: a copy of the sources to build from (DEST=dir), as make deb and
# make rpm take them.
.PHONY: src-tree
src-tree:
	@[ -n "$(DEST)" ] || { echo "usage: make src-tree DEST=dir" >&2; exit 1; }
	$(call src-tree,$(abspath $(DEST)))

.PHONY: deb
deb: check-version
	$(call src-tree,$(DIST_ABS)/deb/berth-$(VERSION))
	cd $(DIST_ABS)/deb/berth-$(VERSION) && GO=$(GO_ABS) dpkg-buildpackage -us -uc -b
	mv $(DIST_ABS)/deb/berth_$(VERSION)_*.deb $(DIST_ABS)/deb/berth_$(VERSION)_*.buildinfo \
		$(DIST_ABS)/deb/berth_$(VERSION)_*.changes $(DIST_ABS)/
	rm -rf $(DIST_ABS)/deb
	@ls -l $(DIST_ABS)/berth_$(VERSION)_*.deb

# rpm: the source tarball is made reproducibly (sorted, fixed owner and
# times), then rpmbuild runs in $(DIST)/rpm as its _topdir.
SOURCE_DATE_EPOCH_RPM = $(shell date -d "$$(sed -n 's/^\* \([A-Z][a-z]\{2\} [A-Z][a-z]\{2\} [0-9]\{1,2\} [0-9]\{4\}\).*/\1/p' rpm/berth.spec | head -n1)" +%s)
.PHONY: rpm
rpm: check-version
	$(call src-tree,$(DIST_ABS)/rpm/src/berth-$(VERSION))
	mkdir -p $(DIST_ABS)/rpm/SOURCES
	tar -C $(DIST_ABS)/rpm/src --sort=name --owner=0 --group=0 --numeric-owner \
		--mtime=@$(SOURCE_DATE_EPOCH_RPM) -cf - berth-$(VERSION) | gzip -n \
		> $(DIST_ABS)/rpm/SOURCES/berth-$(VERSION).tar.gz
	rpmbuild -bb --define '_topdir $(DIST_ABS)/rpm' --define 'go $(GO_ABS)' \
		--define '_buildhost reproducible' \
		--define 'packager berth maintainers <maintainers@berth.example>' rpm/berth.spec
	mv $(DIST_ABS)/rpm/RPMS/*/berth-$(VERSION)-*.rpm $(DIST_ABS)/
	rm -rf $(DIST_ABS)/rpm
	@ls -l $(DIST_ABS)/berth-$(VERSION)-*.rpm

.PHONY: packages
packages: deb rpm

# lintian: errors fail; the warnings we accept are listed, with the reason,
# in debian/README.source (and suppressed in debian/berth.lintian-overrides).
.PHONY: lint-packages
lint-packages:
	lintian --fail-on error,warning $(DIST_ABS)/berth_$(VERSION)_*.changes
	rpmlint --config rpm/rpmlint.toml rpm/berth.spec $(DIST_ABS)/berth-$(VERSION)-*.rpm

# man: berth(1) rendered from the source with the version filled in (the
# source carries @VERSION@, which install substitutes the same way).
.PHONY: man bin/berth.1
bin/berth.1:
	@mkdir -p bin
	sed 's/@VERSION@/$(VERSION)/g' packaging/man/berth.1 > $@
man: bin/berth.1
	@w=$$(LC_ALL=C.UTF-8 groff -man -ww -z -t -Tutf8 bin/berth.1 2>&1); \
	  [ -z "$$w" ] || { printf '%s\n' "$$w" >&2; exit 1; }
	@LC_ALL=C.UTF-8 MANWIDTH=80 man -E UTF-8 -l bin/berth.1 | cat

.PHONY: check-version
check-version:
	@v=$$(cat packaging/VERSION); \
	d=$$(sed -n '1s/^berth (\([^)]*\)).*/\1/p' debian/changelog); \
	r=$$(sed -n 's/^Version:[[:space:]]*//p' rpm/berth.spec); \
	[ "$$v" = "$$d" ] || { echo "debian/changelog is at $$d, packaging/VERSION is $$v" >&2; exit 1; }; \
	[ "$$v" = "$$r" ] || { echo "rpm/berth.spec is at $$r, packaging/VERSION is $$v" >&2; exit 1; }

# reproducible: two .deb builds in two different trees must be bit-identical.
.PHONY: reproducible
reproducible:
	$(MAKE) deb DIST=$(DIST_ABS)/repro-a
	$(MAKE) deb DIST=$(DIST_ABS)/repro-b
	cd $(DIST_ABS) && sha256sum repro-a/*.deb repro-b/*.deb && \
		cmp repro-a/berth_$(VERSION)_*.deb repro-b/berth_$(VERSION)_*.deb
	rm -rf $(DIST_ABS)/repro-a $(DIST_ABS)/repro-b

.PHONY: clean-dist
clean-dist:
	[ ! -d _build ] || chmod -R u+w _build
	rm -rf $(DIST_ABS) _build
