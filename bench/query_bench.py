#!/usr/bin/env python3
"""Many-series query benchmark: sydradb (this build and a baseline build) side by side with
VictoriaMetrics, on the issue-13 dataset, in one invocation.

Dataset: 4 metrics x H hosts (default 250) x N points (default 10,000) at 10 s from
T0 = 2023-11-14T22:00:00Z; gauges (cpu_usage, mem_used_percent) are random walks with 2
decimals, counters (net_rx_bytes_total, disk_ops_total) increasing integers; tags host
(h000...) and dc (dc0..dc3). Deterministic (seeded).

What it does, all on 127.0.0.1 with temporary directories:
  1. starts `sydradb serve` for --sydradb (and --baseline when given) and
     VictoriaMetrics (-retentionPeriod=100y), loads the same points into each (sydradb:
     NDJSON /api/v1/ingest, 10,000-point requests; VictoriaMetrics: /api/v1/import);
  2. waits for sydradb's memtable to be flushed, settles 5 s and records each process's
     RSS (and sydradb's /debug/alloc/stats committed and resident bytes);
  3. stops the sydradb daemons, runs `sydradb compact` on their data, restarts them; asks
     VictoriaMetrics to flush and force-merge, so both query fully merged data;
  4. runs the queries below in R interleaved rounds (the order of the targets rotates per
     round), each query K times per round on one keep-alive connection, and prints per
     query and target the median over rounds of the per-round p50 (and p90), with the ratio
     to VictoriaMetrics (or to the baseline).

Queries (ms timestamps for sydradb, s for VictoriaMetrics; the whole range):
  fleet_max_1h     one metric over every host, 1 h max per host:
                     select   GET /api/v1/query/select?match=cpu_usage&step=3600000&agg=max
                     range250 one GET /api/v1/query/range per host (today's way), sequential
                     vm       /api/v1/query_range?query=max_over_time(cpu_usage[1h])&step=3600
                     vm_nocache  the same with nocache=1 (VictoriaMetrics' rollup result
                              cache off: every request computes)
                     select_qt1  `select` on a copy of the same segments served with
                              query_threads=1 (with --compare-query-threads)
  fleet_max_by_dc  max by (dc) (max_over_time(cpu_usage[1h])): select with across=max&by=dc
  one_raw          one series, all its raw points: query/range; VictoriaMetrics /api/v1/export
  one_avg_1h       one series, 1 h avg buckets: query/range step+agg; VictoriaMetrics
                     avg_over_time(cpu_usage{host="h000"}[1h]) with step=3600 (nocache=1)

Writes --out/results.json and prints a table. Exit 0 when every request answered 200.
usage: bench/query_bench.py --sydradb build/release/cli/sydradb [--baseline OTHER/sydradb]
           [--vm /usr/bin/victoria-metrics] [--hosts 250] [--points 10000] [--rounds 5]
           [--reps 20] [--out build/query_bench] [--compare-query-threads] [--smoke]
"""
import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

T0 = 1_699_999_200_000  # 2023-11-14T22:00:00Z, hour-aligned
INTERVAL = 10_000
METRICS = [("cpu_usage", "gauge"), ("mem_used_percent", "gauge"), ("net_rx_bytes_total", "counter"),
           ("disk_ops_total", "counter")]


def dataset(hosts, points):
    """Yields (metric, host, dc, [values]) per series."""
    rng = random.Random(13)
    for metric, kind in METRICS:
        for h in range(hosts):
            host = "h%03d" % h
            values = []
            if kind == "gauge":
                v = rng.uniform(10, 90)
                for _ in range(points):
                    v = min(100.0, max(0.0, v + rng.uniform(-0.5, 0.5)))
                    values.append(round(v, 2))
            else:
                c = rng.randrange(1_000_000)
                for _ in range(points):
                    c += rng.randrange(1000)
                    values.append(c)
            yield metric, host, "dc%d" % (h % 4), values


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, port):
        self.port = port
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def request(self, method, target, body=None, headers=None):
        self.c.request(method, target, body=body, headers=headers or {})
        r = self.c.getresponse()
        data = r.read()
        if r.status not in (200, 204):
            raise RuntimeError("%s %s -> %d %s" % (method, target[:120], r.status, data[:300]))
        return data


