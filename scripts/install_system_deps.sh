#!/usr/bin/env bash
# Installs the system tools the built-in corpus needs when missing (Debian/Ubuntu, as root):
#   festival + its three English voices in Debian main (kal, ked: male; slt: female),
#   festlex-cmu / festlex-poslex (the CMU dictionary and WSJ part-of-speech lexicon: the sentence
#   generator's vocabulary), espeak-ng + libespeak-ng1 (loaded with ctypes for phone timings).
# MBROLA voices live in Debian contrib/non-free and are not used.
# ffmpeg: transformers' ASR pipeline decodes audio files (asr("utterance.flac")) with it.
# chromium: the test of report.html renders the page headless and checks what loaded.
# As another user (or without apt-get) it prints the apt-get line to run and exits 0: `make test` then
# skips the tests that synthesise speech; `make corpus` / `make demo` need the packages.
set -euo pipefail
packages=(festival festlex-cmu festlex-poslex festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts espeak-ng libespeak-ng1 ffmpeg chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  # Not root (or no apt-get): say what to run and carry on, so `make test` runs every test that does
  # not synthesise speech (the others are skipped, naming what is missing); building the built-in
  # corpus (`make corpus`, `make demo`) needs them.
  echo "repr-asr needs these system packages (the built-in corpus; ffmpeg: audio files in the ASR pipeline): ${missing[*]}" >&2
  echo "install them with: sudo apt-get install ${missing[*]}" >&2
  echo "(continuing without them: tests that synthesise speech will be skipped)" >&2
fi
