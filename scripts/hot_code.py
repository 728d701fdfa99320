#!/usr/bin/env python3
"""Writes functions/hot-code.ld from callgrind profiles of the bootstraps.

Usage: hot_code.py OUT.ld --start PROFILE... --work PROFILE...
                   [--arm64-start LOG... --arm64-work LOG...]

Each PROFILE is a callgrind output file (`--compress-strings=no --demangle=no`) of a
bootstrap: `--start` ones of a cold start and one empty invocation, `--work` ones of the
invocations the emulator tests make (records delivered, events published, API calls).
Every function of the bootstrap itself that ran in any of them is named in the script,
which the functions' build script (functions/link.rs) hands to the linker: those
functions' sections go together into `.text.hot`, before the rest of the code, the
start-up's first, so a cold start faults in a few windows of code instead of windows
spread over the whole binary, and a first batch a few more (docs/PERFORMANCE.md,
"Cold start").

The profiles are of bootstraps built as `make build-x86_64` builds them but with their
symbols kept (`HERALD_KEEP_SYMBOLS=1`, functions/link.rs): the same build, so each name,
with the crate hash Rust puts in it, is the name the function has in the stripped
bootstrap. What varies from one such build to the next is the number LTO appends to a
local function it made global (`.llvm.<digits>`), which the script matches whatever it is.
A function the script does not name (new code, or every function once a dependency or
the compiler changes their hashes) is laid out where it would be without the script: a
stale script costs page faults, never correctness; `make hot-code` writes a new one.

The arm64 bootstraps (the template's default architecture) name every function with other
hashes (their target enters every hash). `--arm64-start` and `--arm64-work` give logs of
arm64 bootstraps built the same way, run under qemu-user with `-d in_asm` (qemu names the
function of each block of code it translates, the first time it runs): their exact names
follow the x86_64 ones of the same tier, and match nothing in an x86_64 build, as those
match nothing in an arm64 one.

After the exact names come the same names with any crate hash (`17h*E`), start first
again: they lay out, in a build whose hashes differ (the arm64 build, whose target enters
every hash; a build after a dependency moved), every instantiation of each function that
ran. That is less precise (a generic function's instantiations share their name but for
the hash) and still most of the effect. In the profiled build the exact names have taken
their sections first, and these take only instantiations that did not run, after them.
"""

import re
import sys

# The crate hash ending a Rust (legacy-mangled) name.
HASH = re.compile(r"17h[0-9a-f]{16}E")
# A local function LTO made global carries a number of the build's (`.llvm.<digits>`).
LTO_SUFFIX = re.compile(r"\.llvm\.[0-9]+$")
# Characters a section name may hold unquoted in a linker script pattern; a name with
# any other is left out (quoted patterns are not globs).
PLAIN = re.compile(r"^[A-Za-z0-9_.$]+$")


def functions_run(path):
    """The names of the functions of the profiled program itself that ran: those of its
    own object, and those of code valgrind could not place in an object (`???`, as it
    says of a binary whose code is in more than one section) but found a symbol for."""
    names = set()
    program = None
    current_object = None
    with open(path, encoding="utf-8", errors="replace") as profile:
        for line in profile:
            if line.startswith("cmd:") and program is None:
                words = line.split()
                program = words[1].rsplit("/", 1)[-1] if len(words) > 1 else ""
            elif line.startswith("ob="):
                current_object = line[3:].strip()
            elif line.startswith("fn=") and program:
                if current_object == "???" or (current_object or "").endswith("/" + program):
                    names.add(line[3:].strip())
    return names


def functions_translated(path):
    """The names of the functions qemu translated code of, from its `-d in_asm` log: each
    block it translates is headed `IN: <the function's symbol>` (empty where it knows
    none, as in the shared libraries)."""
    names = set()
    with open(path, encoding="utf-8", errors="replace") as log:
        for line in log:
            if line.startswith("IN: "):
                name = line[4:].strip()
                if name and not name.startswith("$"):
                    names.add(name)
    return names


