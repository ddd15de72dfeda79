#!/bin/sh
# Make sure a Chromium is here for the console's browser tests (tests/console), which Playwright
# drives with `executable_path` (it cannot download browsers of its own here). Quiet and quick
# when /usr/bin/chromium (or $GENGATE_TEST_CHROMIUM) is there; as root, installs Debian's
# `chromium` package when it is not. Not root and missing: says so and exits 0 (the browser tests
# then skip, or fail under CI=true).
set -eu

browser="${GENGATE_TEST_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$browser" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-chromium: $browser is missing and this is not root; install it with" >&2
    echo "  sudo apt-get install -y chromium   (or point GENGATE_TEST_CHROMIUM at a Chromium)" >&2
    echo "ensure-chromium: until then the browser tests are skipped (and fail under CI=true)" >&2
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: Chromium is not installed and there is no apt-get; install it by hand" >&2
    exit 1
fi

echo "ensure-chromium: installing Chromium with apt-get ..." >&2
export DEBIAN_FRONTEND=noninteractive
install() {
    apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >/dev/null
}
if ! install; then
    apt-get update -q >/dev/null
    install
fi

if [ ! -x "$browser" ]; then
    echo "ensure-chromium: the chromium package installed, but $browser is not there" >&2
    exit 1
fi
echo "ensure-chromium: Chromium installed" >&2
