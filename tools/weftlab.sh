# tools/weftlab.sh: shell functions shared by tools/lab, tools/perf, tools/demo, tools/scale
# and tools/bench-vs-iperf3. Source it (after setting REPO, PREFIX, WORKDIR); it is not a command.
# Callers print wl_weft_logs on failure (from their EXIT trap).
# Nothing here touches the root namespace: everything goes through `weft lab` (run wl_weft_bin
# first), whose namespaces are the only place anything is created.

WEFT_PIDS=()

wl_lab() { "$WEFT" lab "$@"; }
# Exit traps call this whether or not the lab (or even $WEFT) came to exist.
wl_lab_down() { [[ -z "${WEFT:-}" ]] || "$WEFT" lab down --prefix "$PREFIX" "$@"; }
wl_exec() { local node="$1"; shift; "$WEFT" lab exec --prefix "$PREFIX" "$node" -- "$@"; }
# `weft lab up` keeps a lab's state here, including each node's subnet.env in weft mode.
wl_state() { echo "/run/weft-lab/$PREFIX"; }

# Resolve WEFT_BIN to an absolute path. Without WEFT_BIN, build the release binary
# (an up-to-date build is a no-op), so a stale binary is never measured.
wl_weft_bin() {
  local bin="${WEFT_BIN:-.build/release/weft}"
  [[ "$bin" == /* ]] || bin="$REPO/$bin"
  if [[ -n "${WEFT_BIN:-}" ]]; then
    [[ -x "$bin" ]] || { echo "weft binary '$bin' (WEFT_BIN) not found or not executable" >&2; return 1; }
  else
    echo "building: swift build -c release --product weft" >&2
    (cd "$REPO" && swift build -c release --product weft) >&2
    [[ -x "$bin" ]] || { echo "build did not produce $bin" >&2; return 1; }
  fi
  WEFT="$bin"
}

# wl_start_weft NODE SUBNET PEER: start `weft run` in P-NODE in the background
# under timeout (generous bound; SIGTERM from us is forwarded by timeout).
# Extra flags for weft run come from the array WEFT_EXTRA_ARGS (e.g. --no-offload).
# WEFT_LEASES=registry: no --subnet/--peer; the nodes lease their subnets from a file
# registry in $WORKDIR/registry, as flanneld does from etcd. The lab's pods are wired for
# SUBNET, so each node's subnet.env (written by `weft lab up --mode weft` in $(wl_state))
# names it as its previous subnet, which a node takes again when it is free (flanneld's
# restart rule).
# WEFT_LEASES=etcd: the same, but leasing from etcd at $WL_ETCD_ENDPOINT (see wl_start_etcd)
# with --etcd-endpoints instead of the file registry. Default: static peers.
wl_start_weft() {
  local node="$1" subnet="$2" peer="$3" bound="${WEFT_MAX_SECONDS:-600}" leases=()
  case "${WEFT_LEASES:-static}" in
    registry|etcd)
      local env
      env="$(wl_state)/subnet-$node.env"
      [[ -f "$env" ]] || { echo "$env missing: build the lab with weft lab up --mode weft" >&2; return 1; }
      if [[ "$WEFT_LEASES" == etcd ]]; then
        leases=(--etcd-endpoints "$WL_ETCD_ENDPOINT" --subnet-file "$env")
      else
        leases=(--subnet-dir "$WORKDIR/registry" --subnet-file "$env")
      fi
      ;;
    static) leases=(--subnet "$subnet" --peer "$peer") ;;
    *) echo "WEFT_LEASES='$WEFT_LEASES': expected static, registry or etcd" >&2; return 1 ;;
  esac
  # Not via a shell function: $! must be the PID of timeout itself
  # (weft lab exec execs ip netns exec, which execs timeout).
  "$WEFT" lab exec --prefix "$PREFIX" "$node" -- timeout -k 5 "$bound" "$WEFT" run --iface ul0 --network 10.244.0.0/16 \
    "${leases[@]}" ${WEFT_EXTRA_ARGS[@]+"${WEFT_EXTRA_ARGS[@]}"} >"$WORKDIR/weft-$node.log" 2>&1 &
  WEFT_PIDS+=($!)
}

wl_start_weft_both() {
  wl_start_weft nodeA 10.244.1.0/24 10.244.2.0/24=198.18.0.2
  wl_start_weft nodeB 10.244.2.0/24 10.244.1.0/24=198.18.0.1
}

# etcd for WEFT_LEASES=etcd and tools/scale: one member inside P-nodeA only, clients on
# the underlay address 198.18.0.1:2379, peers on 127.0.0.1:2380 (nodeA's own loopback),
# data in $WORKDIR/etcd, log in $WORKDIR/etcd.log. Bounded by timeout; weft lab down
# kills it with the namespace in any case.
WL_ETCD_ENDPOINT="http://198.18.0.1:2379"
WL_ETCD_PID=""
wl_etcdkv() { wl_exec nodeA timeout 60 python3 "$REPO/tools/testpeers/etcdkv.py" --endpoint "$WL_ETCD_ENDPOINT" "$@"; }
wl_start_etcd() {
  local bound="${WEFT_MAX_SECONDS:-600}"
  command -v etcd >/dev/null || { echo "etcd not found on PATH (apt-get install etcd-server)" >&2; return 1; }
  "$WEFT" lab exec --prefix "$PREFIX" nodeA -- timeout -k 5 "$bound" etcd --name weft-lab \
    --data-dir "$WORKDIR/etcd" \
    --listen-client-urls "$WL_ETCD_ENDPOINT" --advertise-client-urls "$WL_ETCD_ENDPOINT" \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster weft-lab=http://127.0.0.1:2380 >"$WORKDIR/etcd.log" 2>&1 &
  WL_ETCD_PID=$!
  if ! wl_etcdkv health --wait 15; then
    echo "--- last lines of etcd.log" >&2; tail -n 15 "$WORKDIR/etcd.log" >&2 || true
    return 1
  fi
}
# SIGTERM etcd, wait up to 5 s, then SIGKILL. Returns 0.
wl_stop_etcd() {
  local i
  [[ -n "$WL_ETCD_PID" ]] || return 0
  kill -TERM "$WL_ETCD_PID" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$WL_ETCD_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$WL_ETCD_PID" 2>/dev/null || true
  wait "$WL_ETCD_PID" 2>/dev/null || true
  WL_ETCD_PID=""
}

wl_weft_logs() {
  local f
  for f in "$WORKDIR"/weft-*.log; do
    [[ -e "$f" ]] || continue
    echo "--- last lines of $(basename "$f")" >&2
    tail -n 15 "$f" >&2 || true
  done
}

# Wait (<= 10 s) until flannel0 exists in both nodes and the forwarders live.
wl_wait_flannel0() {
  local i n ok pid
  for ((i = 0; i < 100; i++)); do
    for pid in "${WEFT_PIDS[@]}"; do
      kill -0 "$pid" 2>/dev/null || { echo "weft (pid $pid) exited early" >&2; return 1; }
    done
    ok=1
    for n in nodeA nodeB; do
      ip -n "$PREFIX-$n" link show flannel0 >/dev/null 2>&1 || ok=0
    done
    ((ok)) && return 0
    sleep 0.1
  done
  echo "flannel0 did not appear in both nodes within 10 s" >&2
  return 1
}

# Confirm pod B holds 10.244.2.2, then ping it from pod A (up to 5 tries of 1 s).
wl_wait_ping() {
  local i
  ip -n "$PREFIX-podB" -4 addr show dev eth0 | grep 'inet 10\.244\.2\.2/' >/dev/null \
    || { echo "10.244.2.2 not present in $PREFIX-podB" >&2; return 1; }
  for ((i = 0; i < 5; i++)); do
    wl_exec podA timeout 3 ping -c 1 -W 1 -q 10.244.2.2 >/dev/null 2>&1 && return 0
  done
  echo "ping pod A -> pod B (10.244.2.2) failed" >&2
  return 1
}

# SIGTERM each forwarder, wait up to 10 s, then SIGKILL. Returns 0.
wl_stop_weft() {
  local pid i alive
  ((${#WEFT_PIDS[@]})) || return 0
  for pid in "${WEFT_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 100; i++)); do
    alive=0
    for pid in "${WEFT_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${WEFT_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null && { echo "weft (pid $pid) ignored SIGTERM for 10 s; killing" >&2; kill -KILL "$pid" 2>/dev/null || true; }
    wait "$pid" 2>/dev/null || true
  done
  WEFT_PIDS=()
}

# wl_iperf SECONDS STREAMS OUTJSON: iperf3 TCP pod A -> pod B; prints Gbit/s.
wl_iperf() {
  local secs="$1" streams="$2" out="$3" spid i rc=0
  "$WEFT" lab exec --prefix "$PREFIX" podB -- timeout -k 2 $((secs + 30)) iperf3 -s -B 10.244.2.2 -p 5201 -1 \
    >"$out.server" 2>&1 &
  spid=$!
  for ((i = 0; i < 50; i++)); do
    ip netns exec "$PREFIX-podB" ss -Hltn 'sport = :5201' 2>/dev/null | grep 5201 >/dev/null && break
    sleep 0.1
  done
  wl_exec podA timeout -k 2 $((secs + 20)) iperf3 -c 10.244.2.2 -p 5201 -t "$secs" -P "$streams" -J >"$out" 2>&1 || rc=$?
  kill -TERM "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  if ((rc != 0)); then
    echo "iperf3 client failed (rc=$rc):" >&2; tail -n 20 "$out" >&2; return 1
  fi
  python3 - "$out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
if "error" in d:
    sys.exit("iperf3: " + d["error"])
print("%.2f" % (d["end"]["sum_received"]["bits_per_second"] / 1e9))
PY
}
