#!/usr/bin/env bash
# Install the Debian packages the product and its tests need, only those that are missing.
# Fast when everything is there (no apt call at all). Needs root (or sudo) to install.
#
#   scripts/ensure-system-packages.sh serve   # what `make serve` needs
#   scripts/ensure-system-packages.sh test    # what `make test` needs (real peers too)
set -euo pipefail

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pg() { have_cmd pg_ctl || compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; }

# python3 -m venv needs ensurepip, which Debian ships separately.
have_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }

python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
# pyttsx3 speaks through libespeak-ng; the espeak-ng command brings its voice data.
have_lib libespeak-ng.so.1 && have_cmd espeak-ng || need+=(espeak-ng libespeak-ng1)
# Kamailio fronts the media workers when there is more than one.
have_cmd kamailio || need+=(kamailio)
if [[ "${1:-serve}" == "test" ]]; then
    have_pg || need+=(postgresql)
    have_cmd flite || need+=(flite)          # English test speech PocketSphinx recognises
    have_cmd baresip || need+=(baresip-core) # a third-party softphone as a caller
    have_cmd sipp || need+=(sip-tester)      # SIP load and malformed traffic
    have_cmd chromium || need+=(chromium)    # the visitor widget's tests (Playwright drives it)
    have_cmd firefox-esr || need+=(firefox-esr) # the widget in the other engine (tests/firefox.py)
    # The real SMS gateway and its fake SMS centre (tests/kannel.py).
    [[ -x /usr/sbin/bearerbox ]] || need+=(kannel)
    [[ -x /usr/lib/kannel/test/fakesmsc ]] || need+=(kannel-extras)
fi

if ((${#need[@]} == 0)); then
    exit 0
fi
echo "installing Debian packages: ${need[*]}"
sudo=""
if [[ "$(id -u)" != 0 ]]; then
    have_cmd sudo || { echo "need root to install: ${need[*]}" >&2; exit 1; }
    sudo="sudo"
fi
# A package cache that was never filled finds nothing: update first.
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
# Debian starts the packaged Kamailio on 5060; ivr serve runs its own (with its own config).
if [[ " ${need[*]} " == *" kamailio "* ]] && have_cmd systemctl; then
    $sudo systemctl disable --now kamailio >/dev/null 2>&1 || true
fi
# Likewise Debian's Kannel service: the tests run their own boxes on ports of their own.
if [[ " ${need[*]} " == *" kannel "* ]] && have_cmd systemctl; then
    $sudo systemctl disable --now kannel >/dev/null 2>&1 || true
fi
