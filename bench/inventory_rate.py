"""How fast an OSS bucket inventory streams as a source (by hand, not in CI):

    python -m bench.inventory_rate [--rows-per-file 1000000] [--files 4]

Writes an inventory run (gzip'd CSV files of URL-encoded keys and their
manifest.json) to the local OSS server, then times the source alone:
download, gunzip, MD5, CSV, URL-decoding, suffix filter.
"""
import argparse
import gzip
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import quote

import oss2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.oss_server import start_oss_server  # noqa: E402
from visionfleet.pipeline.sources import iter_source  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-file", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=4)
    args = parser.parse_args()
    server = start_oss_server()
    try:
        os.environ.update(OSS_ENDPOINT=server.endpoint, OSS_ACCESS_KEY_ID=server.access_key_id,
                          OSS_ACCESS_KEY_SECRET=server.access_key_secret)
        b = oss2.Bucket(oss2.Auth(server.access_key_id, server.access_key_secret), server.endpoint, "inv-rate")
        b.create_bucket()
        rows = args.rows_per_file
        body = gzip.compress("".join(f'"src","{quote(f"photos/2019/cat {i:07d}.jpg")}","12345","Standard"\n'
                                     for i in range(rows)).encode(), compresslevel=6)
        files = []
        for part in range(args.files):
            b.put_object(f"inv/data/{part}.csv.gz", body)
            files.append({"key": f"inv/data/{part}.csv.gz", "MD5checksum": hashlib.md5(body).hexdigest().upper()})
        b.put_object("inv/manifest.json", json.dumps({"fileSchema": "Bucket, Key, Size, StorageClass",
                                                     "destinationBucket": "inv-rate", "files": files}).encode())
        t = time.perf_counter()
        n = sum(1 for _ in iter_source("oss://inv-rate/inv/manifest.json"))
        dt = time.perf_counter() - t
        print(json.dumps({"inventory_rows": n, "seconds": round(dt, 1), "rows_per_s": round(n / dt),
                          "gz_mb_per_file": round(len(body) / 2**20, 1)}))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
