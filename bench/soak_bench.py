#!/usr/bin/env python3
"""Soak: one daemon for --duration seconds (default 30 min) under a mixed, steady load, with
a restart every --restart-every seconds (default 5 min), sampled every second.

The load, all on 127.0.0.1 (a temporary data directory, ports the daemon picks):
  ingest   --rate requests/s of --batch points over --series series (one keep-alive
           connection, fsync=interval), timestamps moving forward;
  queries  --query-rate requests/s: a 10-minute range query of one series downsampled to
           1-minute averages, and every fifth a select over every series (avg across them);
  stats    `sydradb stats` (the CLI, on the control listener) every --stats-every seconds;
  compaction  the daemon's own, every 60 s (compaction_interval_ms=60000; flushes every
           second make the small segments it merges);
  restart  SIGTERM, wait for the exit, start again on the same data directory (the load
           pauses meanwhile; requests are not made while the daemon is down).
Each second it records the daemon's RSS (and its anonymous and file-backed parts: segment
files are mapped, so their touched pages count in RSS), the allocator's committed slab bytes
and system-allocator live bytes (/debug/alloc/stats), open files (/proc/PID/fd), the bytes of
data/wal and data/segments, points acknowledged, and request errors: any transport error or
answer other than 2xx, except the designed back-pressure (503 or 507 with Retry-After),
which is counted apart.

Verdict: after warm-up (the first --warmup seconds after every start are left out), RSS,
anonymous RSS and open files are "flat" when every minute's median is within +-10 % of the median over all
such minutes; errors must be 0. Writes DIR/samples.csv, DIR/summary.json, DIR/soak.png
(gnuplot) and prints the summary.

usage: bench/soak_bench.py --sydradb build/release/cli/sydradb [--duration 1800]
           [--restart-every 300] [--rate 20] [--batch 1000] [--series 500] [--query-rate 5]
           [--stats-every 5] [--warmup 60] [--out build/soak_bench] [--smoke]
Exit status: 0 when there were no errors (flatness is reported, not enforced), 1 otherwise.
"""
import argparse
import http.client
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from query_bench import rss_bytes  # noqa: E402


def rss_split(pid):
    """(anonymous, file-backed) resident bytes: RssAnon and RssFile of /proc/PID/status. Segment
    files are mapped (MAP_SHARED), so the pages of them that queries touch are resident in the
    daemon and count in VmRSS, though they are page cache, not memory the daemon holds."""
    anon = file_ = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                anon = int(line.split()[1]) * 1024
            elif line.startswith("RssFile:"):
                file_ = int(line.split()[1]) * 1024
    return anon, file_


