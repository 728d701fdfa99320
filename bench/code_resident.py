#!/usr/bin/env python3
"""The code and read-only data of a bootstrap resident after a cold start and one
invocation, under the runtime emulator: natively, or through qemu-user, which is how an
arm64 bootstrap (the template's default architecture) runs on an x86_64 machine.

    scripts/with-moto.sh python3 bench/code_resident.py RIE MODE BOOTSTRAP [RUNS]

MODE is `native`, `qemu-x86_64` or `qemu-arm64` (Debian's qemu-user; arm64 also needs
libc6-arm64-cross). The bootstrap is invoked once with the empty event its function
takes (an empty batch for deliver, a request without a tenant for ingest, a listing for
manage: as `make bench`'s cold starts do), then the pages of its file the process has
resident are counted from /proc/<pid>/pagemap, split by the file offsets of the ELF's
executable segment (qemu maps a guest's code without execute permission, so a mapping's
permissions cannot tell). qemu reads a guest's code from the same file mapping as it
translates it, so the pages it faults in are the ones the code touches: `qemu-x86_64`
on an x86_64 bootstrap gives the native figure to the page (the calibration; see
docs/PERFORMANCE.md, "Code laid out by use"). Herald's configuration is given
placeholder values; manage's listing asks moto (`scripts/with-moto.sh`) for a table that
is not there and answers its error, the same on every architecture.
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

EVENTS = {
    "deliver": '{"Records": []}',
    "ingest": None,  # events/ingest/no-tenant.json
    "manage": None,  # events/manage/list-subscriptions.json
}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def event_for(bootstrap):
    function = os.path.basename(os.path.dirname(bootstrap)).lower()
    for name, event in EVENTS.items():
        if name in function:
            if event is not None:
                return event
            file = {"ingest": "ingest/no-tenant.json", "manage": "manage/list-subscriptions.json"}[name]
            with open(os.path.join(ROOT, "events", file)) as f:
                return f.read()
    return "{}"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def exec_segment(bootstrap):
    """The file offsets of the executable LOAD segment."""
    out = subprocess.run(["readelf", "-lW", bootstrap], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        f = line.split()
        if f and f[0] == "LOAD" and "E" in f[6:]:
            start = int(f[1], 16)
            return start, start + int(f[4], 16)
    sys.exit(f"{bootstrap}: no executable segment")


def resident(pid, bootstrap, segment):
    """KiB of the bootstrap's code and of its other read-only pages the process holds."""
    code = read_only = 0
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap, open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            f = line.split()
            if len(f) < 6 or f[5] != bootstrap or "w" in f[1]:
                continue
            start, end = (int(x, 16) for x in f[0].split("-"))
            offset = int(f[2], 16)
            for page in range(start, end, 4096):
                pagemap.seek(page // 4096 * 8)
                if not int.from_bytes(pagemap.read(8), "little") >> 63:
                    continue
                if segment[0] <= offset + page - start < segment[1]:
                    code += 4
                else:
                    read_only += 4
    return code, read_only


def once(rie, wrapper, bootstrap, segment, event, env):
    invoke_port, runtime_port = free_port(), free_port()
    emulator = subprocess.Popen(
        [rie, "--runtime-interface-emulator-address", f"127.0.0.1:{invoke_port}",
         "--runtime-api-address", f"127.0.0.1:{runtime_port}", wrapper],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{invoke_port}/2015-03-31/functions/function/invocations"
        request = urllib.request.Request(url, data=event.encode(), headers={"content-type": "application/json"})
        for _ in range(400):
            try:
                urllib.request.urlopen(request, timeout=60).read()
                break
            except OSError:
                time.sleep(0.05)
        else:
            sys.exit("the emulator never answered")
        for task in os.listdir(f"/proc/{emulator.pid}/task"):
            children = open(f"/proc/{emulator.pid}/task/{task}/children").read().split()
            if children:
                return resident(int(children[0]), bootstrap, segment)
        sys.exit("the emulator started no function")
    finally:
        emulator.kill()
        emulator.wait()


def main():
    if len(sys.argv) < 4 or sys.argv[2] not in ("native", "qemu-x86_64", "qemu-arm64"):
        sys.exit(__doc__)
    rie, mode, bootstrap = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3])
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    command = {
        "native": [bootstrap],
        "qemu-x86_64": ["qemu-x86_64", bootstrap],
        "qemu-arm64": ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", bootstrap],
    }[mode]
    env = {"PATH": os.environ["PATH"], "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "y",
           "AWS_ENDPOINT_URL": os.environ.get("HERALD_TEST_MOTO_URL", "http://127.0.0.1:9"),
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "HERALD_TENANT_CLAIM": "tenant"}
    for name in ["SUBSCRIPTIONS", "DELIVERIES", "EVENTS", "PORTAL_SESSIONS"]:
        env[f"HERALD_{name}_TABLE"] = "t"
    for name in ["DELIVERY", "DEAD_LETTER", "ORDERED", "ORDERED_DEAD_LETTER"]:
        env[f"HERALD_{name}_QUEUE_URL"] = "http://127.0.0.1:9/123456789012/q"
    with tempfile.TemporaryDirectory() as work:
        wrapper = os.path.join(work, "bootstrap")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec " + " ".join(command) + "\n")
        os.chmod(wrapper, 0o755)
        segment = exec_segment(bootstrap)
        event = event_for(bootstrap)
        results = [once(rie, wrapper, bootstrap, segment, event, env) for _ in range(runs)]
    print(json.dumps({
        "mode": mode,
        "bootstrap": bootstrap,
        "code_segment_kib": (segment[1] - segment[0]) // 1024,
        "code_kib": statistics.median(r[0] for r in results),
        "read_only_kib": statistics.median(r[1] for r in results),
        "runs": results,
    }))


if __name__ == "__main__":
    main()
