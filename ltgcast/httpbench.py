"""``ltgcast bench http``: the HTTP server as ``ltgcast run`` starts it, under a crowd and under slow clients.

``ltgcast run`` runs as its own process with its default limits (only the folders and the port are given), over
a store seeded with CONUS-sized grids (1500 x 2500). Three phases, all on loopback:

1. **burst**: ``--burst`` connections opened at once, each asking for something expensive (a PNG with or
   without legend, contours at one of many levels, a listing, a point series, a NetCDF download), while a
   health probe opens a fresh connection every 50 ms. Reported: the crowd's answers by status (503 is the
   server shedding load; 0 would be a request dropped), the probe's latencies (p50, p99, max; target p99
   under 1 s) and whether every probe was answered.
2. **slow clients**: ``--slow`` connections each send half a request and then nothing, while normal requests
   are made one after another. Reported: their latencies, the server's threads meanwhile (from
   ``/proc/PID/status``), and how many slow connections the server cut after its header deadline.
3. **memory**: the server's peak resident memory (``VmHWM``) over the whole run.

Prints a summary and writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from foundation.addresses import free_port
from foundation.clock import wait_until
from ingest.geometry import FixedGrid, GeosProjection
from ltgcast.nowcasting import add_model_base_argument

CONUS = (1500, 2500)
#: CONUS 2 km scan angles (radians) of GOES-East's fixed grid: first column, first row, step.
_X0, _Y0, _STEP = -0.101332, 0.128212, 5.6e-5


def add_bench_http_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ltgcast bench http``."""
    parser.add_argument("--burst", type=int, default=200, help="connections opened at once in the burst")
    parser.add_argument("--slow", type=int, default=300, help="slow clients holding half a request")
    parser.add_argument("--grids", type=int, default=6, help="CONUS grids seeded into the store")
    add_model_base_argument(parser)
    parser.add_argument("--json", default="var/bench/http.json", help="where to write the JSON report")


# -- clients ---------------------------------------------------------------------------------------------------------
async def request_status(address: tuple[str, int], target: str, timeout: float) -> tuple[int, float]:
    """One GET on a fresh connection: its status (0: no connection or no answer in time) and seconds taken."""
    began = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), timeout)
    except (OSError, TimeoutError):
        return 0, time.perf_counter() - began
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), timeout)
        status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0
    except (OSError, TimeoutError, ValueError):
        status = 0
    finally:
        writer.close()
    return status, time.perf_counter() - began


async def crowd(address: tuple[str, int], targets: list[str], timeout: float) -> list[tuple[int, float]]:
    """Every target on its own connection, all at once."""
    return list(await asyncio.gather(*(request_status(address, t, timeout) for t in targets)))


def burst(address: tuple[str, int], targets: list[str], timeout: float = 20.0) -> list[int]:
    """The statuses of ``targets`` asked all at once (0: dropped)."""
    return [status for status, _ in asyncio.run(crowd(address, targets, timeout))]


# -- the server ------------------------------------------------------------------------------------------------------
def seed(store_root: Path, count: int, now: datetime) -> list[str]:
    """Write ``count`` CONUS grids, 5 minutes apart, ending 10 minutes before ``now``; return their ids."""
    from serve.stores.files import FileGridStore
    from serve.stores.gridfile import GridMeta

    store = FileGridStore(store_root)
    rows, cols = CONUS
    x = _X0 + _STEP * np.arange(cols, dtype=np.float64)
    y = _Y0 - _STEP * np.arange(rows, dtype=np.float64)
    grid = FixedGrid(GeosProjection(lon_0=-75.2, height=35786023.0), x, y)
    rng = np.random.default_rng(15)
    rr, cc = np.mgrid[:rows, :cols].astype(np.float32)
    ids = []
    for i in range(count):
        field = np.zeros(CONUS, np.float32)
        for _ in range(12):  # storms
            r, c, s = rng.uniform(0, rows), rng.uniform(0, cols), rng.uniform(15, 60)
            field += rng.uniform(0.3, 1.0) * np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * s * s))
        scan = (now - timedelta(minutes=10 + 5 * (count - 1 - i))).replace(second=17, microsecond=0)
        meta = GridMeta("G19", "C", scan, scan + timedelta(minutes=30), "lightning", 1, f"frame{i}.nc")
        store.put(np.clip(field, 0, 1), grid, meta, flashes=None)
        ids.append(meta.grid_id)
    return ids


