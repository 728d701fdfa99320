#!/usr/bin/env python3
"""Writes functions/hot-code.ld from callgrind profiles of the bootstraps.

Usage: hot_code.py OUT.ld --start PROFILE... --work PROFILE...

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


def patterns_of(profiles):
    names = set()
    for path in profiles:
        names |= functions_run(path)
    return {p for p in map(pattern, names) if p}


def main():
    args = sys.argv[1:]
    if len(args) < 4 or args[1] != "--start" or "--work" not in args:
        sys.exit(__doc__)
    out = args[0]
    split = args.index("--work")
    start_profiles, work_profiles = args[2:split], args[split + 1 :]
    if not start_profiles or not work_profiles:
        sys.exit("hot_code.py: give profiles of a start and of work")
    start = patterns_of(start_profiles)
    work = patterns_of(work_profiles) - start
    if len(start) < 100 or len(work) < 100:
        sys.exit(
            f"hot_code.py: {len(start)} functions at start, {len(work)} more at work; "
            "were the profiles of the bootstraps?"
        )
    any_hash = lambda patterns: {HASH.sub("17h*E", p) for p in patterns if HASH.search(p)}
    start_any = any_hash(start)
    work_any = any_hash(work) - start_any
    patterns = sorted(start) + sorted(work) + sorted(start_any) + sorted(work_any)
    with open(out, "w", encoding="utf-8") as script:
        script.write(
            "/* The functions Herald's bootstraps run at a cold start and in the emulator\n"
            "   tests' invocations, laid out together ahead of the rest of the code\n"
            "   (docs/PERFORMANCE.md, \"Cold start\"): exactly as the profiled build names\n"
            "   them, then with any crate hash. Written by `make hot-code`\n"
            "   (scripts/hot_code.py from callgrind profiles); do not edit by hand. */\n"
            "SECTIONS\n{\n  .text.hot : {\n"
        )
        for p in patterns:
            script.write(f"    *({p})\n")
        script.write("  }\n}\nINSERT BEFORE .text;\n")
    print(
        f"{out}: {len(start)} functions at start, then {len(work)} more at work, "
        f"from {len(start_profiles)} and {len(work_profiles)} profiles"
    )


if __name__ == "__main__":
    main()
