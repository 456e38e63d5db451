"""Double-entry ledger rules, pure.

Every money movement is a transaction of postings that sum to zero. Account codes name where
money sits (design.md): per tenant account `wallet:<account>` (or `wallet:meter:<meter>` for a
per-meter balance), per site `cash:<provider>` (money received, negative = money held from
outside), `revenue:electricity`, `revenue:water`, `revenue:fee:<item>`, `receivable:<account>`.
Signs: positive on a wallet = the tenant has credit. Transactions are immutable; a mistake is
fixed by a reversing transaction. Every transaction has a unique key, which is its idempotency key.

Only tenant-owned accounts (wallets, receivables) keep a cached balance next to their postings: they
are read on every reading, payment and bot question. Site-level accounts (cash, revenue) are touched
by every payment and every ingest batch of a site; caching their balance would make each of those
transactions wait for the one before it on the same row. Their balance is the sum of their postings,
computed when a report asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from billing.money import Money


class LedgerError(ValueError):
    """A transaction that would break the ledger's rules."""


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    amount: Money


@dataclass(frozen=True, slots=True)
class Transaction:
    key: str  # idempotency key: recharge:<order>, usage:<meter>:<epoch>:<ts>, refund:<order>, ...
    kind: str  # recharge | usage | refund | fee | apportion | settle | reversal | package
    postings: tuple[Posting, ...]
    memo: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            raise LedgerError("a transaction needs an idempotency key")
        if len(self.postings) < 2:
            raise LedgerError("a transaction needs at least two postings")
        if sum(p.amount.fen for p in self.postings) != 0:
            raise LedgerError(f"postings of {self.key} do not sum to zero")

    def amount_for(self, account: str) -> Money:
        return Money(sum(p.amount.fen for p in self.postings if p.account == account))


def transfer(key: str, kind: str, source: str, dest: str, amount: Money, memo: str = "") -> Transaction:
    """Move a positive amount from `source` to `dest`."""
    if not amount.is_positive:
        raise LedgerError(f"amount must be positive, got {amount}")
    return Transaction(key, kind, (Posting(source, -amount), Posting(dest, amount)), memo)


def reversal(original: Transaction, key: str, memo: str = "") -> Transaction:
    """The transaction that undoes `original` exactly."""
    flipped = tuple(Posting(p.account, -p.amount) for p in original.postings)
    return Transaction(key, "reversal", flipped, memo or f"reverses {original.key}")


def balances(transactions: Iterable[Transaction]) -> dict[str, Money]:
    """Account balances as sums of postings (the definition the stored cache is checked against)."""
    out: dict[str, int] = {}
    for t in transactions:
        for p in t.postings:
            out[p.account] = out.get(p.account, 0) + p.amount.fen
    return {k: Money(v) for k, v in out.items()}


CACHED_PREFIXES = ("wallet:", "receivable:")


def caches_balance(code: str) -> bool:
    """Whether the ledger account `code` keeps a cached balance (tenant-owned) or not (site-level)."""
    return code.startswith(CACHED_PREFIXES)


def wallet_code(account_id: int, meter_id: int | None = None) -> str:
    return f"wallet:meter:{meter_id}" if meter_id is not None else f"wallet:{account_id}"


def revenue_code(utility: str) -> str:
    return f"revenue:{utility}"


def cash_code(provider: str) -> str:
    return f"cash:{provider}"
