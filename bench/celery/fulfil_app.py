"""The peer of Strata's worker: a Celery worker running the same fulfilment saga
(worker/src/fulfilment/saga.rs and steps.rs) through psycopg, against the same Postgres and RabbitMQ, its tasks
on a quorum queue of their own vhost, acknowledged after the commit (acks_late)."""

import os
import secrets
import threading
import time
import uuid
from datetime import datetime, timezone

from celery import Celery
from kombu import Queue
from psycopg import Rollback
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

QUEUE = "bench.fulfil"
CONSUMER = "fulfilment"

app = Celery("strata_bench", broker=os.environ["CELERY_BROKER_URL"])
app.conf.update(
    task_acks_late=True,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    task_default_queue=QUEUE,
    task_queues=[
        Queue(QUEUE, queue_arguments={"x-queue-type": "quorum", "x-delivery-limit": 5})
    ],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_pool = None
_pool_lock = threading.Lock()


def pool():
    """One pool per process (prefork children each get theirs), as large as the
    process's share of the concurrency."""
    global _pool
    with _pool_lock:
        if _pool is None:
            size = int(os.environ.get("CELERY_DB_POOL", "1"))
            _pool = ConnectionPool(
                os.environ["DATABASE_URL"],
                min_size=size,
                max_size=size,
                kwargs={"autocommit": True},
                open=True,
            )
        return _pool


def uuid7():
    """A time-ordered UUID (version 7), as Strata's ids are: index inserts stay local."""
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    value = value & ~(0xF << 76) | 0x7 << 76  # version
    value = value & ~(0x3 << 62) | 0x2 << 62  # variant
    return str(uuid.UUID(int=value))


def event(kind, payload, traceparent=None):
    message_id = uuid7()
    body = {
        "message_id": message_id,
        "type": kind,
        "schema_version": 1,
        "occurred_at": datetime.now(timezone.utc).isoformat(),
        "payload": payload,
    }
    if traceparent:
        body["traceparent"] = traceparent
    return message_id, body


def enqueue(conn, routing_key, kind, payload):
    message_id, body = event(kind, payload)
    conn.execute(
        "INSERT INTO outbox (message_id, exchange, routing_key, kind, body, traceparent) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (message_id, "events", routing_key, kind, Jsonb(body), None),
    )


@app.task(name="fulfil")
def fulfil(order_id, message_id):
    """The worker's saga (worker/src/fulfilment/saga.rs) with the payment approved at
    once: reserve (a transaction), the gateway's ledger statement, settle (another).
    Returns the outcome: fulfilled, rejected, duplicate or already_final."""
    with pool().connection() as conn:
        with conn.transaction():
            row = conn.execute(
                "SELECT step, total_cents FROM orders WHERE id = %s FOR UPDATE",
                (order_id,),
            ).fetchone()
            if row is None:
                return "unknown"
            step, total_cents = row
            if step in ("fulfilled", "rejected"):
                first = conn.execute(
                    "INSERT INTO processed_messages (consumer, message_id) VALUES (%s, %s) "
                    "ON CONFLICT DO NOTHING",
                    (CONSUMER, message_id),
                ).rowcount == 1
                return "already_final" if first else "duplicate"
            if step == "pending":
                lines = conn.execute(
                    "SELECT l.sku, l.quantity, p.stock FROM order_lines l "
                    "JOIN products p ON p.sku = l.sku "
                    "WHERE l.order_id = %s ORDER BY l.sku FOR NO KEY UPDATE OF p",
                    (order_id,),
                ).fetchall()
                if not all(stock >= quantity for _, quantity, stock in lines):
                    conn.execute(
                        "INSERT INTO processed_messages (consumer, message_id) "
                        "VALUES (%s, %s) ON CONFLICT DO NOTHING",
                        (CONSUMER, message_id),
                    )
                    conn.execute(
                        "UPDATE orders SET status = 'rejected', step = 'rejected', "
                        "reason = %s, updated_at = now() WHERE id = %s",
                        ("out_of_stock", order_id),
                    )
                    enqueue(
                        conn,
                        "order.rejected",
                        "OrderRejected",
                        {"order_id": order_id, "reason": "out_of_stock"},
                    )
                    return "rejected"
                conn.execute(
                    "UPDATE products p SET stock = p.stock - l.quantity, updated_at = now() "
                    "FROM unnest(%s::text[], %s::int[]) AS l(sku, quantity) "
                    "WHERE p.sku = l.sku",
                    ([s for s, _, _ in lines], [q for _, q, _ in lines]),
                )
                conn.execute(
                    "UPDATE orders SET step = 'reserved', "
                    "reserved_until = now() + interval '600 seconds', updated_at = now() "
                    "WHERE id = %s",
                    (order_id,),
                )
        # The gateway's ledger (payment latency 0, approved): no transaction.
        conn.execute(
            "INSERT INTO payment_charges (order_id, amount_cents, outcome) "
            "VALUES (%s, %s, 'approved') ON CONFLICT (order_id) DO UPDATE "
            "SET calls = payment_charges.calls + 1, last_call_at = now() RETURNING outcome",
            (order_id, total_cents),
        )
        with conn.transaction():
            row = conn.execute(
                "SELECT step FROM orders WHERE id = %s FOR UPDATE", (order_id,)
            ).fetchone()
            if row[0] in ("fulfilled", "rejected"):
                raise Rollback()
            conn.execute(
                "INSERT INTO processed_messages (consumer, message_id) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                (CONSUMER, message_id),
            )
            conn.execute(
                "UPDATE orders SET status = 'fulfilled', step = 'fulfilled', "
                "reserved_until = NULL, updated_at = now() WHERE id = %s",
                (order_id,),
            )
            enqueue(
                conn,
                "order.fulfilled",
                "OrderFulfilled",
                {"order_id": order_id, "total_cents": total_cents},
            )
            return "fulfilled"
    return "already_final"


def preload():
    """Publishes one task per pending order; prints how many."""
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        ids = [str(r[0]) for r in conn.execute("SELECT id FROM orders WHERE status = 'pending'")]
    with app.producer_or_acquire() as producer:
        for order_id in ids:
            fulfil.apply_async(args=[order_id, uuid7()], producer=producer)
    print(len(ids))


if __name__ == "__main__":
    preload()
