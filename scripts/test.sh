#!/usr/bin/env bash
# The whole tessella test suite, from a fresh machine:
#   1. tools the image tests need (qemu-system-x86, dpkg-deb, the musl target), installed when
#      this runs as root, otherwise named with the command to install them;
#   2. the pinned Debian image inputs (`tessella-image fetch`: project-local apt, SHA-256 checked,
#      cached under ~/.cache/tessella-image);
#   3. the appliance image, built twice in different directories and compared artefact by
#      artefact (`tessella-image build --verify-reproducible`);
#   4. `cargo test --workspace` (unit, integration, and the QEMU boot of the image built in 3).
# Set TESSELLA_SKIP_IMAGE_BUILD=1 to reuse an image already in target/tessella-image/out.
set -euo pipefail
cd "$(dirname "$0")/.."

missing_pkgs=()
command -v qemu-system-x86_64 >/dev/null || missing_pkgs+=(qemu-system-x86)
command -v dpkg-deb >/dev/null || missing_pkgs+=(dpkg)
command -v apt-get >/dev/null || { echo "apt-get is required (Debian or Ubuntu host)" >&2; exit 1; }
if [ ${#missing_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing ${missing_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}"
  else
    echo "missing: ${missing_pkgs[*]}; install with: sudo apt-get install ${missing_pkgs[*]}" >&2
    exit 1
  fi
fi
if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
  echo "== adding the x86_64-unknown-linux-musl target"
  rustup target add x86_64-unknown-linux-musl
fi

echo "== pinned image inputs"
cargo run --release --locked -q -p tessella-image -- fetch

if [ "${TESSELLA_SKIP_IMAGE_BUILD:-0}" != 1 ]; then
  echo "== appliance image (built twice, compared)"
  cargo run --release --locked -q -p tessella-image -- build --out target/tessella-image/out --verify-reproducible
fi

echo "== cargo test --workspace"
cargo test --workspace --locked
