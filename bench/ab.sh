#!/usr/bin/env bash
# ab.sh SCENARIO REPS DURATION NAME=CMD [NAME=CMD...]
#
# Runs loadgen SCENARIO (bench/out/loadgen, built by `deno task bench`) against each broker in
# turn, a fresh broker per run, the order reversed every other repetition; broker on CPU 0, loadgen
# on CPU 1. CMD is run by bash with {PORT} replaced; it must listen on 127.0.0.1. One loadgen JSON
# line per run on stdout (label NAME#REP). For A/B runs of variants that `deno task bench` cannot
# put in one table (several builds of our broker, bench/floor.ts, V8 flags):
#
#   bench/ab.sh latency 7 3 "mosquitto=mosquitto -p {PORT}" \
#     "ours=deno run --allow-net cli.ts --host 127.0.0.1 --port {PORT} --log-level warn" \
#     "floor=deno run --allow-net bench/floor.ts --port {PORT} --flush immediate" > ab.jsonl
set -u
[ $# -ge 4 ] || { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
SCEN=$1; REPS=$2; DUR=$3; shift 3
LG="$(cd "$(dirname "$0")" && pwd)/out/loadgen"
[ -x "$LG" ] || { echo "ab.sh: $LG missing (run deno task bench once)" >&2; exit 2; }
names=(); cmds=()
for a in "$@"; do names+=("${a%%=*}"); cmds+=("${a#*=}"); done
for rep in $(seq 1 "$REPS"); do
	idx=$(seq 0 $((${#names[@]} - 1)))
	[ $((rep % 2)) = 0 ] && idx=$(echo "$idx" | tac)
	for i in $idx; do
		PORT=$((20000 + RANDOM % 20000))
		cmd=${cmds[$i]//\{PORT\}/$PORT}
		setsid taskset -c 0 bash -c "ulimit -n 65536 2>/dev/null || ulimit -n \$(ulimit -Hn); exec $cmd" >/dev/null 2>&1 &
		for _ in $(seq 1 100); do "$LG" probe --port $PORT --timeout 1 >/dev/null 2>&1 && break; sleep 0.1; done
		PID=$(ss -ltnp "sport = :$PORT" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
		taskset -c 1 "$LG" "$SCEN" --port $PORT --pid "${PID:-0}" --duration "$DUR" --label "${names[$i]}#$rep"
		if [ -n "$PID" ]; then
			PG=$(ps -o pgid= "$PID" | tr -d ' ')
			kill -TERM -- "-$PG" 2>/dev/null
			sleep 0.5
			kill -KILL -- "-$PG" 2>/dev/null
		fi
		wait 2>/dev/null
	done
done
