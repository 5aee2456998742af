"""Create an S3 bucket if it does not exist, waiting for the store to come up (the compose file's ``s3-init``).

weir never creates the bucket of ``--checkpoints-dir`` / ``--ha-dir`` itself (a missing bucket is an error, as on
AWS), so the compose file runs this once, in the weir image, before the JobManager starts::

    python create_bucket.py BUCKET [TIMEOUT_SECONDS]

The endpoint, region and credentials come from the usual AWS environment variables (``AWS_ENDPOINT_URL``,
``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``), as they do for the daemons.
"""

from __future__ import annotations

import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError


def create_bucket(bucket: str, timeout: float = 120.0) -> str:
    client = boto3.session.Session().client(
        "s3", config=Config(s3={"addressing_style": "path"}, connect_timeout=2, read_timeout=10,
                            retries={"max_attempts": 1}))
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.head_bucket(Bucket=bucket)
            return "exists"
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
                try:
                    client.create_bucket(Bucket=bucket)
                    return "created"
                except ClientError as ce:
                    if ce.response.get("Error", {}).get("Code") in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        return "exists"
                    error: Exception = ce
            else:
                error = e
        except BotoCoreError as e:  # not reachable yet
            error = e
        if time.monotonic() > deadline:
            raise SystemExit(f"create_bucket: bucket {bucket!r} not ready after {timeout:g} s: {error}")
        time.sleep(1.0)


def main(argv: list[str]) -> None:
    if not 1 <= len(argv) <= 2:
        raise SystemExit("usage: create_bucket.py BUCKET [TIMEOUT_SECONDS]")
    outcome = create_bucket(argv[0], float(argv[1]) if len(argv) > 1 else 120.0)
    print(f"bucket {argv[0]!r} {outcome}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
