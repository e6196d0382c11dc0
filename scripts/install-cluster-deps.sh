#!/usr/bin/env bash
# Installs what a multi-node cluster and its tests need on this machine:
# - etcd (Debian's `etcd-server`, which provides /usr/bin/etcd): `ray-rs start --head` runs it
#   as its child when `--etcd` is not given, and ray-cli's integration tests start real clusters;
# - `ip` (iproute2): ray-cli's network-namespace tests put a node in its own namespace;
# - `nft` (nftables): the partition test cuts that namespace off with a drop rule.
#
# Idempotent: what is already on PATH is not installed again, and `apt-get update` runs only when
# apt does not know a package yet (fresh machine). Must run as root to install. Under CI=true a
# failure is fatal (exit 1); otherwise it warns and exits 0, and the cluster tests then fail with
# a message saying how to install etcd.
set -euo pipefail

fail() {
    echo "install-cluster-deps: $*" >&2
    if [ "${CI:-}" = "true" ]; then
        exit 1
    fi
    echo "install-cluster-deps: continuing (not under CI=true); the cluster tests will fail without these" >&2
    exit 0
}

packages=()
command -v etcd >/dev/null 2>&1 || packages+=(etcd-server)
command -v ip >/dev/null 2>&1 || packages+=(iproute2)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || packages+=(nftables)

if [ "${#packages[@]}" -eq 0 ]; then
    echo "install-cluster-deps: etcd ($(command -v etcd)), ip and nft present; nothing to do"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    fail "missing ${packages[*]} and not root; run this script as root, or: apt-get install ${packages[*]}"
fi

export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when apt does not know a candidate for one of them yet.
for p in "${packages[@]}"; do
    candidate="$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')"
    if [ -z "${candidate}" ] || [ "${candidate}" = "(none)" ]; then
        echo "install-cluster-deps: refreshing package lists ($p unknown to apt)"
        apt-get update || fail "apt-get update failed"
        break
    fi
done

echo "install-cluster-deps: installing ${packages[*]}"
apt-get install -y --no-install-recommends "${packages[@]}" || fail "apt-get install ${packages[*]} failed"

# Debian's package enables an etcd service on the default ports where a service manager runs;
# ray-rs starts its own etcd on ports chosen at run time, so stop the packaged one.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
fi

command -v etcd >/dev/null 2>&1 || fail "etcd-server installed but etcd still not on PATH"
command -v ip >/dev/null 2>&1 || fail "iproute2 installed but ip still not on PATH"
echo "install-cluster-deps: installed ${packages[*]} ($(etcd --version 2>/dev/null | head -n1))"
