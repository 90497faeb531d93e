#!/bin/sh
# Installs the npm packages of the test apps in apps/ (cmd/berth/apps_test.go)
# from apps/package-lock.json. Idempotent: does nothing when node_modules
# already matches the lock file. Run by the tests' setup and by .ci/run.
set -eu

apps=$(cd "$(dirname "$0")/apps" && pwd)
stamp="$apps/node_modules/.berth-installed"
want=$(sha256sum "$apps/package-lock.json" | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
	exit 0
fi

cd "$apps"
npm ci --no-audit --no-fund --loglevel=error
echo "$want" >"$stamp"