def pattern(name):
    """The section pattern naming `name`, or None."""
    if name.startswith("0x"):
        return None  # an address valgrind found no symbol for
    glob = LTO_SUFFIX.sub(".llvm.*", name)
    if not PLAIN.match(glob.replace("*", "")):
        return None
    # `.text.<name>`, or `.text.unlikely.<name>` where LLVM deems the function cold
    # (`#[cold]`, such as a `OnceLock`'s first initialisation): it ran, so it goes with
    # the others.
    return f".text*.{glob}"


def patterns_of(profiles, read=functions_run):
    names = set()
    for path in profiles:
        names |= read(path)
    return {p for p in map(pattern, names) if p}


def files_after(args, flag, flags):
    """The arguments after `flag` up to the next of `flags`."""
    if flag not in args:
        return []
    rest = args[args.index(flag) + 1 :]
    ends = [i for i, a in enumerate(rest) if a in flags]
    return rest[: ends[0]] if ends else rest


def main():
    args = sys.argv[1:]
    flags = ["--start", "--work", "--arm64-start", "--arm64-work"]
    if len(args) < 5 or args[1] != "--start" or "--work" not in args:
        sys.exit(__doc__)
    out = args[0]
    start_profiles = files_after(args, "--start", flags)
    work_profiles = files_after(args, "--work", flags)
    arm64_start_logs = files_after(args, "--arm64-start", flags)
    arm64_work_logs = files_after(args, "--arm64-work", flags)
    if not start_profiles or not work_profiles:
        sys.exit("hot_code.py: give profiles of a start and of work")
    if bool(arm64_start_logs) != bool(arm64_work_logs):
        sys.exit("hot_code.py: give arm64 logs of a start and of work, or neither")
    start = patterns_of(start_profiles)
    work = patterns_of(work_profiles) - start
    if len(start) < 100 or len(work) < 100:
        sys.exit(
            f"hot_code.py: {len(start)} functions at start, {len(work)} more at work; "
            "were the profiles of the bootstraps?"
        )
    arm64_start = patterns_of(arm64_start_logs, functions_translated)
    arm64_work = patterns_of(arm64_work_logs, functions_translated) - arm64_start
    if arm64_start_logs and (len(arm64_start) < 100 or len(arm64_work) < 100):
        sys.exit(
            f"hot_code.py: {len(arm64_start)} arm64 functions at start, {len(arm64_work)} "
            "more at work; were the logs qemu's `-d in_asm` of the bootstraps?"
        )
    # An arm64 name is never an x86_64 one (the target is in every hash); what both
    # builds share, a name without a hash, is named once, with the x86_64 ones.
    arm64_start -= start | work
    arm64_work -= start | work
    any_hash = lambda patterns: {HASH.sub("17h*E", p) for p in patterns if HASH.search(p)}
    start_any = any_hash(start) | any_hash(arm64_start)
    work_any = (any_hash(work) | any_hash(arm64_work)) - start_any
    patterns = (
        sorted(start)
        + sorted(arm64_start)
        + sorted(work)
        + sorted(arm64_work)
        + sorted(start_any)
        + sorted(work_any)
    )
    with open(out, "w", encoding="utf-8") as script:
        script.write(
            "/* The functions Herald's bootstraps run at a cold start and in the emulator\n"
            "   tests' invocations, laid out together ahead of the rest of the code\n"
            "   (docs/PERFORMANCE.md, \"Cold start\"): exactly as the profiled builds name\n"
            "   them (x86_64, then arm64, for each of the start and the work), then with any\n"
            "   crate hash. Written by `make hot-code` (scripts/hot_code.py from callgrind\n"
            "   profiles and qemu's logs); do not edit by hand. */\n"
            "SECTIONS\n{\n  .text.hot : {\n"
        )
        for p in patterns:
            script.write(f"    *({p})\n")
        script.write("  }\n}\nINSERT BEFORE .text;\n")
    print(
        f"{out}: {len(start)} functions at start, then {len(work)} more at work, "
        f"from {len(start_profiles)} and {len(work_profiles)} profiles; arm64: "
        f"{len(arm64_start)} at start and {len(arm64_work)} at work, from "
        f"{len(arm64_start_logs)} and {len(arm64_work_logs)} logs"
    )


if __name__ == "__main__":
    main()
