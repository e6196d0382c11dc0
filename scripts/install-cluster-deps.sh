#!/usr/bin/env bash
# Installs what a multi-node cluster needs on this machine: etcd (Debian's `etcd-server`, which
# provides /usr/bin/etcd). `ray-rs start --head` runs it as its child when `--etcd` is not given,
# and ray-cli's integration tests start real clusters, so scripts/test.sh calls this script.
#
# Idempotent: when `etcd` is already on PATH it does nothing. `apt-get update` runs only when the
# package is not known to apt yet (fresh machine). Must run as root to install. Under CI=true a
# failure is fatal (exit 1); otherwise it warns and exits 0, and the cluster tests then fail with
# a message saying how to install etcd.
set -euo pipefail

fail() {
    echo "install-cluster-deps: $*" >&2
    if [ "${CI:-}" = "true" ]; then
        exit 1
    fi
    echo "install-cluster-deps: continuing (not under CI=true); cluster tests will fail without etcd" >&2
    exit 0
}

if command -v etcd >/dev/null 2>&1; then
    echo "install-cluster-deps: etcd present ($(command -v etcd)); nothing to do"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    fail "etcd is not on PATH and not root; run this script as root, or: apt-get install etcd-server"
fi

export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when apt does not know a candidate for etcd-server yet.
candidate="$(apt-cache policy etcd-server 2>/dev/null | awk '/Candidate:/ {print $2}')"
if [ -z "${candidate}" ] || [ "${candidate}" = "(none)" ]; then
    echo "install-cluster-deps: refreshing package lists (etcd-server unknown to apt)"
    apt-get update || fail "apt-get update failed"
fi

echo "install-cluster-deps: installing etcd-server"
apt-get install -y --no-install-recommends etcd-server || fail "apt-get install etcd-server failed"

# Debian's package enables an etcd service listening on the default ports; ray-rs starts its own
# etcd with ports chosen at run time, so stop the packaged one where a service manager runs it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
fi

command -v etcd >/dev/null 2>&1 || fail "etcd-server installed but etcd still not on PATH"
echo "install-cluster-deps: installed $(etcd --version 2>/dev/null | head -n1)"
