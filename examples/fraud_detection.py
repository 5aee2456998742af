"""The fraud-detection job: per-customer 1-minute event-time windows, and a velocity rule raising alerts.

Generated transactions (customer_id, amount, ts) arrive out of order by up to 5 seconds. The job

- sums amount and counts transactions per customer in 1-minute tumbling event-time windows, and
- raises an alert when a customer makes more than 5 transactions, or more than 2,000 in amount, within 5 minutes
  (a KeyedProcessFunction with MapState of the customer's recent transactions and event-time timers, which
  evaluates the rule in event-time order and cleans the state up).

Run: ``weir run -p 2 examples/fraud_detection.py [N]``. Every name below exists in PyFlink too.
"""

import random
import sys

from weir.common import Duration, Time, Types
from weir.common.watermark_strategy import TimestampAssigner, WatermarkStrategy
from weir.datastream import StreamExecutionEnvironment
from weir.datastream.connectors.number_seq import NumberSequenceSource
from weir.datastream.functions import AggregateFunction, KeyedProcessFunction, ProcessWindowFunction, RuntimeContext
from weir.datastream.state import MapStateDescriptor
from weir.datastream.window import TumblingEventTimeWindows

CUSTOMERS = 100
WINDOW_MS = 60_000
VELOCITY_MS = 5 * 60_000
MAX_COUNT = 5
MAX_AMOUNT = 2_000


def transaction(n: int) -> tuple[str, int, int]:
    """Transaction n: one every 3 s overall, up to 5 s out of order; now and then a customer bursts."""
    rnd = random.Random(n)
    customer = rnd.randrange(CUSTOMERS)
    amount = rnd.randrange(1, 400)
    if n % 997 < 8:  # a burst: the same customer, many transactions close together
        customer = (n // 997) % CUSTOMERS
        amount = rnd.randrange(200, 700)
    ts = n * 3_000 - rnd.randrange(0, 5_000)
    return (f"c{customer:02d}", amount, ts)


class TransactionTime(TimestampAssigner):
    def extract_timestamp(self, value, record_timestamp):
        return value[2]


class SumAndCount(AggregateFunction):
    def create_accumulator(self):
        return (0, 0)

    def add(self, value, acc):
        return (acc[0] + value[1], acc[1] + 1)

    def get_result(self, acc):
        return acc

    def merge(self, a, b):
        return (a[0] + b[0], a[1] + b[1])


class WithWindow(ProcessWindowFunction):
    def process(self, key, context, elements):
        total, count = next(iter(elements))
        yield ("window", key, context.window().start, total, count)


class VelocityRule(KeyedProcessFunction):
    """Keeps the customer's transactions of the last 5 minutes; checks the rule when the watermark passes each
    transaction's time, so the result does not depend on arrival order."""

    def open(self, runtime_context: RuntimeContext):
        self.recent = runtime_context.get_map_state(
            MapStateDescriptor("recent", Types.LONG(), Types.LIST(Types.LONG())))

    def process_element(self, value, ctx):
        amounts = self.recent.get(value[2]) or []
        self.recent.put(value[2], amounts + [value[1]])
        ctx.timer_service().register_event_time_timer(value[2])

    def on_timer(self, timestamp, ctx):
        horizon = timestamp - VELOCITY_MS
        count = total = 0
        for ts in list(self.recent.keys()):
            if ts <= horizon:
                self.recent.remove(ts)  # clean-up: older than the rule's 5 minutes
            elif ts <= timestamp:
                count += len(self.recent.get(ts))
                total += sum(self.recent.get(ts))
        if count > MAX_COUNT or total > MAX_AMOUNT:
            yield ("alert", ctx.get_current_key(), timestamp, total, count)


def build(env: StreamExecutionEnvironment, n: int):
    strategy = (WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_seconds(5))
                .with_timestamp_assigner(TransactionTime()))
    transactions = (env.from_source(NumberSequenceSource(0, n - 1), WatermarkStrategy.no_watermarks(), "ids")
                    .map(transaction)
                    .assign_timestamps_and_watermarks(strategy))
    by_customer = transactions.key_by(lambda t: t[0])
    windows = (by_customer.window(TumblingEventTimeWindows.of(Time.minutes(1)))
               .aggregate(SumAndCount(), WithWindow()).name("1-minute totals"))
    alerts = by_customer.process(VelocityRule()).name("velocity rule")
    return windows.union(alerts)


def reference(n: int) -> set:
    """The same results computed in plain Python, in event time."""
    out = set()
    windows: dict = {}
    per_customer: dict = {}
    for i in range(n):
        c, amount, ts = transaction(i)
        w = ts - ts % WINDOW_MS
        total, count = windows.get((c, w), (0, 0))
        windows[(c, w)] = (total + amount, count + 1)
        per_customer.setdefault(c, []).append((ts, amount))
    for (c, w), (total, count) in windows.items():
        out.add(("window", c, w, total, count))
    for c, txs in per_customer.items():
        for t in {ts for ts, _ in txs}:
            recent = [a for ts, a in txs if t - VELOCITY_MS < ts <= t]
            if len(recent) > MAX_COUNT or sum(recent) > MAX_AMOUNT:
                out.add(("alert", c, t, sum(recent), len(recent)))
    return out


def main(n: int) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    results = list(build(env, n).execute_and_collect("fraud detection"))
    windows = sorted(r for r in results if r[0] == "window")
    alerts = sorted((r for r in results if r[0] == "alert"), key=lambda r: (r[2], r[1]))
    print(f"{len(windows)} customer-minute windows, for example:")
    for _, c, start, total, count in windows[:8]:
        print(f"  {c} [{start // 1000:>6}s, {(start + WINDOW_MS) // 1000:>6}s)  {count:>3} transactions  {total:>6}")
    print(f"{len(alerts)} fraud alerts, the first ones:")
    for _, c, ts, total, count in alerts[:8]:
        print(f"  {c} at {ts / 1000:>8.1f}s: {count} transactions, {total} in the last 5 minutes")
    ok = set(results) == reference(n) and len(results) == len(set(results))
    print(f"matches the plain-Python event-time reference: {ok}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60_000)