def alloc_memory(port):
    """The allocator's view (GET /debug/alloc/stats on the control listener): slab bytes
    committed, live bytes of allocations the pool sent to the system allocator (large
    objects: buffers, memtable chunks), and magazines carved (2 KiB of metadata each). None
    when the daemon does not answer."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/debug/alloc/stats")
        r = conn.getresponse()
        body = r.read()
        conn.close()
        if r.status != 200:
            return None, None, None
        doc = json.loads(body)
        return (doc["memory"]["committed_bytes"], doc["small_pool"]["fallback"]["live_bytes"],
                doc["small_pool"]["magazines"])
    except (OSError, ValueError, KeyError, http.client.HTTPException):
        return None, None, None


def open_files(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def dir_bytes(path):
    total = 0
    for entry in os.scandir(path) if os.path.isdir(path) else []:
        try:
            if entry.is_file():
                total += entry.stat().st_size
        except FileNotFoundError:
            pass
    return total


class Daemon:
    def __init__(self, binary, work):
        self.binary, self.work = binary, work
        self.data = os.path.join(work, "data")
        self.proc = None
        self.log = open(os.path.join(work, "daemon.log"), "a")

    def start(self):
        ports = [os.path.join(self.work, n) for n in ("port", "control_port")]
        for p in ports:
            if os.path.exists(p):
                os.remove(p)
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--port", "0", "--port-file", ports[0], "--control-port-file", ports[1],
             "--data-dir", self.data, "--log-level", "info", "--set", "compaction_interval_ms=60000"],
            stdout=self.log, stderr=self.log)
        deadline = time.time() + 120
        while not all(os.path.exists(p) for p in ports):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("the daemon did not start (see %s/daemon.log)" % self.work)
            time.sleep(0.02)
        time.sleep(0.05)
        self.port, self.control_port = (int(open(p).read()) for p in ports)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=120)
        if code != 0:
            raise RuntimeError("the daemon exited with %d (see %s/daemon.log)" % (code, self.work))


class Soak:
    def __init__(self, a, daemon):
        self.a, self.d = a, daemon
        self.lock = threading.Lock()
        self.running = threading.Event()  # set while the daemon is up and the load may run
        self.done = False
        self.errors = 0
        self.backpressure = 0
        self.points = 0
        self.queries = 0
        self.stats_runs = 0
        self.error_samples = []

    def error(self, what):
        with self.lock:
            self.errors += 1
            if len(self.error_samples) < 20:
                self.error_samples.append("%.1f s: %s" % (time.time() - self.t0, what[:300]))

    def paced(self, rate, fn):
        """Calls fn(conn) `rate` times a second while the daemon is up."""
        period = 1.0 / rate
        conn, port = None, None
        next_at = time.time()
        while not self.done:
            if not self.running.wait(0.2):
                conn = None
                continue
            if port != self.d.port:
                conn, port = None, self.d.port
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                fn(conn)
            except (OSError, http.client.HTTPException) as e:
                if self.running.is_set() and port == self.d.port:
                    self.error("%s: %s" % (fn.__name__, e))
                conn = None
            next_at = max(next_at + period, time.time() - 1)
            time.sleep(max(0.0, next_at - time.time()))

    def ingest(self, conn):
        a = self.a
        with self.lock:
            base = self.next_ts
            self.next_ts += (a.batch + a.series - 1) // a.series
        lines = []
        for i in range(a.batch):
            s = i % a.series
            ts = base + i // a.series
            lines.append('{"series":"soak","ts":%d,"value":%d.%02d,"tags":{"host":"h%04d"}}' %
                         (ts, (ts * 7 + s) % 1000, s % 100, s))
        conn.request("POST", "/api/v1/ingest", body="\n".join(lines).encode(),
                     headers={"Content-Type": "application/x-ndjson"})
        r = conn.getresponse()
        body = r.read()
        if r.status == 200:
            with self.lock:
                self.points += json.loads(body)["ingested"]
        elif r.status in (503, 507) and r.getheader("Retry-After"):
            with self.lock:
                self.backpressure += 1
        else:
            self.error("ingest %d %s" % (r.status, body[:200]))

    def query(self, conn):
        with self.lock:
            n = self.queries
            self.queries += 1
            end = self.next_ts
        start = end - 600_000
        if n % 5 == 4:
            target = "/api/v1/query/select?match=soak&start=%d&end=%d&step=60000&agg=avg&across=avg" % (start, end)
        else:
            target = ('/api/v1/query/range?series=soak&tags=%%7B%%22host%%22%%3A%%22h%04d%%22%%7D'
                      '&start=%d&end=%d&step=60000&agg=avg' % (random.randrange(self.a.series), start, end))
        conn.request("GET", target)
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            self.error("query %d %s %s" % (r.status, target[:80], body[:200]))

    def stats(self):
        while not self.done:
            time.sleep(self.a.stats_every)
            if not self.running.is_set():
                continue
            port = self.d.control_port
            r = subprocess.run([self.a.sydradb, "stats", "--url", "http://127.0.0.1:%d" % port],
                               capture_output=True, text=True, timeout=60)
            if r.returncode != 0 and self.running.is_set() and port == self.d.control_port:
                self.error("sydradb stats exit %d: %s" % (r.returncode, r.stderr.strip()[:200]))
            with self.lock:
                self.stats_runs += 1

    def run(self):
        a = self.a
        self.t0 = time.time()
        self.next_ts = int(self.t0 * 1000) - 3_600_000
        self.d.start()
        self.running.set()
        started = [0.0]
        threads = [threading.Thread(target=self.paced, args=(a.rate, self.ingest)),
                   threading.Thread(target=self.paced, args=(a.query_rate, self.query)),
                   threading.Thread(target=self.stats)]
        for t in threads:
            t.start()
        samples = []
        next_restart = a.restart_every
        restarts = 0
        try:
            while True:
                now = time.time() - self.t0
                if now >= a.duration:
                    break
                if a.restart_every > 0 and now >= next_restart:
                    self.running.clear()
                    time.sleep(0.3)  # requests in flight finish
                    t = time.time()
                    self.d.stop()
                    self.d.start()
                    restarts += 1
                    print("restart %d at %.0f s took %.2f s" % (restarts, now, time.time() - t), flush=True)
                    started.append(time.time() - self.t0)
                    next_restart += a.restart_every
                    self.running.set()
                pid = self.d.proc.pid
                with self.lock:
                    anon, file_ = rss_split(pid)
                    committed, fallback_live, magazines = alloc_memory(self.d.control_port)
                    row = {"t": round(time.time() - self.t0, 2), "rss": rss_bytes(pid), "fds": open_files(pid),
                           "rss_anon": anon, "rss_file": file_, "alloc_committed": committed or 0,
                           "alloc_fallback_live": fallback_live or 0, "alloc_magazines": magazines or 0,
                           "wal": dir_bytes(os.path.join(self.d.data, "wal")),
                           "segments": dir_bytes(os.path.join(self.d.data, "segments")),
                           "points": self.points, "errors": self.errors, "backpressure": self.backpressure,
                           "since_start": round(time.time() - self.t0 - started[-1], 2)}
                samples.append(row)
                time.sleep(max(0.0, 1 - (time.time() - self.t0 - row["t"])))
        finally:
            self.done = True
            self.running.set()
            for t in threads:
                t.join()
            self.d.stop()
        return samples, restarts


def flatness(samples, key, warmup):
    """Per-minute medians after warm-up; their spread against the overall median."""
    steady = [s for s in samples if s["since_start"] >= warmup]
    if not steady:
        return None
    minutes = {}
    for s in steady:
        minutes.setdefault(int(s["t"] // 60), []).append(s[key])
    medians = [statistics.median(v) for v in minutes.values()]
    overall = statistics.median([s[key] for s in steady])
    lo, hi = min(medians), max(medians)
    return {"median": overall, "minute_median_min": lo, "minute_median_max": hi,
            "deviation": max(abs(hi - overall), abs(overall - lo)) / overall if overall else 0.0,
            "max": max(s[key] for s in steady), "minutes": len(medians)}


PLOT = r"""
set terminal pngcairo size 1100,900 font ",10" noenhanced
set output out
set datafile separator ","
set multiplot layout 4,1 title ttl
set grid lc rgb "#dddddd"
set key top left
set xlabel ""
set ylabel "RSS (MiB)"
plot dat using 1:($2/1048576) skip 1 with lines lw 2 title "RSS", dat using 1:($10/1048576) skip 1 with lines lw 2 title "anonymous", dat using 1:($11/1048576) skip 1 with lines lw 2 title "file-backed (mapped segments)", dat using 1:($12/1048576) skip 1 with lines lw 1 title "allocator slabs committed", dat using 1:($13/1048576) skip 1 with lines lw 1 title "system-allocator live bytes"
set ylabel "open files"
plot dat using 1:3 skip 1 with lines lw 2 title "open files"
set ylabel "MiB"
plot dat using 1:($4/1048576) skip 1 with lines lw 2 title "WAL", dat using 1:($5/1048576) skip 1 with lines lw 2 title "segments"
set xlabel "seconds"
set ylabel "count"
plot dat using 1:7 skip 1 with lines lw 2 title "errors", dat using 1:8 skip 1 with lines lw 2 title "back-pressure answers"
unset multiplot
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sydradb", required=True)
    ap.add_argument("--duration", type=float, default=1800)
    ap.add_argument("--restart-every", type=float, default=300, help="seconds between restarts; 0: none")
    ap.add_argument("--rate", type=float, default=20)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--series", type=int, default=500)
    ap.add_argument("--query-rate", type=float, default=5)
    ap.add_argument("--stats-every", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=60)
    ap.add_argument("--out", default="build/soak_bench")
    ap.add_argument("--smoke", action="store_true", help="10 s, a restart every 4 s (checks the script)")
    a = ap.parse_args()
    if a.smoke:
        a.duration, a.restart_every, a.warmup, a.stats_every = 10, 4, 1, 1
    os.makedirs(a.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="sydradb-soak-")
    try:
        soak = Soak(a, Daemon(a.sydradb, work))
        samples, restarts = soak.run()
        shutil.copy(os.path.join(work, "daemon.log"), os.path.join(a.out, "daemon.log"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    keys = ["t", "rss", "fds", "wal", "segments", "points", "errors", "backpressure", "since_start", "rss_anon",
            "rss_file", "alloc_committed", "alloc_fallback_live", "alloc_magazines"]
    with open(os.path.join(a.out, "samples.csv"), "w") as f:
        f.write(",".join(keys) + "\n")
        for s in samples:
            f.write(",".join(str(s[k]) for k in keys) + "\n")
    summary = {"duration_s": a.duration, "restarts": restarts, "samples": len(samples),
               "points": soak.points, "queries": soak.queries, "stats_runs": soak.stats_runs,
               "errors": soak.errors, "error_samples": soak.error_samples, "backpressure": soak.backpressure,
               "rss": flatness(samples, "rss", a.warmup), "open_files": flatness(samples, "fds", a.warmup),
               "rss_anon": flatness(samples, "rss_anon", a.warmup), "rss_file": flatness(samples, "rss_file", a.warmup),
               "alloc_committed": flatness(samples, "alloc_committed", a.warmup),
               "alloc_fallback_live": flatness(samples, "alloc_fallback_live", a.warmup),
               "wal_max_bytes": max(s["wal"] for s in samples), "segments_max_bytes": max(s["segments"] for s in samples),
               "segments_final_bytes": samples[-1]["segments"],
               "config": {k: getattr(a, k) for k in ("rate", "batch", "series", "query_rate", "stats_every",
                                                      "restart_every", "warmup")}}
    for k in ("rss", "open_files", "rss_anon"):
        f = summary[k]
        summary[k + "_flat"] = f is not None and f["deviation"] <= 0.10
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    if shutil.which("gnuplot"):
        title = "soak: %d s, restart every %d s, %d points, %d errors" % (a.duration, a.restart_every,
                                                                         soak.points, soak.errors)
        script = os.path.join(a.out, "soak.gp")
        with open(script, "w") as f:
            f.write(PLOT)
        subprocess.run(["gnuplot", "-e", "dat='%s'; out='%s'; ttl='%s'" % (
            os.path.join(a.out, "samples.csv"), os.path.join(a.out, "soak.png"), title), script], check=False)
    print(json.dumps(summary, indent=2))
    return 0 if soak.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
