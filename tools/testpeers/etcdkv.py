#!/usr/bin/env python3
"""etcdkv.py: read and write etcd v3 keys through the JSON gateway, with no Weft code.

The tests use it as flanneld would: to write the net config and a lease in flanneld's exact
format, and to read back the bytes Weft wrote.

  etcdkv.py --endpoint http://198.18.0.1:2379 put KEY VALUE
  etcdkv.py --endpoint http://198.18.0.1:2379 get KEY        (prints the value, exit 1 if absent)
  etcdkv.py --endpoint http://198.18.0.1:2379 delete KEY
  etcdkv.py --endpoint http://127.0.0.1:2379 health --wait 10
"""
import argparse
import base64
import json
import sys
import time
import urllib.request


def call(endpoint, path, body, timeout=5):
    request = urllib.request.Request(endpoint + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"{}")


def b64(text):
    return base64.b64encode(text.encode()).decode()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    put = sub.add_parser("put"); put.add_argument("key"); put.add_argument("value")
    get = sub.add_parser("get"); get.add_argument("key")
    delete = sub.add_parser("delete"); delete.add_argument("key")
    health = sub.add_parser("health"); health.add_argument("--wait", type=float, default=0)
    args = parser.parse_args()

    if args.command == "put":
        call(args.endpoint, "/v3/kv/put", {"key": b64(args.key), "value": b64(args.value)})
    elif args.command == "get":
        kvs = call(args.endpoint, "/v3/kv/range", {"key": b64(args.key)}).get("kvs", [])
        if not kvs:
            return 1
        sys.stdout.write(base64.b64decode(kvs[0].get("value", "")).decode())
    elif args.command == "delete":
        call(args.endpoint, "/v3/kv/deleterange", {"key": b64(args.key)})
    elif args.command == "health":
        deadline = time.monotonic() + args.wait
        while True:
            try:
                with urllib.request.urlopen(args.endpoint + "/health", timeout=1) as response:
                    if json.loads(response.read()).get("health") in ("true", True):
                        return 0
            except OSError:
                pass
            if time.monotonic() >= deadline:
                print("etcdkv: etcd at %s is not healthy" % args.endpoint, file=sys.stderr)
                return 1
            time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
