"""A batch's status as the API shows it: counts per state and, if asked, every item.

Read from the rows only (never the folder), so it answers while workers write packs.
"""

from __future__ import annotations

from signet.common.contracts.signer import BatchItem, BatchItemState, BatchStatus, SignatureLevel
from signet.signer.batch.queue import BatchItemRecord, BatchRecord, aware, utc_now
from signet.signer.registry import Registry
from sqlalchemy import func, select


def batch_status(registry: Registry, record: BatchRecord, *, with_items: bool) -> BatchStatus:
    """The status of `record`'s batch; `with_items`: each item's state and digests too."""
    with registry.session() as session:
        counts = dict(
            session.execute(
                select(BatchItemRecord.state, func.count())
                .where(BatchItemRecord.batch_id == record.id)
                .group_by(BatchItemRecord.state)
            ).all()
        )
        rows = (
            session.scalars(
                select(BatchItemRecord)
                .where(BatchItemRecord.batch_id == record.id)
                .order_by(BatchItemRecord.idx)
            ).all()
            if with_items
            else []
        )
    done = counts.get(BatchItemState.DONE.value, 0)
    failed = counts.get(BatchItemState.FAILED.value, 0)
    pending = record.total - done - failed
    return BatchStatus(
        id=record.id,
        state="finished" if pending == 0 else "running",
        created_at=aware(record.created_at) or utc_now(),
        finished_at=aware(record.finished_at),
        level=SignatureLevel(record.level),
        certificate_serial=record.certificate_serial,
        total=record.total,
        done=done,
        failed=failed,
        pending=pending,
        items=[
            BatchItem(
                index=row.idx,
                filename=row.filename,
                state=BatchItemState(row.state),
                error=row.error,
                input_sha256=row.input_sha256,
                output_sha256=row.output_sha256,
            )
            for row in rows
        ],
    )
