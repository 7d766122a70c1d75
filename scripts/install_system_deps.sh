#!/usr/bin/env bash
# Installs the system tools the built-in corpus needs when missing (Debian/Ubuntu, as root):
#   festival + its three English voices in Debian main (kal, ked: male; slt: female),
#   festlex-cmu / festlex-poslex (the CMU dictionary and WSJ part-of-speech lexicon: the sentence
#   generator's vocabulary), espeak-ng + libespeak-ng1 (loaded with ctypes for phone timings).
# MBROLA voices live in Debian contrib/non-free and are not used.
set -euo pipefail
packages=(festival festlex-cmu festlex-poslex festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts espeak-ng libespeak-ng1)
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
  echo "repr-asr needs these system packages for the built-in corpus: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
