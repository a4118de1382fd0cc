"""Money is an integer amount of minor units plus an ISO 4217 currency code, never a float."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Money:
    amount: int
    currency: str = "usd"

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise TypeError("Money.amount must be an int of minor units")
        if len(self.currency) != 3 or not self.currency.isalpha():
            raise ValueError("currency must be a 3-letter ISO 4217 code")
        object.__setattr__(self, "currency", self.currency.lower())

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"currency mismatch: {self.currency} vs {other.currency}")

    def as_json(self) -> dict[str, object]:
        return {"amount": self.amount, "currency": self.currency}


def percent_of(amount: int, percent: int | float | str, *, basis_points: bool = False) -> int:
    """`percent` of `amount`, rounded half up to a whole minor unit, in integer arithmetic.

    `percent` is given in hundredths of a percent when basis_points is True (e.g. 825 = 8.25%).
    """
    bp = int(percent) if basis_points else round(float(percent) * 100)
    num = amount * bp
    q, r = divmod(num, 10_000)
    return q + (1 if r * 2 >= 10_000 else 0)
