#!/usr/bin/env bash
# Build dist/cisfix.pyz and dist/cisfix.pyz.sha256: one file that runs on any CPython >= 3.9 on any
# CPU. See build/README.md.
#
#   build/build.sh [OUTDIR]          (default OUTDIR: dist/ at the top of the repository)
#
# Environment: PYTHON, the interpreter that runs the build (default python3, must be >= 3.9; the
# archive does not depend on it).
#
# Network is used once, to fill build/.cache/wheels with the wheels pinned (with hashes) in
# build/requirements.lock and build/requirements-build.lock; every later build is offline.
# Two builds of the same commit give byte-identical archives: timestamps come from the commit
# (SOURCE_DATE_EPOCH), and build/pyz.py rewrites the archive in a fixed order and form.
#
# Exit status: 0 built, 3 pinned wheels neither cached nor downloadable, other non-zero: failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
outdir=$(mkdir -p "${1:-$repo/dist}" && cd "${1:-$repo/dist}" && pwd)
python=${PYTHON:-python3}
cache=$here/.cache
wheels=$cache/wheels
# Pure-Python wheels only, chosen for the oldest supported CPython: pip then cannot pick a compiled
# or newer-Python-only wheel, whatever interpreter runs the build.
universal=(--only-binary=:all: --python-version 3.9 --implementation py --abi none --platform any)

"$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' \
    || { echo "build.sh: $python is older than 3.9; set PYTHON" >&2; exit 1; }

mkdir -p "$wheels"
# One build at a time per checkout: builds share the wheel cache and the build venv.
exec 9>"$cache/.lock"
flock 9

# Offline steps ignore pip's configuration and environment (extra indexes, find-links,
# constraints): the inputs are exactly the locked wheels in the cache.
pip_offline() {
    PIP_CONFIG_FILE=/dev/null "$1" -m pip --isolated --disable-pip-version-check "${@:2}"
}

# Fill the cache from the index only when a pinned wheel is missing from it.
fetch() {
    local py=$1 lock=$2
    if ! pip_offline "$py" download -q --no-deps --require-hashes "${universal[@]}" \
            --no-index --find-links "$wheels" -d "$wheels" -r "$lock" >/dev/null 2>&1; then
        echo "build.sh: downloading the wheels pinned in ${lock#"$repo"/} into ${wheels#"$repo"/}" >&2
        "$py" -m pip --disable-pip-version-check download -q --no-deps --require-hashes \
            "${universal[@]}" -d "$wheels" -r "$lock" || exit 3
    fi
}

# --- 1. A private build venv with the locked shiv, pip and setuptools --------------------------
lock_id=$( { "$python" -c 'import sys; print(sys.version)'; cat "$here/requirements-build.lock"; } \
    | sha256sum | cut -c1-16)
venv=$cache/venv-$lock_id
if [[ ! -f $venv/.complete ]]; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
    fetch "$venv/bin/python" "$here/requirements-build.lock"
    pip_offline "$venv/bin/python" install -q --no-deps --require-hashes --no-index \
        --find-links "$wheels" -r "$here/requirements-build.lock"
    touch "$venv/.complete"
fi
vpy=$venv/bin/python
fetch "$vpy" "$here/requirements.lock"

# --- 2. The build identity --------------------------------------------------------------------
cd "$repo"
commit=$(git rev-parse HEAD)
# Uncommitted changes (tracked or new files) are packaged too, so the identity says so.
dirty=False
[[ -z $(git status --porcelain) ]] || dirty=True
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
export SOURCE_DATE_EPOCH
built_at=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- 3. A wheel of cisfix from a clean copy of the sources -------------------------------------
# A copy of the files git would commit (tracked and new, never ignored ones), so a stale
# setuptools build/ directory or egg-info can't leak into the wheel, with the generated identity
# module that cisfix/version.py imports.
mkdir -p "$work/src"
# cisfix/checks.d is a link to the top-level checks.d/: both are copied, the link as a link.
# plugins/cis is the CIS benchmark plugin package, shipped in the same wheel; cis_k8s_unified the
# older runner's import name.
git ls-files -z --cached --others --exclude-standard -- pyproject.toml README.md cisfix checks.d plugins/cis \
        cis_k8s_unified \
    | while IFS= read -r -d '' f; do if [[ -f $f || -L $f ]]; then printf '%s\0' "$f"; fi; done \
    | xargs -0 cp -P --parents -t "$work/src"
cat >"$work/src/cisfix/_build.py" <<EOF
"""Build identity of this cisfix.pyz, written by build/build.sh; read by cisfix.version."""
COMMIT = "$commit"
DIRTY = $dirty
BUILT_AT = "$built_at"
EOF
pip_offline "$vpy" wheel -q --no-deps --no-build-isolation --no-index -w "$work/wheel" "$work/src"

# --- 4. site-packages: the locked dependencies and cisfix, in one install ----------------------
# --require-hashes for all (the fresh cisfix wheel is hashed here); --no-deps: the lock is the
# complete closure; --no-compile: shiv compiles at first run instead. cisfix is installed by name
# from --find-links, so pip records no direct_url.json (which would hold a build path).
cisfix_wheel=$(cd "$work/wheel" && echo cisfix-*-py3-none-any.whl)
cisfix_version=${cisfix_wheel#cisfix-}
printf 'cisfix==%s --hash=sha256:%s\n' "${cisfix_version%%-*}" \
    "$(sha256sum "$work/wheel/$cisfix_wheel" | cut -d' ' -f1)" >"$work/cisfix.lock"
pip_offline "$vpy" install -q --no-index --find-links "$wheels" --find-links "$work/wheel" \
    --no-deps --no-compile "${universal[@]}" --target "$work/site-packages" \
    --require-hashes -r "$here/requirements.lock" -r "$work/cisfix.lock"

# --- 5. The archive ------------------------------------------------------------------------------
"$vpy" "$here/pyz.py" "$work/site-packages" "$work/src" "$here/launcher.py" "$work/cisfix.pyz"
mv "$work/cisfix.pyz" "$outdir/cisfix.pyz"
(cd "$outdir" && sha256sum cisfix.pyz >cisfix.pyz.sha256)

echo "built $outdir/cisfix.pyz ($(stat -c %s "$outdir/cisfix.pyz") bytes) from $commit$([[ $dirty == True ]] && echo " with uncommitted changes")"
cat "$outdir/cisfix.pyz.sha256"
