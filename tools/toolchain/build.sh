#!/usr/bin/env bash
# Builds the offline Pulumi toolchain (pulumi CLI, python language host, provider plugins
# kubernetes / random / vault) and the Kubernetes API server the tests and `make up` run
# (kube-apiserver + kubectl, on Debian's etcd) from Go modules, in lanes side by side, into
# a cache OUTSIDE the repository: ${TRADEPULSE_TOOLCHAIN_DIR:-$HOME/.cache/tradepulse-vault/toolchain}
# Idempotent: each component has a stamp (pinned versions + hash of its build inputs +
# Go version); a re-run with nothing changed exits in well under 2 s.
# Then:  source tools/toolchain/env.sh
#
# Usage: tools/toolchain/build.sh [--force] [component...]
#   components: pulumi language-python kubernetes random vault kube-apiserver (default: all)
#   TRADEPULSE_TOOLCHAIN_JOBS=N  at most N lanes at a time (default: all 4; 1 = one by one)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
. "$HERE/versions.env"

CACHE="${TRADEPULSE_TOOLCHAIN_DIR:-$HOME/.cache/tradepulse-vault/toolchain}"
BIN="$CACHE/bin"
STAMPS="$CACHE/stamps"
export PULUMI_HOME="$CACHE/pulumi-home"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true

FORCE=0
COMPONENTS=()
for a in "$@"; do
  case "$a" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    pulumi|language-python|kubernetes|random|vault|kube-apiserver) COMPONENTS+=("$a") ;;
    *) echo "build.sh: unknown argument: $a" >&2; exit 2 ;;
  esac
