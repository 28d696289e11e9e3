#!/usr/bin/env bash
# Install the system packages the test suite needs: a virtual X server and the Qt/xcb
# libraries napari needs for GUI tests, and poppler for the report checks.
# Needs root (or passwordless sudo) on a Debian/Ubuntu machine; elsewhere it says what is
# missing and returns 1 so the caller can decide (scripts/test.sh then skips the GUI tier).
set -uo pipefail

PACKAGES=(xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0
  libxcb-render-util0 libxcb-randr0 libxcb-shape0 libxcb-cursor0 libxkbcommon-x11-0 libgl1
  libegl1 libfontconfig1 libdbus-1-3 poppler-utils)

have_all() { command -v Xvfb >/dev/null && command -v xauth >/dev/null && command -v pdftoppm >/dev/null \
  && [ -e /usr/lib/x86_64-linux-gnu/libxcb-cursor.so.0 -o -e /usr/lib/aarch64-linux-gnu/libxcb-cursor.so.0 ]; }

if have_all; then exit 0; fi

if ! command -v apt-get >/dev/null; then
  echo "install_system_deps: no apt-get here; install Xvfb, xauth, the xcb libraries and poppler yourself" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "install_system_deps: not root and no passwordless sudo; cannot install: ${PACKAGES[*]}" >&2
    exit 1
  fi
fi
echo "install_system_deps: installing ${PACKAGES[*]} (apt-get, as root)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null && \
$SUDO apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >/dev/null || {
  echo "install_system_deps: apt-get failed" >&2; exit 1; }
have_all
