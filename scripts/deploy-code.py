#!/usr/bin/env python3
"""Replaces one Herald function's code in a deployed stack and nothing else.

`cargo lambda deploy --env-var …` replaces a function's whole environment, dropping every
variable the stack set that the command does not list. This uploads the new bootstrap with
Lambda's UpdateFunctionCode, which leaves the configuration (environment, memory, timeout,
role, logging) as the stack made it. `make deploy-code` builds the zip and runs this.

    deploy-code.py --stack herald --function deliver --zip target/lambda/deliver/bootstrap.zip

The function is found among the stack's resources (IngestFunction, DeliverFunction,
ManageFunction). The zip's bootstrap must be built for the function's architecture.
Credentials, region and endpoint come from the usual AWS environment and profiles.
"""

import argparse
import base64
import hashlib
import sys
import zipfile

import boto3
import botocore.exceptions

LOGICAL_IDS = {"ingest": "IngestFunction", "deliver": "DeliverFunction", "manage": "ManageFunction"}
# ELF e_machine values: what a bootstrap was built for.
MACHINES = {0x3E: "x86_64", 0xB7: "arm64"}


def fail(message):
    print(f"deploy-code: {message}", file=sys.stderr)
    sys.exit(1)


def bootstrap_architecture(zip_bytes, path):
    try:
        with zipfile.ZipFile(path) as archive:
            header = archive.read("bootstrap")[:20]
    except (KeyError, zipfile.BadZipFile) as e:
        fail(f"{path} is not a zip with a bootstrap at its root ({e})")
    if header[:4] != b"\x7fELF":
        fail(f"the bootstrap in {path} is not an ELF executable")
    machine = int.from_bytes(header[18:20], "little")
    return MACHINES.get(machine, f"machine {machine:#x}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="the stack's name (sam deploy's stack_name)")
    parser.add_argument("--function", required=True, choices=sorted(LOGICAL_IDS))
    parser.add_argument("--zip", required=True, help="the zip cargo lambda built (bootstrap at its root)")
    args = parser.parse_args()

    with open(args.zip, "rb") as f:
        code = f.read()
    built_for = bootstrap_architecture(code, args.zip)

    cloudformation = boto3.client("cloudformation")
    lam = boto3.client("lambda")
    try:
        resource = cloudformation.describe_stack_resource(
            StackName=args.stack, LogicalResourceId=LOGICAL_IDS[args.function]
        )["StackResourceDetail"]
    except botocore.exceptions.ClientError as e:
        fail(f"stack {args.stack} has no {LOGICAL_IDS[args.function]}: {e}")
    name = resource["PhysicalResourceId"]

    before = lam.get_function_configuration(FunctionName=name)
    deployed_for = (before.get("Architectures") or ["x86_64"])[0]
    if deployed_for != built_for:
        fail(
            f"{name} runs on {deployed_for}, the bootstrap is built for {built_for}: "
            f"build with ARCH={deployed_for}"
        )
    lam.update_function_code(FunctionName=name, ZipFile=code)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    after = lam.get_function_configuration(FunctionName=name)

    expected = base64.b64encode(hashlib.sha256(code).digest()).decode()
    if after["CodeSha256"] != expected:
        fail(f"{name} reports code {after['CodeSha256']}, the upload was {expected}")
    kept = ("Environment", "MemorySize", "Timeout", "Role", "Handler", "Runtime")
    changed = [key for key in kept if before.get(key) != after.get(key)]
    if changed:
        fail(f"{name}'s configuration changed ({', '.join(changed)}); check it in the console")
    variables = len((after.get("Environment") or {}).get("Variables") or {})
    print(f"{name}: new code {expected}; configuration kept ({variables} variables)")


if __name__ == "__main__":
    main()
