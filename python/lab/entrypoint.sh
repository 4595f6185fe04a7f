#!/bin/sh
# mammogan:lab's entrypoint: JupyterLab, always behind a token.
#   JUPYTER_TOKEN set and non-empty: that token;  unset: a random one, printed;  set but empty: refused.
# Arguments: none -> JupyterLab on 0.0.0.0:8888 inside the container (publish it on the host's loopback:
# `docker run -p 127.0.0.1:8888:8888 ...`); options (starting with -) are passed to `jupyter lab`, except
# any that would change the token or password; anything else is run as a command (e.g. `jupyter execute NB`).
set -eu
if [ "${JUPYTER_TOKEN+set}" = set ]; then
  if [ -z "$JUPYTER_TOKEN" ]; then
    echo "mammogan-lab: JUPYTER_TOKEN is empty: refusing to start a server anyone reaching the port could use; set a token or leave the variable unset to get a generated one" >&2
    exit 2
  fi
else
  JUPYTER_TOKEN="$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
  echo "mammogan-lab: generated token (set JUPYTER_TOKEN to choose one): $JUPYTER_TOKEN" >&2
  echo "mammogan-lab: open http://127.0.0.1:8888/lab?token=$JUPYTER_TOKEN" >&2
fi
export JUPYTER_TOKEN
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  exec "$@"
fi
for a in "$@"; do
  case "$a" in
    *token*|*password*|*Token*|*Password*|*disable_check_xsrf*|*allow_unauthenticated*)
      echo "mammogan-lab: $a: the token is set through JUPYTER_TOKEN only" >&2; exit 2 ;;
  esac
done
# The example notebooks, where JupyterLab shows them (the image's copy is read-only): once, never over a
# user's own.
ROOT="${MAMMOGAN_LAB_ROOT:-/work}"
if [ -d /opt/mammogan-lab/notebooks ] && [ ! -e "$ROOT/notebooks" ]; then
  cp -r /opt/mammogan-lab/notebooks "$ROOT/notebooks" 2>/dev/null || echo "mammogan-lab: $ROOT is not writable: the example notebooks stay in /opt/mammogan-lab/notebooks" >&2
fi
# The token travels in the environment (jupyter_server reads JUPYTER_TOKEN), not on the command line.
# 0.0.0.0 inside the container so that Docker can forward to it (publish on the host's 127.0.0.1);
# MAMMOGAN_LAB_IP / _PORT / _ROOT change the address, port and notebook folder (e.g. outside a container).
exec jupyter lab --ip="${MAMMOGAN_LAB_IP:-0.0.0.0}" --port="${MAMMOGAN_LAB_PORT:-8888}" --no-browser \
  --ServerApp.root_dir="$ROOT" "$@"
