#!/usr/bin/env bash
# The whole tessella test suite, from a fresh Debian/Ubuntu machine with Rust:
#   1. tools the image tests need: qemu-system-x86 (TCG boots), dpkg-deb (input
#      extraction), GNU binutils (the fw_cfg probe BIOS) and the musl target;
#      installed when this runs as root, otherwise named with the command to run;
#   2. the pinned Debian image inputs (`tessella-image fetch`: project-local apt
#      config, size and SHA-256 checked against image/tessella-image.lock, cached
#      under ~/.cache/tessella-image);
#   3. the appliance image, built twice from different directories and compared
#      artefact by artefact (`tessella-image build --verify-reproducible`);
#   4. `cargo test --workspace` (unit, integration, measurement tests on the
#      pinned inputs, and QEMU boots of the image built in step 3).
# TESSELLA_SKIP_IMAGE_BUILD=1 reuses the image already in target/tessella-image/out.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
command -v dpkg-deb >/dev/null || missing+=(dpkg)
command -v as >/dev/null && command -v ld >/dev/null || missing+=(binutils)
command -v apt-get >/dev/null || { echo "apt-get is required (Debian or Ubuntu host)" >&2; exit 1; }
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "missing: ${missing[*]}; install with: sudo apt-get install ${missing[*]}" >&2
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
  cargo run --release --locked -q -p tessella-image -- build --verify-reproducible
fi

echo "== cargo test --workspace"
rm -f target/tessella-image/boot-figure.txt
cargo test --workspace --locked
if [ -f target/tessella-image/boot-figure.txt ]; then
  echo "figure: $(cat target/tessella-image/boot-figure.txt)"
fi