done
[ ${#COMPONENTS[@]} -gt 0 ] || COMPONENTS=(pulumi language-python kubernetes random vault kube-apiserver)

if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then PATH="/usr/local/go/bin:$PATH"; else
    echo "build.sh: go not found (need Go >= 1.26)" >&2; exit 1; fi
fi
GO_VERSION="$(go env GOVERSION)"
# Never fetch another Go toolchain; build with the committed go.sum files only. The
# binaries are linked without DWARF (-ldflags -w), so the compiler need not produce it
# either (less work per package, a smaller build cache). Every component builds with the
# same flags (-trimpath included), so what two components share hits one cache entry.
export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly -gcflags=all=-dwarf=false"

# Hash of a component's build inputs: the given files/dirs (sorted), versions.env,
# this script and the Go version. Generated embed files are excluded.
inputs_hash() {
  {
    echo "go=$GO_VERSION"
    # Paths relative to this directory: a clone in another folder (CI's) reuses the stamps.
    cd "$HERE" && find "${@/#$HERE\//}" versions.env build.sh -type f \
      ! -name '*-embed.json' ! -name '.gitignore' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -d' ' -f1
}

declare -A OUTPUTS=(
  [pulumi]="$BIN/pulumi"
  [language-python]="$BIN/pulumi-language-python"
  [kubernetes]="$PULUMI_HOME/plugins/resource-kubernetes-v$KUBERNETES_VERSION/pulumi-resource-kubernetes"
  [random]="$PULUMI_HOME/plugins/resource-random-v$RANDOM_VERSION/pulumi-resource-random"
  [vault]="$PULUMI_HOME/plugins/resource-vault-v$VAULT_VERSION/pulumi-resource-vault"
  [kube-apiserver]="$BIN/kube-apiserver"
)
declare -A INPUTS=(
  [pulumi]="$HERE/pulumi"
  [language-python]="$HERE/language-python"
  [kubernetes]="$HERE/kubernetes"
  [random]="$HERE/tfproviders"
  [vault]="$HERE/vault"
  [kube-apiserver]="$HERE/kube-apiserver"
)
stamp_value() { echo "$1 $(inputs_hash "${INPUTS[$1]}")"; }
up_to_date() {
  [ "$FORCE" = 0 ] && [ -x "${OUTPUTS[$1]}" ] && [ -f "$STAMPS/$1" ] &&
    [ "$(cat "$STAMPS/$1")" = "$(stamp_value "$1")" ]
}

# Fast path: everything current -> no logging, no go invocations beyond `go env`.
todo=()
for c in "${COMPONENTS[@]}"; do up_to_date "$c" || todo+=("$c"); done
if [ ${#todo[@]} -eq 0 ]; then
  echo "toolchain up to date in $CACHE (pulumi v$PULUMI_VERSION;" \
    "kubernetes $KUBERNETES_VERSION, random $RANDOM_VERSION, vault $VAULT_VERSION;" \
    "kube-apiserver v$KUBE_APISERVER_VERSION)" >&2
  exit 0
fi

mkdir -p "$BIN" "$STAMPS" "$PULUMI_HOME" "$CACHE/build" "$CACHE/src"
LOG="$CACHE/build.log"
exec > >(tee -a "$LOG") 2>&1
echo "=== $(date -u +%FT%TZ) build.sh: building ${todo[*]} into $CACHE ($GO_VERSION)" >&2

LDF_PULUMI="-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION"

# The directory of a Go module as the build list of the module in $1 pins it, downloaded
# first when it is not in the module cache yet (`go list -m -f {{.Dir}}` prints an empty
# string for a module nothing has downloaded). Every step that needs a module's files
# resolves them here, so no step depends on what an earlier build left in the cache.
module_dir() { # go-module-dir module-path
  local dir
  dir="$(cd "$1" && go mod download -json "$2" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir","")); sys.exit(1 if d.get("Error") else 0)')" || {
    echo "build.sh: go mod download $2 (in $1) failed" >&2; return 1; }
  [ -n "$dir" ] && [ -d "$dir" ] || { echo "build.sh: no module directory for $2 (in $1)" >&2; return 1; }
  echo "$dir"
}

install_plugin() { # name version binary-or-directory
  "$BIN/pulumi" plugin rm resource "$1" "$2" --yes >/dev/null 2>&1 || true
  "$BIN/pulumi" plugin install resource "$1" "$2" --file "$3"
}

build_pulumi() {
  (cd "$HERE/pulumi" && go build -trimpath -ldflags "-s -w $LDF_PULUMI" \
    -o "$BIN/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
}

build_language-python() {
  (cd "$HERE/language-python" && go build -trimpath -ldflags "-s -w $LDF_PULUMI" \
    -o "$BIN/pulumi-language-python" .)
  local sdk
  sdk="$(module_dir "$HERE/language-python" github.com/pulumi/pulumi/sdk/v3)"
  install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$BIN/pulumi-language-python-exec"
  install -m 0644 "$HERE/language-python/config_pipe.py" "$BIN/config_pipe.py"
}

build_kubernetes() {
  local mod
  mod="$(module_dir "$HERE/kubernetes" github.com/pulumi/pulumi-kubernetes/provider/v4)"
  # Upstream's main embeds generated files absent from the module zip: provide them
  # (minified) from the module's committed schema.json / terraform-mapping.json.
  python3 -c 'import json,sys; json.dump(json.load(open(sys.argv[1])), open(sys.argv[2],"w"), separators=(",",":"))' \
    "$mod/cmd/pulumi-resource-kubernetes/schema.json" "$HERE/kubernetes/schema-embed.json"
  python3 -c 'import json,sys; json.dump(json.load(open(sys.argv[1])), open(sys.argv[2],"w"), separators=(",",":"))' \
    "$mod/cmd/pulumi-resource-kubernetes/terraform-mapping.json" "$HERE/kubernetes/terraform-mapping-embed.json"
  (cd "$HERE/kubernetes" && go build -trimpath \
    -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$KUBERNETES_VERSION" \
    -o "$CACHE/build/pulumi-resource-kubernetes" .)
}
install_kubernetes() {
  install_plugin kubernetes "$KUBERNETES_VERSION" "$CACHE/build/pulumi-resource-kubernetes"
}

build_random() {
  # terraform-provider-random's provider is in an internal package: build from a copy of
  # the (go.sum-verified) module in the cache plus one added file exporting it, wired in
  # with a generated -modfile (the committed go.mod/go.sum stay untouched).
  local mod src="$CACHE/src/terraform-provider-random@$TF_RANDOM_PSEUDO"
  mod="$(module_dir "$HERE/tfproviders" "$TF_RANDOM_MODULE@$TF_RANDOM_PSEUDO")"
  rm -rf "$src" && cp -r "$mod" "$src" && chmod -R u+w "$src"
  mkdir -p "$src/pulumiexport"
  cp "$HERE/tfproviders/overlay/random/export.go" "$src/pulumiexport/export.go"
  cp "$HERE/tfproviders/go.mod" "$CACHE/src/random.mod"
  cp "$HERE/tfproviders/go.sum" "$CACHE/src/random.sum"
  (cd "$HERE/tfproviders" && go mod edit -modfile="$CACHE/src/random.mod" -replace "$TF_RANDOM_MODULE=$src")
  (cd "$HERE/tfproviders" && go build -modfile="$CACHE/src/random.mod" -trimpath \
    -ldflags "-s -w -X main.Version=$RANDOM_VERSION" \
    -o "$CACHE/build/pulumi-resource-random" ./cmd/pulumi-resource-random)
}
install_random() { install_plugin random "$RANDOM_VERSION" "$CACHE/build/pulumi-resource-random"; }

build_vault() {
  # Upstream terraform-provider-vault (SDKv2 part) + bridge, with the Terraform plugin
  # libraries pinned by replace directives in vault/go.mod (no upstream file changed).
  local d="$HERE/vault" out="$CACHE/build/vault" got
  got="$(cd "$d" && go list -m -f '{{.Version}}' "$TF_VAULT_MODULE")"
  [ "$got" = "$TF_VAULT_PSEUDO" ] || {
    echo "build.sh: vault/go.mod has $TF_VAULT_MODULE $got, versions.env says $TF_VAULT_PSEUDO" >&2; return 1; }
  # One build: the binary generates its own Pulumi schema (-gen-schema), which is installed
  # beside it (schema.json, read at start) instead of embedded by a second build and link.
  rm -rf "$out" && mkdir -p "$out"
  (cd "$d" && go build -trimpath -ldflags "-s -w -X main.Version=$VAULT_VERSION" \
    -o "$out/pulumi-resource-vault" .)
  "$out/pulumi-resource-vault" -gen-schema "$out/schema.json"
}
install_vault() { install_plugin vault "$VAULT_VERSION" "$CACHE/build/vault"; }

build_kube-apiserver() {
  # k8s.io/kubernetes built as a dependency of kube-apiserver/go.mod (its staging modules
  # replaced by the published k8s.io/* v0.MINOR.PATCH). gitVersion etc. are set like the
  # upstream release build does (hack/lib/version.sh); without them /version says v0.0.0.
  local d="$HERE/kube-apiserver" got major minor
  got="$(cd "$d" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
  [ "$got" = "v$KUBE_APISERVER_VERSION" ] || {
    echo "build.sh: kube-apiserver/go.mod has k8s.io/kubernetes $got, versions.env says v$KUBE_APISERVER_VERSION" >&2; return 1; }
  # Fail early, naming the module, when the proxy cannot serve it (a plain `go build`
  # would only say "missing go.sum entry" or time out inside a dependency).
  module_dir "$d" "k8s.io/kubernetes" >/dev/null
  major="${KUBE_APISERVER_VERSION%%.*}"; minor="${KUBE_APISERVER_VERSION#*.}"; minor="${minor%%.*}"
  local v=k8s.io/component-base/version
  local ldf="-s -w -X $v.gitVersion=v$KUBE_APISERVER_VERSION -X $v.gitMajor=$major"
  ldf="$ldf -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
  # kubectl of the same release: TokenRequest (`kubectl create token`, 1.24+) and server-side
  # field validation; Debian's kubernetes-client is 1.20. One `go build` for both: the
  # packages are loaded once and the two links run side by side.
  (cd "$d" && go build -trimpath -ldflags "$ldf" -o "$BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
}

# Plugins are installed with the CLI, so make sure it exists first.
if [[ " ${todo[*]} " =~ \ (kubernetes|random|vault)\  ]] && ! [[ " ${todo[*]} " == *" pulumi "* ]] &&
  ! [ -x "$BIN/pulumi" ]; then
  todo=(pulumi "${todo[@]}")
fi

# Cold build times measured on a quiet 2-core machine with empty Go caches (module
# downloads included), one component after another; printed as the expectation so a long
# step never looks stuck.
declare -A COLD_SECONDS=([pulumi]=197 [language-python]=17 [kubernetes]=308 [random]=70 [vault]=96 [kube-apiserver]=480)
ordered=()
declare -A INDEX=()
for c in pulumi language-python kubernetes random vault kube-apiserver; do
  [[ " ${todo[*]} " == *" $c "* ]] && { ordered+=("$c"); INDEX[$c]=${#ordered[@]}; }
done

# Lanes run side by side; a lane builds its components one after another. Components whose
# go.mod files select the same versions of the modules they share (pulumi and
# language-python; vault and random) share a lane, so the second finds what the first
# compiled in the Go build cache (two builds compiling one package at the same time would
# each compile it). While one lane links (mostly on one core) or downloads modules (waiting
# on the network), the others compile. Longest first. TRADEPULSE_TOOLCHAIN_JOBS=1 runs the
# lanes one at a time.
LANES=("kube-apiserver" "kubernetes" "pulumi language-python" "vault random")
JOBS="${TRADEPULSE_TOOLCHAIN_JOBS:-${#LANES[@]}}"
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || { echo "build.sh: TRADEPULSE_TOOLCHAIN_JOBS must be a positive integer" >&2; exit 2; }
expect=0
for c in "${ordered[@]}"; do expect=$((expect + COLD_SECONDS[$c])); done
echo "=== ${#ordered[@]} component(s) to build, up to $JOBS lane(s) at a time; cold on a quiet" \
  "2-core machine one after another they took about $((expect / 60)) min" \
  "(a rebuild with warm Go caches is much faster)" >&2

rm -rf "$CACHE/build"
RUNNING="$CACHE/build/running" DONE="$CACHE/build/done"
mkdir -p "$RUNNING" "$DONE"

# CPU seconds (user + system) of the finished children of the shell that ran `times > $1`.
cpu_seconds() {
  awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%d\n", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$1"
}

# One lane (a background subshell): its components in order, each output line prefixed
# with the component's name; a failure ends the lane with the failing status.
run_lane() {
  local c start cpu0 line t="$CACHE/build/times.$BASHPID"
  for c in "$@"; do
    start=$SECONDS
    echo "--- [${INDEX[$c]}/${#ordered[@]}] building $c (cold about ${COLD_SECONDS[$c]} s)" >&2
    date +%s > "$RUNNING/$c"
    rm -f "$STAMPS/$c"
    times > "$t"; cpu0=$(cpu_seconds "$t")
    "build_$c" 2>&1 | sed -u "s|^|    $c: |"
    times > "$t"
    rm -f "$RUNNING/$c"
    : > "$DONE/$c"
    line="--- [${INDEX[$c]}/${#ordered[@]}] $c: built in $((SECONDS - start)) s"
    line="$line (CPU $(($(cpu_seconds "$t") - cpu0)) s)"
    echo "$line" >&2
    # .ci/run's summary of where the time went (tools/phase_times.py) reads these lines.
    [ -z "${TRADEPULSE_PHASE_LOG:-}" ] || echo "$line" >> "$TRADEPULSE_PHASE_LOG"
  done
}

ticker=""
stop_ticker() { [ -z "$ticker" ] || { kill "$ticker" 2>/dev/null; wait "$ticker" 2>/dev/null || true; ticker=""; }; }
trap stop_ticker EXIT
# A heartbeat while the builds are silent: what is still building, every 30 s.
(s=""; trap '[ -z "$s" ] || kill "$s" 2>/dev/null; exit 0' TERM
 while :; do sleep 30 & s=$!; wait "$s"; now=$(date +%s); line=""
   for f in "$RUNNING"/*; do [ -f "$f" ] && line="$line ${f##*/} $((now - $(cat "$f"))) s,"; done
   [ -z "$line" ] || echo "    still building:${line%,}" >&2; done) &
ticker=$!

total_start=$SECONDS
declare -A LANE_OF_PID=()
failed=()
reap_lane() { # wait for one lane to end; remember what it did not build
  local pid="" st=0 c lost=()
  wait -n -p pid "${!LANE_OF_PID[@]}" || st=$?
  if [ "$st" != 0 ]; then
    for c in ${LANE_OF_PID[$pid]}; do [ -f "$DONE/$c" ] || lost+=("$c"); done
    failed+=("${lost[@]}")
    echo "build.sh: building ${lost[0]} failed (exit $st; its lines above say why); not built:" \
      "${lost[*]}; the other lanes run to their end" >&2
  fi
  unset "LANE_OF_PID[$pid]"
}
for lane in "${LANES[@]}"; do
  mine=()
  for c in $lane; do [[ " ${ordered[*]} " == *" $c "* ]] && mine+=("$c"); done
  [ ${#mine[@]} -gt 0 ] || continue
  [ ${#LANE_OF_PID[@]} -lt "$JOBS" ] || reap_lane
  run_lane "${mine[@]}" &
  LANE_OF_PID[$!]="${mine[*]}"
done
while [ ${#LANE_OF_PID[@]} -gt 0 ]; do reap_lane; done
stop_ticker

# Plugins are installed with the CLI once every lane has ended; a component gets its stamp
# only when it is built (and installed).
for c in "${ordered[@]}"; do
  [ -f "$DONE/$c" ] || continue
  if declare -F "install_$c" >/dev/null; then
    [ -x "$BIN/pulumi" ] || { failed+=("$c (not installed: no pulumi CLI)"); continue; }
    "install_$c"
  fi
  stamp_value "$c" > "$STAMPS/$c"
done
rm -rf "$CACHE/build"
if [ ${#failed[@]} -gt 0 ]; then
  echo "=== failed after $((SECONDS - total_start)) s: ${failed[*]}" >&2
  exit 1
fi
echo "=== done in $((SECONDS - total_start)) s; now: source tools/toolchain/env.sh" >&2
