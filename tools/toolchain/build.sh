#!/usr/bin/env bash
# Builds the offline Pulumi toolchain (pulumi CLI, python language host, provider plugins
# kubernetes / random / vault) and the Kubernetes API server the tests and `make up` run
# (kube-apiserver, on Debian's etcd) from Go modules
# into a cache OUTSIDE the repository:
#   ${TRADEPULSE_TOOLCHAIN_DIR:-$HOME/.cache/tradepulse-vault/toolchain}
# Idempotent: each component has a stamp (pinned versions + hash of its build inputs +
# Go version); a re-run with nothing changed exits in well under 2 s.
# Then:  source tools/toolchain/env.sh
#
# Usage: tools/toolchain/build.sh [--force] [component...]
#   components: pulumi language-python kubernetes random vault kube-apiserver (default: all)
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
# Never fetch another Go toolchain; build with the committed go.sum files only.
export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly"

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
stamp_value() { echo "$1 $(inputs_hash ${INPUTS[$1]})"; }
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

install_plugin() { # name version binary
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
  install_plugin random "$RANDOM_VERSION" "$CACHE/build/pulumi-resource-random"
}

build_vault() {
  # Upstream terraform-provider-vault (SDKv2 part) + bridge, with the Terraform plugin
  # libraries pinned by replace directives in vault/go.mod (no upstream file changed).
  local d="$HERE/vault" out="$CACHE/build/pulumi-resource-vault" got
  local ldf="-s -w -X main.Version=$VAULT_VERSION"
  got="$(cd "$d" && go list -m -f '{{.Version}}' "$TF_VAULT_MODULE")"
  [ "$got" = "$TF_VAULT_PSEUDO" ] || {
    echo "build.sh: vault/go.mod has $TF_VAULT_MODULE $got, versions.env says $TF_VAULT_PSEUDO" >&2; return 1; }
  # The binary generates its own Pulumi schema (-gen-schema), which is then embedded:
  # build, generate, rebuild (the second build only relinks).
  [ -f "$d/schema-embed.json" ] || echo '{}' > "$d/schema-embed.json"
  (cd "$d" && go build -trimpath -ldflags "$ldf" -o "$out" .)
  "$out" -gen-schema "$d/schema-embed.json"
  (cd "$d" && go build -trimpath -ldflags "$ldf" -o "$out" .)
  install_plugin vault "$VAULT_VERSION" "$out"
}

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
  (cd "$d" && go build -trimpath -ldflags "$ldf" \
    -o "$BIN/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
  # kubectl of the same release: TokenRequest (`kubectl create token`, 1.24+) and server-side
  # field validation; Debian's kubernetes-client is 1.20. Shares most packages (cache hits).
  (cd "$d" && go build -trimpath -ldflags "$ldf" -o "$BIN/kubectl" k8s.io/kubernetes/cmd/kubectl)
}

# Plugins are installed with the CLI, so make sure it exists first.
if [[ " ${todo[*]} " =~ \ (kubernetes|random|vault)\  ]] && ! [[ " ${todo[*]} " == *" pulumi "* ]] &&
  ! [ -x "$BIN/pulumi" ]; then
  todo=(pulumi "${todo[@]}")
fi

# Cold build times measured on a quiet 2-core machine with empty Go caches (module
# downloads included); printed as the expectation so a long step never looks stuck.
declare -A COLD_SECONDS=([pulumi]=197 [language-python]=17 [kubernetes]=308 [random]=70 [vault]=96 [kube-apiserver]=480)
ordered=()
for c in pulumi language-python kubernetes random vault kube-apiserver; do
  [[ " ${todo[*]} " == *" $c "* ]] && ordered+=("$c")
done
expect=0
for c in "${ordered[@]}"; do expect=$((expect + COLD_SECONDS[$c])); done
echo "=== ${#ordered[@]} component(s) to build; cold on 2 cores about $((expect / 60)) min" \
  "(a rebuild with warm Go caches is much faster)" >&2

ticker=""
stop_ticker() { [ -z "$ticker" ] || { kill "$ticker" 2>/dev/null; wait "$ticker" 2>/dev/null || true; ticker=""; }; }
trap stop_ticker EXIT
total_start=$SECONDS
n=0
for c in "${ordered[@]}"; do
  n=$((n + 1))
  start=$SECONDS
  echo "--- [$n/${#ordered[@]}] building $c (cold about ${COLD_SECONDS[$c]} s)" >&2
  # A heartbeat while `go build` is silent: elapsed time every 30 s.
  (t0=$(date +%s); s=""; trap '[ -z "$s" ] || kill "$s" 2>/dev/null; exit 0' TERM
   while :; do sleep 30 & s=$!; wait "$s"
     echo "    [$n/${#ordered[@]}] $c: still building, $(( $(date +%s) - t0 )) s" >&2; done) &
  ticker=$!
  rm -f "$STAMPS/$c"
  "build_$c"
  stop_ticker
  stamp_value "$c" > "$STAMPS/$c"
  echo "--- [$n/${#ordered[@]}] $c: $((SECONDS - start)) s" >&2
done
rm -rf "$CACHE/build"
echo "=== done in $((SECONDS - total_start)) s; now: source tools/toolchain/env.sh" >&2
