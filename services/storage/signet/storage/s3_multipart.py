"""Uploads too large for one PUT: a multipart upload whose completion is write-once.

An upload spilled to its staging file (more than `IN_MEMORY` bytes) goes to the
store in `PART_SIZE` parts.  Completing the upload is what creates the object, so
that request carries ``If-None-Match: *`` on a store that honours it (SeaweedFS 4
and MinIO do on `CompleteMultipartUpload`, as on `PutObject`): an upload that
completes once the name exists is refused (412), its parts are discarded, and it
answers with the stored object.  Two identical large uploads that both passed
the vault's HEAD thus leave one version, unless their completions meet in the
same instant on a store that does not check the header atomically: SeaweedFS
4.48 does not (both succeeded in a loaded test run), so there the window shrinks
from the whole upload to its completion, but does not close.

`Minio.put_object` would do the parts itself but cannot send a header with the
completion, so this drives minio's request layer (`_create_multipart_upload`,
`_upload_part`, `_execute`: signing, retries and S3 error parsing).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from xml.etree import ElementTree

from minio import Minio
from minio.error import S3Error
from minio.helpers import DictType, md5sum_hash

log = logging.getLogger(__name__)

#: Part size; at most `PARALLEL` parts are read into memory at once.
PART_SIZE = 8 * 1024 * 1024
PARALLEL = 3


def put_multipart(
    client: Minio,
    bucket: str,
    key: str,
    path: Path,
    size: int,
    headers: Mapping[str, str],
    *,
    conditional: bool,
) -> bool:
    """Upload the file at `path` (`size` bytes) as `key`; False if the name was taken.

    `headers` (content type, metadata, Object Lock retention) go with the upload's
    creation and land on the object.  With `conditional`, the completion is refused
    when `key` exists by then (False; the upload is aborted, nothing is written).
    S3 errors propagate as minio's `S3Error`, after the upload is aborted.
    """
    upload_id = client._create_multipart_upload(bucket, key, dict(headers))
    try:
        count = max(1, -(-size // PART_SIZE))
        with path.open("rb") as handle, ThreadPoolExecutor(PARALLEL) as pool:
            fd = handle.fileno()

            def upload(number: int) -> str:
                offset = (number - 1) * PART_SIZE
                data = os.pread(fd, min(PART_SIZE, size - offset), offset)
                return str(client._upload_part(bucket, key, data, None, upload_id, number))

            etags = list(pool.map(upload, range(1, count + 1)))
        body = _completion(etags)
        complete: DictType = {
            "Content-Type": "application/xml",
            "Content-MD5": str(md5sum_hash(body)),
        }
        if conditional:
            complete["If-None-Match"] = "*"
        client._execute(
            "POST", bucket, key, body=body, headers=complete, query_params={"uploadId": upload_id}
        )
    except S3Error as exc:
        _abort(client, bucket, key, upload_id)
        if exc.code == "PreconditionFailed":
            return False
        raise
    except BaseException:
        _abort(client, bucket, key, upload_id)
        raise
    return True


def _completion(etags: list[str]) -> bytes:
    root = ElementTree.Element("CompleteMultipartUpload")
    for number, etag in enumerate(etags, start=1):
        part = ElementTree.SubElement(root, "Part")
        ElementTree.SubElement(part, "PartNumber").text = str(number)
        ElementTree.SubElement(part, "ETag").text = f'"{etag}"'
    return ElementTree.tostring(root)


def _abort(client: Minio, bucket: str, key: str, upload_id: str) -> None:
    """Discard the parts of an upload that will not complete (best effort: an upload left
    behind holds no object, and the store's lifecycle may expire it)."""
    try:
        client._abort_multipart_upload(bucket, key, upload_id)
    except Exception as exc:  # the original error matters more
        log.warning("multipart upload %s of %s not aborted: %s", upload_id, key, exc)