def cpu_seconds(pid):
    """User + system CPU time the process has used so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Sydradb:
    def __init__(self, name, binary, work, extra_args=()):
        self.name, self.binary, self.extra_args = name, binary, list(extra_args)
        self.dir = os.path.join(work, name)
        self.data = os.path.join(self.dir, "data")
        os.makedirs(self.dir)
        self.proc = None

    def start(self):
        port_file = os.path.join(self.dir, "port")
        if os.path.exists(port_file):
            os.remove(port_file)
        self.log = open(os.path.join(self.dir, "log"), "a")
        self.proc = subprocess.Popen([self.binary, "serve", "--port", "0", "--port-file", port_file,
                                      "--data-dir", self.data, "--log-level", "warn"] + self.extra_args,
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 60
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("%s did not start (see %s/log)" % (self.name, self.dir))
            time.sleep(0.05)
        time.sleep(0.05)
        self.port = int(open(port_file).read())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
        self.proc = None

    def load(self, series):
        bodies = []
        for metric, host, dc, values in series:
            tags = '{"host":"%s","dc":"%s"}' % (host, dc)
            lines = ['{"series":"%s","ts":%d,"value":%r,"tags":%s}' % (metric, T0 + i * INTERVAL, v, tags)
                     for i, v in enumerate(values)]
            for i in range(0, len(lines), 10_000):
                bodies.append("\n".join(lines[i:i + 10_000]).encode())
        send_all(self.port, "/api/v1/ingest", bodies, {"Content-Type": "application/x-ndjson"})

    def wait_flushed(self):
        c = Conn(self.port)
        deadline = time.time() + 300
        while json.loads(c.request("GET", "/status"))["storage"]["memtable_points"] != 0:
            if time.time() > deadline:
                raise RuntimeError(self.name + ": memtable not flushed after 300 s")
            time.sleep(0.2)

    def memory(self):
        stats = json.loads(Conn(self.port).request("GET", "/debug/alloc/stats"))
        mem = stats.get("memory", {})
        return {"rss": rss_bytes(self.proc.pid), "alloc_committed": mem.get("committed_bytes"),
                "alloc_resident": mem.get("resident_bytes"), "alloc_live": mem.get("live_bytes")}

    def compact(self):
        self.stop()
        subprocess.run([self.binary, "compact", "--data-dir", self.data], check=True, stdout=subprocess.DEVNULL)
        self.start()


class Victoria:
    name = "vm"

    def __init__(self, binary, work):
        self.dir = os.path.join(work, "vm")
        os.makedirs(self.dir)
        self.port = free_port()
        self.log = open(os.path.join(self.dir, "log"), "a")
        self.proc = subprocess.Popen([binary, "-httpListenAddr", "127.0.0.1:%d" % self.port,
                                      "-storageDataPath", os.path.join(self.dir, "data"),
                                      "-retentionPeriod", "100y", "-loggerLevel", "ERROR"],
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 60
        while True:
            try:
                Conn(self.port).request("GET", "/health")
                break
            except (OSError, RuntimeError, http.client.HTTPException):
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("VictoriaMetrics did not start (see %s/log)" % self.dir)
                time.sleep(0.1)

    def load(self, series):
        bodies, chunk = [], []
        for metric, host, dc, values in series:
            chunk.append(json.dumps({"metric": {"__name__": metric, "host": host, "dc": dc}, "values": values,
                                     "timestamps": [T0 + i * INTERVAL for i in range(len(values))]}))
            if len(chunk) == 10:
                bodies.append("\n".join(chunk).encode())
                chunk = []
        if chunk:
            bodies.append("\n".join(chunk).encode())
        send_all(self.port, "/api/v1/import", bodies, {})

    def settle(self):
        c = Conn(self.port)
        c.request("GET", "/internal/force_flush")
        time.sleep(2)

    def memory(self):
        return {"rss": rss_bytes(self.proc.pid)}

    def compact(self):
        Conn(self.port).request("GET", "/internal/force_merge")
        time.sleep(5)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)


def send_all(port, target, bodies, headers, clients=4):
    errors = []

    def worker(k):
        try:
            c = Conn(port)
            for b in bodies[k::clients]:
                c.request("POST", target, body=b, headers=headers)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def queries(hosts, points):
    end = T0 + (points - 1) * INTERVAL
    s0, s1 = T0 // 1000, end // 1000

    def q(**kv):
        return urllib.parse.urlencode(kv)

    def sel(**kv):
        return ["/api/v1/query/select?" + q(start=T0, end=end, **kv)]

    def one(**kv):
        return ["/api/v1/query/range?" + q(start=T0, end=end, series="cpu_usage",
                                           tags='{"host":"h000","dc":"dc0"}', **kv)]

    def vm(query, **kv):
        return ["/api/v1/query_range?" + q(query=query, start=s0, end=s1, step=3600, **kv)]

    fleet = sel(match="cpu_usage", step=3_600_000, agg="max")
    range250 = ["/api/v1/query/range?" + q(start=T0, end=end, series="cpu_usage", step=3_600_000, agg="max",
                                           tags='{"host":"h%03d","dc":"dc%d"}' % (h, h % 4))
                for h in range(hosts)]
    return {
        "fleet_max_1h": {
            "select": ("new", fleet),
            "select_qt1": ("new_qt1", fleet),
            "range%d" % hosts: ("new", range250),
            "baseline_range%d" % hosts: ("baseline", range250),
            "vm": ("vm", vm("max_over_time(cpu_usage[1h])")),
            "vm_nocache": ("vm", vm("max_over_time(cpu_usage[1h])", nocache=1)),
        },
        "fleet_max_by_dc": {
            "select": ("new", sel(match="cpu_usage", step=3_600_000, agg="max", across="max", by="dc")),
            "vm_nocache": ("vm", vm("max by (dc) (max_over_time(cpu_usage[1h]))", nocache=1)),
        },
        "one_raw": {
            "range": ("new", one()),
            "baseline_range": ("baseline", one()),
            "vm_export": ("vm", ["/api/v1/export?" + q(**{"match[]": 'cpu_usage{host="h000"}', "start": s0,
                                                         "end": s1})]),
        },
        "one_avg_1h": {
            "range": ("new", one(step=3_600_000, agg="avg")),
            "baseline_range": ("baseline", one(step=3_600_000, agg="avg")),
            "vm_nocache": ("vm", vm('avg_over_time(cpu_usage{host="h000"}[1h])', nocache=1)),
        },
    }


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sydradb", required=True)
    ap.add_argument("--baseline")
    ap.add_argument("--vm", default="/usr/bin/victoria-metrics")
    ap.add_argument("--hosts", type=int, default=250)
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", default="build/query_bench")
    ap.add_argument("--compare-query-threads", action="store_true",
                    help="also serve the new build's segments with query_threads=1 (target new_qt1)")
    ap.add_argument("--smoke", action="store_true", help="20 hosts x 500 points, 1 round of 3")
    a = ap.parse_args()
    if a.smoke:
        a.hosts, a.points, a.rounds, a.reps = 20, 500, 1, 3
    os.makedirs(a.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="sydradb-query-bench-")
    targets = {"new": Sydradb("new", a.sydradb, work)}
    if a.baseline:
        targets["baseline"] = Sydradb("baseline", a.baseline, work)
    results = {"hosts": a.hosts, "points": a.points, "rounds": a.rounds, "reps": a.reps}
    try:
        for t in targets.values():
            t.start()
        targets["vm"] = Victoria(a.vm, work)
        series = list(dataset(a.hosts, a.points))
        load = {}
        for name, t in targets.items():
            start = time.time()
            t.load(series)
            load[name] = time.time() - start
        print("loaded %d points into %s (seconds: %s)" % (len(series) * a.points, ", ".join(targets),
                                                         {k: round(v, 1) for k, v in load.items()}))
        for name, t in targets.items():
            t.wait_flushed() if name != "vm" else t.settle()
        time.sleep(5)
        results["memory_after_flush"] = {name: t.memory() for name, t in targets.items()}
        print("memory after flush:", json.dumps(results["memory_after_flush"]))
        for t in targets.values():
            t.compact()
        if a.compare_query_threads:
            # The same segments, copied, served with one thread per select.
            one = Sydradb("new_qt1", a.sydradb, work, ["--set", "query_threads=1"])
            targets["new"].stop()
            shutil.copytree(targets["new"].data, one.data)
            targets["new"].start()
            one.start()
            targets["new_qt1"] = one

        qs = queries(a.hosts, a.points)
        rounds = {}
        order = [(qn, tn) for qn, ts in qs.items() for tn, (who, _) in ts.items() if who in targets]
        conns = {name: Conn(t.port) for name, t in targets.items()}
        for qn, tn in order:  # warm up: caches, page cache, first-touch
            who, reqs = qs[qn][tn]
            for r in reqs:
                conns[who].request("GET", r)
        for rnd in range(a.rounds):
            k = rnd % len(order)
            for qn, tn in order[k:] + order[:k]:
                who, reqs = qs[qn][tn]
                times = []
                cpu0 = cpu_seconds(targets[who].proc.pid)
                for _ in range(a.reps):
                    t0 = time.perf_counter()
                    for r in reqs:
                        conns[who].request("GET", r)
                    times.append((time.perf_counter() - t0) * 1000)
                cpu_ms = (cpu_seconds(targets[who].proc.pid) - cpu0) * 1000 / a.reps
                rounds.setdefault(qn, {}).setdefault(tn, []).append(
                    {"p50": percentile(times, 50), "p90": percentile(times, 90), "cpu_ms": cpu_ms})
        results["queries"] = rounds
        print("\nquery latency in ms: median over %d rounds of each round's p50 (p90) over %d requests;"
              " server CPU ms per request (from /proc, clock ticks of 10 ms)" % (a.rounds, a.reps))
        for qn, ts in rounds.items():
            med = {tn: statistics.median(r["p50"] for r in rs) for tn, rs in ts.items()}
            med90 = {tn: statistics.median(r["p90"] for r in rs) for tn, rs in ts.items()}
            cpu = {tn: statistics.median(r["cpu_ms"] for r in rs) for tn, rs in ts.items()}
            ref = next((tn for tn in ("vm_nocache", "vm", "vm_export") if tn in med), None)
            print(qn)
            for tn in ts:
                ratio = " (%.2fx %s)" % (med[tn] / med[ref], ref) if ref and tn != ref else ""
                print("  %-20s p50 %8.2f  p90 %8.2f  cpu %7.2f%s" % (tn, med[tn], med90[tn], cpu[tn], ratio))
        with open(os.path.join(a.out, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
    finally:
        for t in targets.values():
            try:
                t.stop()
            except Exception as e:  # noqa: BLE001 - keep stopping the others
                print("stopping %s: %s" % (t.name, e), file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
