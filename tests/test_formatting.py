"""trivflow.formatting: parenthesis notation (PDG significant digits via `uncertainties`) and ratios."""

import math
import warnings

import pytest

from trivflow.formatting import paren, paren_pair, plain, ratio


@pytest.mark.parametrize("value,err,text", [
    (0.24251, 0.00101, "0.2425(10)"),  # 101 → two digits of the error
    (22.014, 0.231, "22.01(23)"),
    (18.52, 0.93, "18.5(9)"),  # 930 → one digit
    (-3.2, 0.012, "-3.200(12)"),  # the value keeps the error's decimal place, trailing zeros included
    (1.0, 0.0996, "1.00(10)"),  # 996 rounds up to the next digit: 0.10, two digits
    (9.96, 0.96, "10.0(1.0)"),  # value and error both round up across a power of ten
    (0.5, 2.3, "0.5(2.3)"),  # error larger than the value: the error keeps its decimal point
    (5.0, 12.0, "5(12)"),
    (1e-5, 1e-7, "1.000(10)e-05"),  # very small: a common exponent
    (93.2, 61.0, "90(60)"),  # the last kept digit left of the point: written out, not 9(6)e+01
    (12345.6, 78.9, "12350(80)"),
    (-512.0, 130.0, "-510(130)"),
    (512.0, 2300.0, "500(2300)"),  # error ≥ value with an exponent: 0.5(2.3)e+03 written out
    (2.5e7, 3e5, "2.500(30)e+07"),  # large: the exponent stays
    (0.0, 0.01, "0.000(10)"),
])
def test_parenthesis_notation(value, err, text):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert paren(value, err) == text


def test_zero_error_missing_and_non_finite():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # uncertainties warns on a zero error; an exact value must not
        assert paren(0.1 + 0.2, 0.0) == "0.3(0)"  # 6 significant digits, not the float's repr
        assert paren(1.23456789, 0) == "1.23457(0)"
    assert paren(None, 0.1) == "n/a" and paren_pair(None) == "n/a" and paren_pair([None, None]) == "n/a"
    assert paren(0.3, float("nan")) == "0.3(nan)" and paren(3.0, float("inf")) == "3(inf)"
    assert paren(0.5, -0.1) == paren(0.5, 0.1)  # an error is a width
    assert paren_pair([18.52, 0.93, 398]) == "18.5(9)"  # a tau_int triple: the window is not printed
    assert paren(0.96875) == plain(0.96875) == "0.9688" and plain(7) == "7" and plain(None) == "n/a"


def test_ratio_propagates_independent_errors():
    r, err = ratio(18.5, 0.9, 20.0, 1.0)
    assert r == pytest.approx(0.925)
    assert err == pytest.approx(0.925 * math.hypot(0.9 / 18.5, 1.0 / 20.0))
    assert ratio(1.0, 0.1, 0.0, 0.1) == (None, None) and ratio(None, None, 1.0, 0.1) == (None, None)