def _status(pid: int) -> dict[str, int]:
    """Threads and peak resident memory (kB) of a process, from ``/proc``."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("Threads", "VmHWM", "VmRSS"):
            found[name] = int(value.split()[0])
    return found


def _wait_ready(base: str, process: subprocess.Popen[bytes], limit_s: float = 120.0) -> None:
    def answers() -> bool:
        if process.poll() is not None:
            msg = f"ltgcast run exited with status {process.returncode} before answering"
            raise RuntimeError(msg)
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    wait_until(answers, f"ltgcast run answering {base}/healthz", limit_s, every_s=0.2)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# -- phases ----------------------------------------------------------------------------------------------------------
def _burst_phase(address: tuple[str, int], ids: list[str], size: int) -> dict[str, Any]:
    def target(i: int) -> str:
        grid_id = ids[i % len(ids)]
        level = f"0.{10 + i % 85:02d}"
        return [f"/v1/grids/{grid_id}.png?legend={i % 2}", f"/v1/grids/{grid_id}/contours.geojson?levels={level}",
                "/v1/grids?sector=C&hours=3", f"/v1/points?lat={30 + i % 15}&lon={-100 + i % 20}&hours=3",
                f"/v1/grids/{grid_id}.nc"][i % 5]  # fmt: skip

    targets = [target(i) for i in range(size)]
    results: list[list[tuple[int, float]]] = []
    began = time.perf_counter()
    thread = threading.Thread(target=lambda: results.append(asyncio.run(crowd(address, targets, 120.0))))
    thread.start()
    probes: list[tuple[int, float]] = []
    while thread.is_alive():
        probes.append(asyncio.run(request_status(address, "/healthz", 10.0)))
        time.sleep(0.05)
    thread.join()
    seconds = time.perf_counter() - began
    answered = Counter(status for status, _ in results[0])
    probe_s = [s for status, s in probes if status == 200]
    return {
        "requests": size,
        "seconds": round(seconds, 2),
        "answers_by_status": {str(k): v for k, v in sorted(answered.items())},
        "dropped": answered.get(0, 0),
        "probes": len(probes),
        "probes_answered": len(probe_s),
        "probe_p50_ms": round(1000 * _percentile(probe_s, 50), 1),
        "probe_p99_ms": round(1000 * _percentile(probe_s, 99), 1),
        "probe_max_ms": round(1000 * max(probe_s, default=float("nan")), 1),
        "probe_target_p99_ms": 1000.0,
    }


def _slow_phase(address: tuple[str, int], pid: int, count: int) -> dict[str, Any]:
    slow: list[socket.socket] = []
    try:
        return _with_slow_clients(address, pid, count, slow)
    finally:
        for conn in slow:
            conn.close()


def _with_slow_clients(address: tuple[str, int], pid: int, count: int, slow: list[socket.socket]) -> dict[str, Any]:
    for _ in range(count):
        conn = socket.create_connection(address, timeout=10)
        slow.append(conn)
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n")
    threads: list[int] = []
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    for i in range(50):
        status, seconds = asyncio.run(request_status(address, f"/v1/grids/latest?sector=C&i={i}", 10.0))
        statuses[status] += 1
        latencies.append(seconds)
        threads.append(_status(pid)["Threads"])
    time.sleep(12.0)  # past the default 10 s header deadline
    cut = 0
    for conn in slow:
        conn.settimeout(5)
        try:
            cut += conn.recv(100) == b""
        except OSError:
            cut += 1
    return {
        "slow_clients": count,
        "normal_requests": 50,
        "normal_answers_by_status": {str(k): v for k, v in sorted(statuses.items())},
        "normal_p50_ms": round(1000 * _percentile(latencies, 50), 1),
        "normal_p99_ms": round(1000 * _percentile(latencies, 99), 1),
        "server_threads_max": max(threads),
        "slow_cut_after_header_deadline": cut,
    }


def bench_http(args: argparse.Namespace) -> int:
    """Start ``ltgcast run`` with its defaults, load it, print and write the figures."""
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "spool").mkdir()
        ids = seed(work / "grids", args.grids, datetime.now(UTC))
        port = free_port()
        command = [sys.executable, "-m", "ltgcast", "run", "--source", f"dir:{work / 'spool'}", "--store",
                   str(work / "grids"), "--state", str(work / "state"), "--http", f"127.0.0.1:{port}",
                   "--model-base", str(args.model_base)]  # fmt: skip
        log = (work / "run.log").open("wb")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_ready(base, process)
            idle = _status(process.pid)
            address = ("127.0.0.1", port)
            burst_report = _burst_phase(address, ids, args.burst)
            slow_report = _slow_phase(address, process.pid, args.slow)
            peak = _status(process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
            log.close()
        errors = [line for line in (work / "run.log").read_text(errors="replace").splitlines() if "Traceback" in line]
    report = {
        "benchmark": "http",
        "server": "ltgcast run, default HTTP limits",
        "cpus": os.cpu_count(),
        "grids": f"{args.grids} CONUS grids {CONUS[0]}x{CONUS[1]}",
        "burst": burst_report,
        "slow": slow_report,
        "server_threads_idle": idle["Threads"],
        "server_peak_rss_mib": round(peak["VmHWM"] / 1024, 1),
        "tracebacks_in_log": len(errors),
    }
    b, s = burst_report, slow_report
    sys.stdout.write(
        f"burst of {b['requests']}: {b['answers_by_status']} in {b['seconds']} s, {b['dropped']} dropped; "
        f"/healthz every 50 ms: {b['probes_answered']}/{b['probes']} answered, p50 {b['probe_p50_ms']} ms, "
        f"p99 {b['probe_p99_ms']} ms, max {b['probe_max_ms']} ms (target p99 < 1000 ms)\n"
        f"{s['slow_clients']} slow clients: normal requests {s['normal_answers_by_status']}, p50 "
        f"{s['normal_p50_ms']} ms, p99 {s['normal_p99_ms']} ms; server threads max {s['server_threads_max']} "
        f"(idle {idle['Threads']}); {s['slow_cut_after_header_deadline']} cut after the header deadline\n"
        f"server peak RSS {report['server_peak_rss_mib']} MiB; tracebacks in its log: {len(errors)}\n"
    )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0 if b["dropped"] == 0 and b["probes_answered"] == b["probes"] else 1
