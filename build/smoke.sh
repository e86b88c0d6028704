#!/usr/bin/env bash
# Smoke test of cisfix.pyz as operators run it, under every CPython 3.9-3.13 that pyenv has.
#
#   build/smoke.sh [PYZ]      (without PYZ: build dist/cisfix.pyz first with build/build.sh)
#
# Per interpreter: first and warm `--version` (must name the archive's commit), `./cisfix.pyz`
# through its `/usr/bin/env python3` shebang, cron-like `env -i PATH=...`, HOME unset, a read-only
# HOME (a read-only bind mount in a private mount namespace: as root, chmod would not stop a
# write), concurrent first runs, no ruamel.yaml/jsonschema import for --version, the older runner's
# `import cis_k8s_unified` with PYTHONPATH=cisfix.pyz, and, when the CLI
# a real edit, history, a crash and recover, and an audit, on a copy of the test kit's node.
# Once: the literal cron line with the system python3, and refusal of an unsafe SHIV_ROOT.
# Exits non-zero if anything failed.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
if [[ $# -ge 1 ]]; then
    pyz=$(realpath "$1")
else
    "$here/build.sh" || exit 1
    pyz=$repo/dist/cisfix.pyz
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Keep the runs away from the caller's ~/.shiv unless a check is about HOME itself.
export HOME=$work/home
mkdir -p "$HOME"

failures=0
pass() { echo "ok    $*"; }
fail() { echo "FAIL  $*"; failures=$((failures + 1)); }

# The commit the archive claims, read from its generated identity module.
commit=$(python3 - "$pyz" <<'EOF'
import sys, zipfile
src = zipfile.ZipFile(sys.argv[1]).read("site-packages/cisfix/_build.py").decode()
print(dict(line.split(" = ", 1) for line in src.splitlines() if " = " in line)["COMMIT"].strip('"')[:12])
EOF
) || { echo "FAIL  $pyz has no build identity"; exit 1; }
version_re="^cisfix [0-9][^ ]* \(commit ${commit}(-dirty)?, built [0-9T:-]+Z\)$"

# expect_version NAME COMMAND...: the command prints exactly one version line naming the commit.
expect_version() {
    local name=$1 out; shift
    if out=$("$@" 2>&1) && [[ $out =~ $version_re ]]; then pass "$name"; else fail "$name: $out"; fi
}

interpreters=()
if command -v pyenv >/dev/null; then
    for v in $(pyenv versions --bare | grep -E '^3\.(9|1[0-3])\.[0-9]+$'); do
        interpreters+=("$(pyenv root)/versions/$v/bin/python")
    done
fi
if [[ ${#interpreters[@]} -eq 0 ]]; then
    echo "no pyenv CPython 3.9-3.13 found; testing python3 only"
    interpreters=("$(command -v python3)")
fi

can_mount=false
unshare -m true 2>/dev/null && can_mount=true

# The kubeadm-shaped node the test kit ships, and the declarative checks the tests use.
sample=$repo/cisfix/testing/node
acme=$repo/tests/data/checks
buggy=$work/buggy-checks  # a plugin whose report format has a bug
mkdir -m 0755 "$buggy"
printf 'import cisfix\n\n\ndef render(results, summary):\n    return {}["no such key"]\n\n\n@cisfix.hookimpl\ndef cisfix_register_report_formats():\n    return [cisfix.ReportFormat("buggy", render)]\n' >"$buggy/buggy.py"
apiserver=/etc/kubernetes/manifests/kube-apiserver.yaml
echo "archive $pyz (commit $commit), sample node $sample"

for py in "${interpreters[@]}"; do
    v=$("$py" -c 'import platform; print(platform.python_version())')
    # A PATH whose python3 is this interpreter, for the shebang and env -i runs.
    bin=$work/bin-$v
    mkdir -p "$bin" && ln -sf "$py" "$bin/python3"
    root=$work/root-$v
    echo "--- CPython $v"

    expect_version "$v first run (extraction)" env SHIV_ROOT="$root" "$py" "$pyz" --version
    expect_version "$v warm run" env SHIV_ROOT="$root" "$py" "$pyz" --version
    expect_version "$v ./cisfix.pyz via shebang" env PATH="$bin:$PATH" SHIV_ROOT="$root" "$pyz" --version
    expect_version "$v env -i (cron)" env -i PATH="$bin:/usr/bin:/bin" "$pyz" --version
    expect_version "$v HOME unset" env -u HOME PATH="$bin:$PATH" "$pyz" --version

    if $can_mount; then
        rohome=$work/rohome-$v
        mkdir -p "$rohome"
        expect_version "$v read-only HOME" unshare -m sh -c \
            'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && HOME="$1" PATH="$2" exec "$3" --version' \
            sh "$rohome" "$bin:$PATH" "$pyz"
        [[ -z $(ls -A "$rohome") ]] || fail "$v read-only HOME: something was written to it"
    else
        echo "skip  $v read-only HOME: cannot create a mount namespace here"
    fi

    imports=$(SHIV_ROOT="$root" "$py" -X importtime "$pyz" --version 2>&1 >/dev/null \
        | grep -oE '\| +(ruamel\.yaml|jsonschema)[^ ]*' | sort -u | tr '\n' ' ')
    if [[ -z $imports ]]; then pass "$v --version imports neither ruamel.yaml nor jsonschema"
    else fail "$v --version imports $imports"; fi

    # Concurrent first runs: shiv's flock must let exactly one extract while the others wait.
    croot=$work/concurrent-$v
    for i in 1 2 3 4 5 6; do
        SHIV_ROOT="$croot" "$py" "$pyz" --version >"$work/concurrent-$v.$i" 2>&1 &
    done
    ok=true
    for i in 1 2 3 4 5 6; do
        wait -n || ok=false
    done
    for i in 1 2 3 4 5 6; do
        [[ $(cat "$work/concurrent-$v.$i") =~ $version_re ]] || ok=false
    done
    extractions=$(find "$croot" -mindepth 1 -maxdepth 1 -type d | wc -l)
    if $ok && [[ $extractions -eq 1 ]]; then pass "$v 6 concurrent first runs, 1 extraction"
    else fail "$v concurrent first runs: $(cat "$work/concurrent-$v".*), $extractions directories"; fi

    # The older runner's scripts, run with only the archive on the path (build/pyz_import.py).
    if out=$(cd "$work" && SHIV_ROOT="$root" PYTHONPATH="$pyz" "$py" -c \
        'import cis_k8s_unified, cisfix; print(cis_k8s_unified.CISUnifiedRunner is cisfix.Runner)' 2>&1) \
        && [[ $out == True ]]; then
        pass "$v PYTHONPATH=cisfix.pyz: import cis_k8s_unified"
    else
        fail "$v PYTHONPATH=cisfix.pyz import cis_k8s_unified: $out"
    fi

    node=$work/node-$v
    cp -r "$sample" "$node"
    chmod 600 "$node"/etc/kubernetes/manifests/*
    # A copied tree with nothing running on it: an offline node, so changes are not health-gated.
    mkdir -p "$node/etc/cisfix"
    printf 'apiVersion: cisfix/v1\nkind: NodeConfig\noffline: true\n' >"$node/etc/cisfix/config.yaml"
    # As cron would run it: nothing in the environment but PATH.
    cron=(env -i PATH="$bin:/usr/bin:/bin" "$pyz" --root "$node")
    if out=$("${cron[@]}" edit $apiserver --flag profiling=false --format json 2>&1) \
        && "$py" -c 'import json, sys; d = json.loads(sys.argv[1]); sys.exit(not (d["success"] and d["status"] == "FIXED"))' "$out" \
        && grep -q -- '- --profiling=false$' "$node$apiserver"; then
        pass "$v edit --flag profiling=false"
    else
        fail "$v edit: $out"
    fi
    if out=$("${cron[@]}" history --format json 2>&1) \
        && "$py" -c 'import json, sys; h = json.loads(sys.argv[1]); sys.exit(not (len(h) == 1 and h[0]["state"] == "committed"))' "$out"; then
        pass "$v history --format json"
    else
        fail "$v history: $out"
    fi
    # Killed before its commit, then recovered: the file is back byte for byte.
    before=$(sha256sum <"$node$apiserver")
    (env -i PATH="$bin:/usr/bin:/bin" CISFIX_FAULT=before-commit "$pyz" --root "$node" edit $apiserver \
        --flag audit-log-maxage=30 >/dev/null 2>&1) 2>/dev/null
    if out=$("${cron[@]}" recover 2>&1) && [[ $(sha256sum <"$node$apiserver") == "$before" ]] && [[ $out == *"restored from backup"* ]]; then
        pass "$v crash before commit, then recover"
    else
        fail "$v recover: $out"
    fi
    # Package data from inside the archive: the schema, the bundled checks.d, declarative checks.
    if out=$("${cron[@]}" --checks-dir "$acme" audit --format json 2>&1; true) \
        && "$py" -c 'import json, sys; r = {x["id"]: x["status"] for x in json.loads(sys.argv[1])["results"]}; sys.exit(not (r["CISFIX-1"] == "PASS" and r["ACME-1"] == "PASS" and r["ACME-2"] == "FAIL"))' "$out"; then
        pass "$v audit with bundled and --checks-dir checks"
    else
        fail "$v audit: $out"
    fi
    # A bug (a plugin's, here) is exit 70, its traceback shown with -v in this CPython's own form.
    out=$("${cron[@]}" -v --checks-dir "$buggy" audit --format buggy 2>&1) && code=0 || code=$?
    if [[ $code -eq 70 && $out == *"Traceback (most recent call last)"* && $out == *"internal error (exit 70): KeyError"* ]]; then
        pass "$v internal error with -v: exit 70 and the traceback"
    else
        fail "$v internal error with -v (exit $code): $out"
    fi
done

echo "--- once"
if [[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))'; then
    expect_version "env -i PATH=/usr/bin:/bin (system $(/usr/bin/python3 -V))" env -i PATH=/usr/bin:/bin "$pyz" --version
fi
# An extraction root someone else can write must be refused, not used.
mkdir -m 0777 "$work/shared" && mkdir "$work/shared/root"
if out=$(SHIV_ROOT=$work/shared/root python3 "$pyz" --version 2>&1); then
    fail "SHIV_ROOT under a world-writable directory was accepted: $out"
elif [[ $out == *"refusing SHIV_ROOT"* ]]; then
    pass "SHIV_ROOT under a world-writable directory refused"
else
    fail "SHIV_ROOT under a world-writable directory: $out"
fi

echo "smoke: ${#interpreters[@]} interpreters, $failures failure(s)"
[[ $failures -eq 0 ]]
