# Source this file (bash/zsh):  source tools/toolchain/env.sh
# Puts the offline Pulumi toolchain built by tools/toolchain/build.sh on PATH.
_tp_tc_here="$(cd "$(dirname "${BASH_SOURCE[0]:-${(%):-%x}}")" && pwd)"
# shellcheck source=versions.env
. "$_tp_tc_here/versions.env"
export TRADEPULSE_TOOLCHAIN_DIR="${TRADEPULSE_TOOLCHAIN_DIR:-$HOME/.cache/tradepulse-vault/toolchain}"
case ":$PATH:" in
  *":$TRADEPULSE_TOOLCHAIN_DIR/bin:"*) ;;
  *) export PATH="$TRADEPULSE_TOOLCHAIN_DIR/bin:$PATH" ;;
esac
# Plugins (vault, kubernetes, random) are installed into this PULUMI_HOME by build.sh.
export PULUMI_HOME="$TRADEPULSE_TOOLCHAIN_DIR/pulumi-home"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
if [ ! -x "$TRADEPULSE_TOOLCHAIN_DIR/bin/pulumi" ]; then
  echo "tools/toolchain/env.sh: no toolchain in $TRADEPULSE_TOOLCHAIN_DIR yet; run tools/toolchain/build.sh" >&2
fi
unset _tp_tc_here
