"""Numbers as physicists write them: a value with its error in parenthesis notation.

``paren(0.24251, 0.00101) == "0.2425(10)"``: the digits in parentheses are the error in units of
the last digit of the value. The number of significant digits of the error follows the Particle
Data Group rule, as the ``uncertainties`` package's shorthand format (``format(ufloat(v, e),
"S")``) applies it: the three leading digits of the error decide — 100–354 keep two digits,
355–949 keep one, 950–999 round up to 1000 and keep two — and the value is rounded to the same
decimal place. So ``22.01(23)``, ``18.5(9)``, ``1.00(10)`` (0.0996 rounds up to the next digit),
``0.5(2.3)`` (an error larger than the value), ``90(60)`` (the library's ``9(6)e+01`` written
out up to 10⁵), and an exponent where the number is very large or small (``1.000(10)e-05``).

Cases the library does not settle are settled here: a missing value (``None``) prints ``n/a``;
an error of exactly zero (an exact value) prints the value to 6 significant digits and ``(0)``
(``uncertainties`` would print every digit of the float's repr and warn); a non-finite value or
error prints the value to 4 significant digits and the error as ``(nan)``/``(inf)``.

results.json keeps ``[mean, err]`` pairs; only what is printed for a reader is formatted here.
"""

from __future__ import annotations

import math
import re
import warnings

from uncertainties import ufloat

__all__ = ["paren", "paren_pair", "plain", "ratio"]


def paren(value, err=None) -> str:
    """``value`` with ``err`` in parenthesis notation (module docstring); ``err=None`` gives
    :func:`plain` (``value`` to 4 significant digits)."""
    if value is None:
        return "n/a"
    if err is None:
        return plain(value)
    value, err = float(value), abs(float(err))
    if not (math.isfinite(value) and math.isfinite(err)):
        return f"{value:.4g}({err:.2g})"  # f-strings write nan and inf as such
    if err == 0.0:
        return f"{value:.6g}(0)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = format(ufloat(value, err), "S")
    return _without_small_exponent(text)


#: ``9(6)e+01``: the library's shorthand with a positive power of ten
_EXPONENT = re.compile(r"^(-?\d+(?:\.\d+)?)\((\d+(?:\.\d+)?)\)e\+(\d+)$")


def _without_small_exponent(text: str) -> str:
    """``9(6)e+01`` → ``90(60)``, ``1.235(8)e+04`` → ``12350(80)``: the library writes a power of
    ten as soon as the last kept digit lies left of the decimal point; up to 10⁵ plain digits read
    better (τ_int = 90(60)). The digits are multiplied out exactly (both are then integers)."""
    m = _EXPONENT.match(text)
    if m is None or int(m.group(3)) > 5:
        return text
    mantissa, digits, scale = m.group(1), m.group(2), 10 ** int(m.group(3))
    decimals = len(mantissa.partition(".")[2])
    # "(8)" counts units of the mantissa's last digit; "(2.3)" is the error itself
    err = float(digits) if "." in digits else int(digits) * 10.0**-decimals
    return f"{round(float(mantissa) * scale)}({round(err * scale)})"


def paren_pair(pair) -> str:
    """A results.json ``[mean, err]`` pair (or ``[mean, err, window]``) in parenthesis notation;
    ``None`` or ``[None, None]`` gives ``n/a``."""
    if pair is None or pair[0] is None:
        return "n/a"
    return paren(pair[0], pair[1])


def plain(value, digits: int = 4) -> str:
    """A number without an error: ``digits`` significant digits (integers as they are)."""
    if value is None:
        return "n/a"
    if isinstance(value, (bool, int)):
        return str(value)
    return f"{float(value):.{digits}g}"


def ratio(a, a_err, b, b_err) -> tuple[float, float] | tuple[None, None]:
    """r = a / b with the linearly propagated error of independent a and b,
    δr = |r| √((δa/a)² + (δb/b)²) (``uncertainties``' first-order propagation). ``(None, None)``
    when an input is missing or b = 0."""
    if None in (a, a_err, b, b_err) or b == 0:
        return None, None
    r = ufloat(float(a), abs(float(a_err))) / ufloat(float(b), abs(float(b_err)))
    return float(r.nominal_value), float(r.std_dev)
