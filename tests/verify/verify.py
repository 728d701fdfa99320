"""Verifies one recorded Herald delivery with libraries Herald did not write.

Reads a JSON document on stdin:
  {"body": <base64>, "headers": {...}, "secrets": ["whsec_…", …],
   "keys": <GET /v1/signing-keys answer or null>}
and checks: every secret verifies the `v1` signature (standardwebhooks); when keys are
given, a `v1a` ed25519 entry and both RSA body signatures (cryptography). Prints what
it verified; exits non-zero on the first failure.
"""

import base64
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks.webhooks import Webhook


def main() -> None:
    doc = json.load(sys.stdin)
    body = base64.b64decode(doc["body"])
    headers = {k.lower(): v for k, v in doc["headers"].items()}
    for secret in doc["secrets"]:
        Webhook(secret).verify(body, headers)
        print(f"v1 verified with {secret[:10]}…")
    keys = doc.get("keys")
    if not keys:
        return
    if keys.get("ed25519"):
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(keys["ed25519"].removeprefix("whpk_")))
        signed = f'{headers["webhook-id"]}.{headers["webhook-timestamp"]}.'.encode() + body
        entries = [e.split(",", 1)[1] for e in headers["webhook-signature"].split(" ") if e.startswith("v1a,")]
        if not entries:
            sys.exit("no v1a entry")
        # As Standard Webhooks' verifiers do: one entry per key in use (two during a
        # rotation's overlap), and the request verifies when one of them does.
        verified = 0
        for entry in entries:
            try:
                public.verify(base64.b64decode(entry), signed)
                verified += 1
            except InvalidSignature:
                pass
        if not verified:
            sys.exit(f"none of the {len(entries)} v1a entries verifies with the key")
        print(f"v1a ed25519 verified ({verified} of {len(entries)} entries)")
    if keys.get("rsa"):
        public = serialization.load_der_public_key(base64.b64decode(keys["rsa"]))
        for header, algorithm in ((keys["rsa_sha512_header"], hashes.SHA512()), (keys["rsa_md5_header"], hashes.MD5())):
            public.verify(base64.b64decode(headers[header]), body, padding.PKCS1v15(), algorithm)
            print(f"{header} verified ({algorithm.name}withRSA)")


if __name__ == "__main__":
    main()
