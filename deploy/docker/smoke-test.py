#!/usr/bin/env python3
"""smoke-test.py: end-to-end check of a running kooisv deployment through its public port.

Sends signed basic-interface calls (spec section 2) the way the marketplace does and checks the
answers and their Body-Sign header:
  1. queryInstance for an unknown id            -> HTTP 200, a resultCode, valid Body-Sign
  2. the same call with a wrong signature        -> 000001
  3. the first call's nonce again (a replay)      -> 000001
  4. with --write: newInstance with testFlag "1" twice (same orderId/orderLineId)
                                                  -> 000000 and the same instanceId both times
The seller key is read from a file (default deploy/docker/secrets/basic-key), never from argv.
Exit 0 when every check passes, 1 otherwise. Standard library only.

  deploy/docker/smoke-test.py [--url https://127.0.0.1:8443/produce] [--write]
"""
import argparse
import hashlib
import hmac
import http.client
import json
import os
import secrets
import ssl
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))


def canonical(body):
    # Sorted keys, compact, raw UTF-8: what the gateway signs (spec section 2).
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(key, body, nonce, ts):
    inner = hmac.new(key, canonical(body), hashlib.sha256).hexdigest()
    return hmac.new(key, key + nonce.encode() + ts.encode() + inner.encode(), hashlib.sha256).hexdigest()


def post(url, ctx, key, body, nonce=None, signature=None):
    nonce = nonce or secrets.token_hex(16)
    ts = str(int(time.time() * 1000))
    sig = signature or sign(key, body, nonce, ts)
    u = urllib.parse.urlsplit(url)
    query = urllib.parse.urlencode({"signature": sig, "timestamp": ts, "nonce": nonce})
    conn = http.client.HTTPSConnection(u.hostname, u.port or 443, context=ctx, timeout=10)
    raw = canonical(body)
    conn.request("POST", f"{u.path}?{query}", body=raw,
                 headers={"Content-Type": "application/json;charset=UTF-8"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, resp.getheader("Body-Sign"), data, nonce


def body_sign_ok(key, header, data):
    if not header:
        return False
    want = 'sign_type="HMAC-SHA256", signature="%s"' % __import__("base64").b64encode(
        hmac.new(key, data, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(header.strip(), want)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default=os.environ.get("KOOISV_URL", "https://127.0.0.1:8443/produce"))
    ap.add_argument("--key-file", default=os.path.join(HERE, "secrets", "basic-key"))
    ap.add_argument("--ca-file", default=os.path.join(HERE, "secrets", "ca.crt"),
                    help="CA that signed the gateway certificate ('' = system roots)")
    ap.add_argument("--write", action="store_true",
                    help="also create a test instance (testFlag 1: stored, excluded from billing)")
    args = ap.parse_args()

    with open(args.key_file, "rb") as f:
        key = f.read().split(b"\n")[0]
    ctx = ssl.create_default_context(cafile=args.ca_file or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2

    failures = 0

    def check(name, cond, detail):
        nonlocal failures
        print(("ok   " if cond else "FAIL ") + name + ("" if cond else ": " + detail))
        failures += 0 if cond else 1

    unknown = "smoke-" + secrets.token_hex(8)
    q = {"activity": "queryInstance", "instanceId": unknown}
    status, bsign, data, nonce = post(args.url, ctx, key, q)
    try:
        answer = json.loads(data)
    except ValueError:
        answer = {}
    check("queryInstance answered", status == 200 and "resultCode" in answer,
          f"HTTP {status} {data[:200]!r}")
    check("Body-Sign verifies", body_sign_ok(key, bsign, data), f"header {bsign!r}")
    print(f"     resultCode={answer.get('resultCode')} resultMsg={answer.get('resultMsg')!r}")

    status, _, data, _ = post(args.url, ctx, key, q, signature="0" * 64)
    code = json.loads(data).get("resultCode") if status == 200 else None
    check("bad signature -> 000001", code == "000001", f"HTTP {status} {data[:200]!r}")

    status, _, data, _ = post(args.url, ctx, key, q, nonce=nonce)
    code = json.loads(data).get("resultCode") if status == 200 else None
    check("replayed nonce -> 000001", code == "000001", f"HTTP {status} {data[:200]!r}")

    if args.write:
        order = "smoke" + secrets.token_hex(6)
        ids = []
        for attempt in range(2):
            n = {"activity": "newInstance", "orderId": order, "orderLineId": order + "-1",
                 "businessId": "b" + secrets.token_hex(8), "testFlag": "1"}
            status, bsign, data, _ = post(args.url, ctx, key, n)
            answer = json.loads(data) if status == 200 else {}
            check(f"newInstance #{attempt + 1} -> 000000", answer.get("resultCode") == "000000",
                  f"HTTP {status} {data[:200]!r}")
            check(f"newInstance #{attempt + 1} Body-Sign", body_sign_ok(key, bsign, data), repr(bsign))
            ids.append(answer.get("instanceId"))
        check("newInstance is idempotent", ids[0] and ids[0] == ids[1], f"instanceIds {ids}")
        print(f"     instanceId={ids[0]}")

    print("smoke test: " + ("passed" if failures == 0 else f"{failures} check(s) failed"))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
