"""Recovery codes: format, entropy, normalisation and keyed hashing (pure functions)."""

from __future__ import annotations

import re
import uuid

import pytest

from auth_service.services.second_factor.recovery_codes import (
    generate_codes,
    hash_code,
    normalize_code,
)

_FORMAT = re.compile(r"^([0-9A-HJKMNP-TV-Z]{4}-){5}[0-9A-HJKMNP-TV-Z]{4}$")


def test_codes_are_distinct_crockford_groups_of_120_bits() -> None:
    codes = generate_codes(10)
    assert len(set(codes)) == 10
    for code in codes:
        assert _FORMAT.match(code), code
        # 24 symbols of a 32-letter alphabet: 120 bits, over NIST's 112-bit line.
        assert len(code.replace("-", "")) * 5 == 120


def test_generation_is_random() -> None:
    assert not set(generate_codes(10)) & set(generate_codes(10))


@pytest.mark.parametrize(
    "typed",
    [
        "ABCD-EFGH-JKMN-PQRS-TVWX-YZ01",
        "abcd efgh jkmn pqrs tvwx yz01",
        "abcdefghjkmnpqrstvwxyz0l",  # l read as 1
        " ABCD-EFGH-JKMN-PQRS-TVWX-YZOI ",  # O read as 0, I as 1
    ],
)
def test_normalisation_forgives_case_spacing_and_lookalikes(typed: str) -> None:
    assert normalize_code(typed) == "ABCDEFGHJKMNPQRSTVWXYZ01"


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "ABCD",
        "ABCD-EFGH-JKMN-PQRS-TVWX-YZ01-X",
        "UUUU-UUUU-UUUU-UUUU-UUUU-UUUU",
        "ÄBCD-EFGH-JKMN-PQRS-TVWX-YZ01",
    ],
)
def test_impossible_codes_normalise_to_none(typed: str) -> None:
    assert normalize_code(typed) is None


def test_hash_is_keyed_by_the_owner() -> None:
    code = "ABCDEFGHJKMNPQRSTVWXYZ01"
    alice, bob = uuid.uuid4(), uuid.uuid4()
    assert hash_code(alice, code) == hash_code(alice, code)
    assert hash_code(alice, code) != hash_code(bob, code)
    assert len(hash_code(alice, code)) == 64
    assert code not in hash_code(alice, code)
