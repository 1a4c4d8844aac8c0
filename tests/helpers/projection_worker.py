"""A projection process for the crash, group and takeover tests.

    python tests/helpers/projection_worker.py DSN --mode exactly_once --worker w1 [...]

Runs a ProjectionRunner until SIGTERM/SIGINT, then stops it cleanly and exits 0. Needs the
repository root and ``tests/`` on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from eventuali_pg import EventStore
from eventuali_pg.projections import ConsumerGroup, ElasticGroup, ProjectionRunner
from helpers.projection_domain import CountingProjection, DeliveryProjection


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("--mode", choices=["exactly_once", "at_least_once"], required=True)
    parser.add_argument("--worker", default="w")
    parser.add_argument("--subscription", default="proj-test")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--checkpoint-interval", type=float, default=0.2)
    parser.add_argument("--slow", type=float, default=0.0)
    parser.add_argument("--group-size", type=int, default=0)
    parser.add_argument("--member", type=int, default=0)
    parser.add_argument("--single-active", action="store_true")
    parser.add_argument("--elastic", action="store_true", help="ElasticGroup, member id = worker")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--lease-seconds", type=float, default=2.0)
    parser.add_argument("--heartbeat-seconds", type=float, default=0.3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    store = await EventStore.create(args.dsn, poll_interval=0.2)
    delivery: DeliveryProjection | None = None
    projection: CountingProjection | DeliveryProjection
    if args.mode == "exactly_once":
        projection = CountingProjection(args.worker, args.slow)
    else:
        projection = delivery = DeliveryProjection(args.dsn, args.worker, args.slow)
    group: ConsumerGroup | ElasticGroup | None = None
    if args.elastic:
        group = ElasticGroup(
            partitions=args.partitions,
            member_id=args.worker,
            lease_seconds=args.lease_seconds,
            heartbeat_seconds=args.heartbeat_seconds,
        )
    elif args.group_size:
        group = ConsumerGroup(size=args.group_size, member=args.member)
    runner = ProjectionRunner(
        store,
        projection,
        subscription_id=args.subscription,
        batch_size=args.batch_size,
        checkpoint_every=args.checkpoint_every,
        checkpoint_interval=args.checkpoint_interval,
        max_attempts=2,
        retry_delay=0.01,
        group=group,
        single_active=args.single_active,
        lease_poll_interval=0.1,
        lease_heartbeat_interval=0.5,
    )
    try:
        async with runner:
            print("started", flush=True)
            await stop.wait()
    finally:
        if delivery is not None:
            await delivery.close()
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
