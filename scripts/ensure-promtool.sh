#!/bin/sh
# Make sure `promtool` (Debian's `prometheus` package) is here for the tests that check the alert
# rules in deploy/prometheus/. Quiet and quick when it is already installed; as root, installs the
# package when it is not (about 20 MB; its recommends are left out, and the Prometheus server the
# package starts is disabled: the tests need only the tool). Not root and missing: says so and
# exits 0 (the rule check then skips, or fails under CI=true).
set -eu

if command -v promtool >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-promtool: promtool is not installed and this is not root; install it with" >&2
    echo "  sudo apt-get install -y --no-install-recommends prometheus   (or your system's package)" >&2
    echo "ensure-promtool: until then the alert rules' check is skipped (and fails under CI=true)" >&2
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-promtool: promtool is not installed and there is no apt-get; install it by hand" >&2
    exit 1
fi

echo "ensure-promtool: installing promtool (Debian's prometheus package) with apt-get ..." >&2
export DEBIAN_FRONTEND=noninteractive
install() {
    apt-get install -y -q --no-install-recommends prometheus >/dev/null
}
if ! install; then
    apt-get update -q >/dev/null
    install
fi
# The package starts a Prometheus server on 9090; the tests need only promtool.
if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

if ! command -v promtool >/dev/null 2>&1; then
    echo "ensure-promtool: the prometheus package installed, but no promtool was found" >&2
    exit 1
fi
echo "ensure-promtool: promtool installed" >&2
