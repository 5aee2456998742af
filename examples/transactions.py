"""Per-customer transaction count and amount totals over a generated stream of transactions.

Run it with ``weir run examples/transactions.py`` (a local cluster is started for the run), or against a
cluster with ``weir run --jobmanager HOST:PORT -p 2 examples/transactions.py``. Ported from PyFlink by
changing the import prefix: every name below exists in ``pyflink`` too.
"""

import random
import sys

from weir.common import Row, Types
from weir.datastream import StreamExecutionEnvironment
from weir.datastream.connectors.number_seq import NumberSequenceSource
from weir.datastream.functions import MapFunction, ReduceFunction

CUSTOMERS = 50


class ToTransaction(MapFunction):
    """Turns sequence number n into a deterministic transaction (customer_id, amount in cents)."""

    def map(self, n: int) -> Row:
        rnd = random.Random(n)
        return Row(customer_id=f"customer-{rnd.randrange(CUSTOMERS):03d}", count=1, amount=rnd.randrange(100, 50_000))


class SumTotals(ReduceFunction):
    def reduce(self, a: Row, b: Row) -> Row:
        return Row(customer_id=a.customer_id, count=a.count + b.count, amount=a.amount + b.amount)


def reference(n: int) -> dict[str, tuple[int, int]]:
    """The same totals computed in plain Python, to check the job against."""
    out: dict[str, tuple[int, int]] = {}
    f = ToTransaction()
    for i in range(n):
        t = f.map(i)
        c, a = out.get(t.customer_id, (0, 0))
        out[t.customer_id] = (c + 1, a + t.amount)
    return out


def main(n: int) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    totals = (
        env.from_source(NumberSequenceSource(0, n - 1), None, "transactions")
        .map(ToTransaction(), output_type=Types.ROW_NAMED(["customer_id", "count", "amount"],
                                                          [Types.STRING(), Types.LONG(), Types.LONG()]))
        .key_by(lambda t: t.customer_id, key_type=Types.STRING())
        .reduce(SumTotals())
        .name("per-customer totals")
    )
    final: dict[str, Row] = {}
    with totals.execute_and_collect("transactions") as results:
        for row in results:  # a rolling reduce: the last row of a customer is its total
            prev = final.get(row.customer_id)
            if prev is None or row.count > prev.count:
                final[row.customer_id] = row
    print(f"{'customer':<14}{'transactions':>14}{'amount':>16}")
    for cid in sorted(final):
        r = final[cid]
        print(f"{cid:<14}{r.count:>14,}{r.amount / 100:>16,.2f}")
    expected = reference(n)
    got = {cid: (r.count, r.amount) for cid, r in final.items()}
    print(f"{sum(r.count for r in final.values()):,} transactions of {len(final)} customers; "
          f"matches the plain-Python reference: {got == expected}")
    if got != expected:
        sys.exit(1)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
