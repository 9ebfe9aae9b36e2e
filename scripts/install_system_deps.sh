#!/usr/bin/env bash
# Install the Debian packages scalinglab needs outside PyPI.
#
#   bubblewrap  - `bwrap`, the namespace sandbox the code verifier runs untrusted programs in
#                 (src/scalinglab/verify/sandbox.py; without it the verifier falls back to a
#                 weaker rlimits + unshare mode and warns loudly).
#
#   chromium, chromium-driver - only with --browser: headless Chromium for the report's
#                 browser test (tests/test_report_browser.py).
#
# Idempotent: a no-op when everything is already installed. Needs root for apt; as a normal
# user it only reports what is missing (run it again with sudo).
set -euo pipefail

PACKAGES=(bubblewrap)
if [ "${1:-}" = "--browser" ]; then
    PACKAGES+=(chromium chromium-driver)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install_system_deps: already installed: ${PACKAGES[*]}"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install_system_deps: WARNING: not root, skipping apt; missing packages: ${missing[*]}" >&2
    echo "install_system_deps: run: sudo $0" >&2
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_system_deps: WARNING: apt-get not found (not Debian/Ubuntu); install by hand: ${missing[*]}" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
echo "install_system_deps: installed: ${missing[*]}"
