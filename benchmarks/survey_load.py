"""Load test of the survey server on loopback: acknowledged votes/s, latency, nothing lost.

Starts `ltxlab survey serve` (a real uvicorn subprocess, SQLite WAL, synchronous=NORMAL) on
127.0.0.1 with a throwaway study, then runs N concurrent raters (default 50) that each start,
fetch a pair and vote as fast as the server answers (every vote reply carries the next pair) for a
bounded time and vote count. The client is a minimal asyncio HTTP/1.1 keep-alive client so that
the load generator costs little CPU on small machines. Prints votes/s, p50/p99 vote latency and
checks that the database holds exactly the acknowledged votes.

    python benchmarks/survey_load.py [--raters 50] [--seconds 10] [--rate 300] [--max-votes 20000]

Two phases: closed loop (raters vote back to back: peak throughput; latency is then just
raters / throughput) and open loop (raters vote on a schedule totalling --rate votes/s: the
latency a rater sees at that load).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from survey import build
from survey import db as t
from survey.examples import start_server, write_example_dir


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, payload: dict) -> tuple[int, dict]:
    body = json.dumps(payload).encode()
    writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return status, json.loads(await reader.readexactly(length)) if length else {}


async def _rater(port: int, sid: str, pid: str, stop_at: float, budget: list[int], acked: list[int],
                 latencies: list[float], errors: list[int], interval: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        _, start = await _request(reader, writer, f"/api/s/{sid}/start", {"pid": pid})
        rater = start["rater"]
        _, pair = await _request(reader, writer, f"/api/s/{sid}/next", {"rater": rater})
        due = time.perf_counter() + random.uniform(0.0, interval)
        while not pair["done"] and time.monotonic() < stop_at and budget[0] > 0:
            budget[0] -= 1
            if interval:
                # open loop: latency counts from when the vote was due, so a slow server cannot hide
                # its backlog by slowing the raters down (no coordinated omission)
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                t0, due = due, due + interval
            else:
                t0 = time.perf_counter()
            status, res = await _request(reader, writer, f"/api/s/{sid}/vote", {
                "rater": rater, "assignment": pair["assignment"], "token": pair["token"], "answers": ["left"],
                "elapsed_ms": 1000})
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                errors.append(status)
                break
            acked.append(pair["assignment"])
            pair = res["next"]
    finally:
        writer.close()


async def _load(port: int, sid: str, raters: int, seconds: float, max_votes: int, rate: float,
                tag: str) -> tuple[list, list, list, float]:
    acked: list[int] = []
    latencies: list[float] = []
    errors: list[int] = []
    budget = [max_votes]
    t0 = time.monotonic()
    interval = raters / rate if rate else 0.0
    await asyncio.gather(*[_rater(port, sid, f"{tag}{k}", t0 + seconds, budget, acked, latencies, errors, interval)
                           for k in range(raters)])
    return acked, latencies, errors, time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raters", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-votes", type=int, default=20000)
    parser.add_argument("--synchronous", choices=["NORMAL", "FULL"], default="NORMAL")
    parser.add_argument("--rate", type=float, default=300.0,
                        help="offered votes/s for the open-loop phase (the closed-loop phase always runs)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        systems = [f"system{k}" for k in range(6)]
        src = write_example_dir(Path(tmp) / "src", systems, n_prompts=12, frames=9, size=32)
        db = Path(tmp) / "load.db"
        summary = build.create_study(t.make_engine(db), "load", build.collect_from_dir(src), Path(tmp) / "media",
                                     build.StudyOptions(pairs_per_rater=180, gold_per_rater=2, min_watch_fraction=0.0))
        proc, base = start_server(db, synchronous=args.synchronous)
        port = int(base.rsplit(":", 1)[1])
        results, cpu = {}, {}
        try:
            for phase, rate in (("closed", 0.0), ("open", args.rate)):
                cpu0, me0 = _cpu_seconds(proc.pid), time.process_time()
                results[phase] = asyncio.run(_load(port, summary["public_id"], args.raters, args.seconds,
                                                   args.max_votes, rate, phase))
                cpu[phase] = (_cpu_seconds(proc.pid) - cpu0, time.process_time() - me0)
        finally:
            proc.terminate()
            proc.wait()
        with t.make_engine(db).connect() as conn:
            stored = conn.execute(select(func.count(func.distinct(t.votes.c.assignment_id)))).scalar_one()
            rows = conn.execute(select(func.count()).select_from(t.votes)).scalar_one()
    total_acked = 0
    for phase, (acked, latencies, errors, wall) in results.items():
        total_acked += len(acked)
        lat_ms = np.array(latencies) * 1000.0
        label = "closed loop (each rater votes as soon as the last vote is acknowledged)" if phase == "closed" \
            else f"open loop (offered {args.rate:.0f} votes/s, spread over the raters)"
        print(f"{label}: raters={args.raters} synchronous={args.synchronous} wall={wall:.2f}s")
        print(f"  acknowledged votes: {len(acked)}  ({len(acked) / wall:.0f} votes/s)")
        print(f"  vote latency: p50={np.percentile(lat_ms, 50):.1f} ms  p99={np.percentile(lat_ms, 99):.1f} ms  "
              f"max={lat_ms.max():.1f} ms")
        print(f"  refused: {len(errors)} {sorted(set(errors))}")
        server_cpu, client_cpu = cpu[phase]
        print(f"  CPU per acknowledged vote: server {1000 * server_cpu / max(len(acked), 1):.2f} ms, "
              f"load generator {1000 * client_cpu / max(len(acked), 1):.2f} ms "
              f"(one dedicated core would sustain ~{len(acked) / max(server_cpu, 1e-9):.0f} votes/s)")
    print(f"in database: {stored} votes ({rows} rows); acknowledged {total_acked}; "
          f"nothing lost or doubled: {stored == total_acked == rows}")


if __name__ == "__main__":
    main()
