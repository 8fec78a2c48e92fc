# Shared by scripts/demo and scripts/test (sourced, not run).
# Creates .venv and installs pcq into it, skipping work already done so that
# re-runs take well under a second.

say() { echo "$(basename "$0"): $*" >&2; }

as_root() {  # run a command as root: directly, or through password-less sudo
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo "$@"
  else return 126
  fi
}

apt_install() {  # apt_install PACKAGE...: Debian packages, non-interactively
  command -v apt-get >/dev/null || return 1
  say "installing Debian package(s): $*"
  local log; log=$(mktemp)
  if as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$log" 2>&1 &&
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$log" 2>&1; then
    rm -f "$log"
  else
    tail -20 "$log" >&2; rm -f "$log"; return 1
  fi
}

ensure_venv() {
  # A venv whose pip is missing (an interrupted first run) is made again.
  if [ -x .venv/bin/python ] && .venv/bin/python -c 'import sys, pip; assert sys.version_info >= (3, 10)' 2>/dev/null; then
    return 0
  fi
  local py=${PYTHON:-python3}
  command -v "$py" >/dev/null || { say "needs Python >= 3.10 ($py not found)"; exit 1; }
  "$py" -c 'import sys; assert sys.version_info >= (3, 10)' ||
    { say "needs Python >= 3.10, $py is $("$py" -V 2>&1)"; exit 1; }
  say "creating .venv with $("$py" -V 2>&1)"
  rm -rf .venv
  if ! "$py" -m venv .venv >/dev/null 2>&1; then
    # Debian ships venv/ensurepip separately (python3-venv).
    rm -rf .venv
    local pkg; pkg="python3-venv python$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv"
    # shellcheck disable=SC2086
    apt_install $pkg || apt_install python3-venv || {
      say "cannot create a virtualenv: install python3-venv (needs root)"; exit 1; }
    "$py" -m venv .venv
  fi
}

stamp_for() {  # the file recording which pyproject.toml SPEC was installed from
  printf '.venv/.pcq-installed-%s' "$(printf '%s' "$1" | tr -c 'a-z0-9' '_')"
}

installed() {  # installed SPEC: true if SPEC was installed from the current pyproject.toml
  local stamp; stamp=$(stamp_for "$1")
  [ -x .venv/bin/pcq ] && [ -f "$stamp" ] &&
    [ "$(cat "$stamp")" = "$(sha256sum pyproject.toml | cut -d' ' -f1)" ]
}

ensure_installed() {  # ensure_installed SPEC (e.g. "." or ".[dev]"): editable install, once
  installed "$1" && return 0
  # Two runs at once (e.g. demo and test) must not pip-install into one venv together.
  if command -v flock >/dev/null 2>&1; then
    exec 9>.venv/.pcq-install.lock
    flock 9
    installed "$1" && { exec 9>&-; return 0; }
  fi
  say "pip install -e '$1' (first run, or pyproject.toml changed)"
  # Build-backend chatter goes to a log; shown only if the install fails.
  if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e "$1" >.venv/pip-install.log 2>&1; then
    tail -40 .venv/pip-install.log >&2
    say "pip install failed (full log: .venv/pip-install.log)"
    exit 1
  fi
  sha256sum pyproject.toml | cut -d' ' -f1 >"$(stamp_for "$1")"
  if command -v flock >/dev/null 2>&1; then exec 9>&-; fi  # closing it releases the lock
}

link_typecheck_tree() {
  # mypy cannot follow the editable install's import hook, so it reads the
  # sources under their installed names through links: .typecheck/pcq/core -> core/...
  mkdir -p .typecheck/pcq
  local pkg
  for pkg in core producer consumer; do ln -sfn "../../$pkg" ".typecheck/pcq/$pkg"; done
}
