#!/usr/bin/env bash
# Creates what is missing for midiarr on this machine: system packages (when apt is
# available), a virtual environment in .venv, and midiarr installed into it with
# torch pinned through constraints.txt. Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

# 1. System packages: FluidSynth and the FluidR3 General MIDI SoundFont for the render stage;
#    Chromium and its WebDriver for the web page's browser tests (MIDIARR_NO_BROWSER=1 skips them);
#    MuseScore 3, the notation program the MusicXML tests read midiarr's scores with (MIDIARR_NO_MUSESCORE=1
#    skips it).
need_apt=()
command -v fluidsynth >/dev/null 2>&1 || need_apt+=(fluidsynth)
need_bare=()  # installed without their recommended extras (MuseScore's would add hundreds of MB)
if [ -z "${MIDIARR_NO_MUSESCORE:-}" ]; then
  command -v mscore3 >/dev/null 2>&1 || need_bare+=(musescore3)
fi
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need_apt+=(fluid-soundfont-gm)
if [ -z "${MIDIARR_NO_BROWSER:-}" ]; then
  [ -x /usr/bin/chromium ] || need_apt+=(chromium)
  [ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${need_apt[*]} with apt-get"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
    echo "setup: installing ${need_apt[*]} with sudo apt-get"
    sudo apt-get update -qq >/dev/null
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: note: ${need_apt[*]} not installed and no apt-get here; rendering will use the embedded SoundFont if libfluidsynth is found" >&2
  fi
fi

if [ ${#need_bare[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${need_bare[*]} with apt-get"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_bare[@]}" >/dev/null
  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
    echo "setup: installing ${need_bare[*]} with sudo apt-get"
    sudo apt-get update -qq >/dev/null
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_bare[@]}" >/dev/null
  else
    echo "setup: note: ${need_bare[*]} not installed and no apt-get here; the MuseScore tests are skipped" >&2
  fi
fi

# 2. Virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

# 3. Python packages, re-installed only when pyproject.toml or constraints.txt change.
stamp="$VENV/.midiarr-setup-$(cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing midiarr and its dependencies into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev,scale]" 2>&1 \
    | grep -v '^WARNING: Location' || true
  "$VENV/bin/python" -c "import midiarr, symusic, miditok, music21" 
  rm -f "$VENV"/.midiarr-setup-*
  touch "$stamp"
fi

# 4. The transformer's C decoding step, built once per machine into ~/.cache/midiarr (a no-op when
#    built; without a C compiler the decoder keeps its slower TorchScript step).
"$VENV/bin/python" -m midiarr.transformer.native
