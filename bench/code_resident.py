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
placeholder values but for the subscriptions table, made on moto
(`scripts/with-moto.sh`) with the template's keys, so manage's listing is answered (an
empty page), as in `make bench`'s cold starts.

It also prints all the bootstrap holds after the invocation (`resident_kib`): natively its
RSS (and `peak_kib`, its peak); under qemu the guest's own pages, those of the mappings
qemu's `-d page` log says the guest has (its binary, its libraries, heap and stacks),
counted from the same pagemap, so qemu's own memory and translated code are left out.
`qemu-x86_64` on an x86_64 bootstrap against `native` is the calibration of that figure
too (docs/PERFORMANCE.md, "arm64's memory").
"""
import json
import os
import shutil
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


def subscriptions_table(moto):
    """A subscriptions table on moto with the template's keys, so that manage's listing
    is answered, as in `make bench`'s cold starts (an empty page); its name."""
    import yaml

    class Template(yaml.SafeLoader):
        pass

    Template.add_multi_constructor("!", lambda loader, suffix, node: None)
    with open(os.path.join(ROOT, "template.yaml")) as f:
        properties = yaml.load(f, Template)["Resources"]["SubscriptionsTable"]["Properties"]
    name = f"code-resident-{os.getpid()}"
    body = {"TableName": name, "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": properties["AttributeDefinitions"],
            "KeySchema": properties["KeySchema"]}
    request = urllib.request.Request(moto, data=json.dumps(body).encode(), headers={
        "content-type": "application/x-amz-json-1.0",
        "x-amz-target": "DynamoDB_20120810.CreateTable",
        "authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/dynamodb/"
                         "aws4_request, SignedHeaders=host, Signature=0"})
    urllib.request.urlopen(request, timeout=30).read()
    return name


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


def present(pagemap, page):
    """Whether the page at address `page` is resident (bit 63 of its pagemap entry)."""
    pagemap.seek(page // 4096 * 8)
    return int.from_bytes(pagemap.read(8), "little") >> 63 == 1


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
                if not present(pagemap, page):
                    continue
                if segment[0] <= offset + page - start < segment[1]:
                    code += 4
                else:
                    read_only += 4
    return code, read_only


def guest_ranges(log):
    """The guest's mappings from qemu's `-d page` log: the page map it dumps after the
    binary's load and after every mapping the guest makes since (its heap, its stacks,
    its libraries), the last one standing. `guest_base` must be nil: guest addresses are
    then the host's."""
    with open(log) as f:
        text = f.read()
    if "guest_base  (nil)" not in text:
        sys.exit(f"{log}: qemu placed the guest at an offset; its pages cannot be read by address")
    last = text.rsplit("page layout changed", 1)[-1]
    ranges = []
    for line in last.splitlines():
        f = line.split()
        if len(f) == 3 and "-" in f[0] and f[2] != "---":
            start, end = (int(x, 16) for x in f[0].split("-"))
            ranges.append((start, end))
    if not ranges:
        sys.exit(f"{log}: no page map")
    return ranges


def guest_resident(pid, ranges):
    """KiB of the guest's mappings resident in the host process (qemu's own memory, its
    translated code and its heap, is outside them)."""
    kib = 0
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for start, end in ranges:
            for page in range(start, end, 4096):
                if present(pagemap, page):
                    kib += 4
    return kib


def status_kib(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure(pid, bootstrap, segment, log):
    """What `pid` holds: its code and read-only pages, and all it has resident (for a
    guest under qemu, the guest's pages alone; natively, its RSS, and its peak)."""
    code, read_only = resident(pid, bootstrap, segment)
    if log is None:
        return {"code_kib": code, "read_only_kib": read_only,
                "resident_kib": status_kib(pid, "VmRSS"), "peak_kib": status_kib(pid, "VmHWM")}
    return {"code_kib": code, "read_only_kib": read_only,
            "resident_kib": guest_resident(pid, guest_ranges(log))}


def once(rie, wrapper, bootstrap, segment, event, env, log):
    if log is not None and os.path.exists(log):
        os.remove(log)
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
                return measure(int(children[0]), bootstrap, segment, log)
        sys.exit("the emulator started no function")
    finally:
        emulator.kill()
        emulator.wait()


def main():
    if len(sys.argv) < 4 or sys.argv[2] not in ("native", "qemu-x86_64", "qemu-arm64"):
        sys.exit(__doc__)
    rie, mode, bootstrap = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3])
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    work = tempfile.mkdtemp()
    # qemu logs the guest's page map after each of its mappings (`-d page`).
    log = None if mode == "native" else os.path.join(work, "pages.log")
    pages = [] if log is None else ["-d", "page", "-D", log]
    command = {
        "native": [bootstrap],
        "qemu-x86_64": ["qemu-x86_64", *pages, bootstrap],
        "qemu-arm64": ["qemu-aarch64", *pages, "-L", "/usr/aarch64-linux-gnu", bootstrap],
    }[mode]
    env = {"PATH": os.environ["PATH"], "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "y",
           "AWS_ENDPOINT_URL": os.environ.get("HERALD_TEST_MOTO_URL", "http://127.0.0.1:9"),
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "HERALD_TENANT_CLAIM": "tenant"}
    for name in ["SUBSCRIPTIONS", "DELIVERIES", "EVENTS", "PORTAL_SESSIONS"]:
        env[f"HERALD_{name}_TABLE"] = "t"
    # Only manage's invocation reads a table.
    if "manage" in os.path.basename(os.path.dirname(bootstrap)).lower() \
            and "HERALD_TEST_MOTO_URL" in os.environ:
        env["HERALD_SUBSCRIPTIONS_TABLE"] = subscriptions_table(os.environ["HERALD_TEST_MOTO_URL"])
    for name in ["DELIVERY", "DEAD_LETTER", "ORDERED", "ORDERED_DEAD_LETTER"]:
        env[f"HERALD_{name}_QUEUE_URL"] = "http://127.0.0.1:9/123456789012/q"
    try:
        wrapper = os.path.join(work, "bootstrap")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec " + " ".join(command) + "\n")
        os.chmod(wrapper, 0o755)
        segment = exec_segment(bootstrap)
        event = event_for(bootstrap)
        results = [once(rie, wrapper, bootstrap, segment, event, env, log) for _ in range(runs)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {key: statistics.median(r[key] for r in results) for key in results[0]}
    print(json.dumps({
        "mode": mode,
        "bootstrap": bootstrap,
        "code_segment_kib": (segment[1] - segment[0]) // 1024,
        **summary,
        "runs": results,
    }))


if __name__ == "__main__":
    main()
