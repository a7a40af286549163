#!/usr/bin/env bash
# Print the path of a working Python 3.10 interpreter, or explain on stderr and exit 1.
# lava-nc 0.10.0 and lava-dl 0.6.0 (neurodeploy's Lava backend) install and import on
# Python 3.10 only. Order: $PYTHON310, python3.10 on PATH, pyenv's 3.10.x, /usr/bin/python3.10.
set -u

works() {
    [ -n "$1" ] && "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' \
        >/dev/null 2>&1
}

candidates=()
[ -n "${PYTHON310:-}" ] && candidates+=("$PYTHON310")
if command -v python3.10 >/dev/null 2>&1; then
    candidates+=("$(command -v python3.10)")  # may be a pyenv shim that fails: tested below
fi
if command -v pyenv >/dev/null 2>&1; then
    root="$(pyenv root 2>/dev/null || true)"
    if [ -n "$root" ]; then
        for p in $(ls -d "$root"/versions/3.10.*/bin/python3.10 2>/dev/null | sort -rV); do
            candidates+=("$p")
        done
    fi
fi
for p in "${HOME:-/root}"/.pyenv/versions/3.10.*/bin/python3.10 /usr/bin/python3.10 \
         /usr/local/bin/python3.10; do
    [ -e "$p" ] && candidates+=("$p")
done

for p in "${candidates[@]}"; do
    if works "$p"; then
        echo "$p"
        exit 0
    fi
done

cat >&2 <<'MSG'
error: Python 3.10 not found.
neurodeploy's Lava backend needs lava-nc 0.10.0 and lava-dl 0.6.0, which require exactly
Python 3.10. Install it (e.g. `pyenv install 3.10` or your system's python3.10 package), or
point PYTHON310 at a python3.10 executable: make PYTHON310=/path/to/python3.10 test
MSG
exit 1
