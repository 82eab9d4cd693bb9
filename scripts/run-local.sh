#!/usr/bin/env bash
# `make run`: a local fleet on this machine, with one sample job of each kind.
# Starts redis-server only when none answers at STEPPER_REDIS_URL, a worker consuming every queue and Flower;
# on Ctrl-C it stops exactly what it started. Logs go to .run/.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=.venv/bin
RUN=.run
mkdir -p "$RUN"
export STEPPER_REDIS_URL="${STEPPER_REDIS_URL:-redis://127.0.0.1:6379/0}"
# hybrid: real providers where keys are configured, labelled mocks elsewhere, so a fresh machine shows every kind.
export STEPPER_MODE="${STEPPER_MODE:-hybrid}"
FLOWER_PORT="${FLOWER_PORT:-5555}"
GATEWAY_PORT="${GATEWAY_PORT:-8000}"
# The HTTP gateway runs with a key made for this run (loopback only, but a key keeps its behaviour the same as
# in production): its digest is configured, the key itself is printed at the end and stored nowhere.
{ read -r _ GATEWAY_KEY; read -r _ STEPPER_GATEWAY_KEY_HASHES; } < <("$BIN/stepper" gateway new-key 2>/dev/null)
export STEPPER_GATEWAY_KEY_HASHES
export STEPPER_FLOWER_USER="${STEPPER_FLOWER_USER:-stepper}"
export STEPPER_FLOWER_PASSWORD="${STEPPER_FLOWER_PASSWORD:-$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(12))')}"

started=()
stop_started() {
  trap - EXIT INT TERM
  if [ ${#started[@]} -gt 0 ]; then
    echo
    echo "==> stopping what make run started (pids ${started[*]})"
    kill -TERM "${started[@]}" 2>/dev/null || true
    wait "${started[@]}" 2>/dev/null || true
  fi
  exit 0
}
trap stop_started EXIT INT TERM

redis_answers() {
  "$BIN/python" - "$STEPPER_REDIS_URL" <<'PY' >/dev/null 2>&1
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PY
}

if redis_answers; then
  echo "==> Redis answers at $STEPPER_REDIS_URL; using it"
else
  read -r host port < <("$BIN/python" -c 'import sys, urllib.parse as u; p = u.urlparse(sys.argv[1]); print(p.hostname or "127.0.0.1", p.port or 6379)' "$STEPPER_REDIS_URL")
  case "$host" in
    127.0.0.1|localhost|::1) ;;
    *) echo "Redis at $STEPPER_REDIS_URL does not answer; start it or point STEPPER_REDIS_URL at one that does" >&2; exit 1 ;;
  esac
  echo "==> starting redis-server on $host:$port (no persistence; log in $RUN/redis.log)"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --maxmemory-policy noeviction \
    --logfile "$PWD/$RUN/redis.log" &
  started+=($!)
  for _ in $(seq 50); do redis_answers && break; sleep 0.1; done
  redis_answers || { echo "redis-server did not start; see $RUN/redis.log" >&2; exit 1; }
fi

echo "==> starting a worker on every queue (mode $STEPPER_MODE; log in $RUN/worker.log)"
"$BIN/celery" -A stepper worker --loglevel INFO --hostname "local@%h" >"$RUN/worker.log" 2>&1 &
started+=($!)

echo "==> starting Flower on http://127.0.0.1:$FLOWER_PORT (log in $RUN/flower.log)"
"$BIN/stepper" flower --address=127.0.0.1 --port="$FLOWER_PORT" >"$RUN/flower.log" 2>&1 &
started+=($!)

echo "==> starting the HTTP gateway on http://127.0.0.1:$GATEWAY_PORT (log in $RUN/gateway.log)"
"$BIN/stepper" gateway --host 127.0.0.1 --port "$GATEWAY_PORT" >"$RUN/gateway.log" 2>&1 &
started+=($!)

echo -n "==> waiting for the worker to be ready"
for _ in $(seq 120); do
  grep -q "ready\." "$RUN/worker.log" 2>/dev/null && break
  kill -0 "${started[-3]}" 2>/dev/null || { echo; echo "the worker exited; see $RUN/worker.log" >&2; tail -n 20 "$RUN/worker.log" >&2; exit 1; }
  echo -n "."
  sleep 0.5
done
echo
grep -q "ready\." "$RUN/worker.log" || { echo "the worker is not ready after 60 s; see $RUN/worker.log" >&2; exit 1; }

# Flower counts only the tasks whose events it receives, and workers send task events only once Flower has switched
# them on (it does so every few seconds while it runs; they are off in stepper/config.py, for throughput): wait for
# the worker to say so before the demo, or Flower shows 0 tasks processed after it.
echo -n "==> waiting for Flower to switch on the worker's task events"
for _ in $(seq 60); do
  grep -q "Events of group {task} enabled by remote" "$RUN/worker.log" 2>/dev/null && break
  kill -0 "${started[-2]}" 2>/dev/null || { echo; echo "Flower exited; see $RUN/flower.log" >&2; break; }
  echo -n "."
  sleep 0.5
done
echo
grep -q "Events of group {task} enabled by remote" "$RUN/worker.log" \
  || echo "Flower has not switched on task events yet; it may miss the demo's tasks (see $RUN/flower.log)"

# The six sample jobs, then a narrated how-to guide built from stepper/samples/howto.webm into $RUN/guide.
"$BIN/stepper" demo --timeout 120 --guide-out "$RUN/guide" || echo "some sample jobs failed; see $RUN/worker.log"

echo
echo "==> the same fleet through the HTTP gateway, with the official openai SDK (streamed)"
GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT" GATEWAY_KEY="$GATEWAY_KEY" "$BIN/python" - <<'PY' \
  || echo "the gateway did not answer; see $RUN/gateway.log"
import os, sys, time
import requests
from openai import OpenAI

base = os.environ["GATEWAY_URL"]
for _ in range(100):  # the gateway may still be starting
    try:
        requests.get(f"{base}/health", timeout=1).raise_for_status()
        break
    except requests.RequestException:
        time.sleep(0.2)
client = OpenAI(base_url=f"{base}/v1", api_key=os.environ["GATEWAY_KEY"])
print("    models:", ", ".join(model.id for model in client.models.list()))
print("    chat:   ", end="")
for chunk in client.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "What is a circuit breaker?"}], stream=True
):
    print(chunk.choices[0].delta.content or "" if chunk.choices else "", end="", flush=True)
print()
PY

cat <<MSG

==> the fleet is serving.
    Flower:   http://127.0.0.1:$FLOWER_PORT  (user $STEPPER_FLOWER_USER, password $STEPPER_FLOWER_PASSWORD)
    Submit:   $BIN/stepper submit chat '{"messages": [{"role": "user", "content": "hello"}]}'
    Guide:    $PWD/$RUN/guide/guide.html  (the how-to guide of stepper/samples/howto.webm; again:
                $BIN/stepper workflow run howto stepper/samples/howto.webm --out $RUN/guide)
    Gateway:  http://127.0.0.1:$GATEWAY_PORT/docs  (API key $GATEWAY_KEY, valid while make run runs)
    HTTP:     curl -s -H "Authorization: Bearer $GATEWAY_KEY" -H 'Content-Type: application/json' \\
                -d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}' \\
                http://127.0.0.1:$GATEWAY_PORT/v1/chat/completions
    Logs:     $RUN/worker.log, $RUN/flower.log, $RUN/gateway.log
    Press Ctrl-C to stop what make run started.
MSG
wait
