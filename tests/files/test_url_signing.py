"""UrlSigner: a URL verifies only unchanged and before its expiry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gengate.domain.errors import Forbidden
from gengate.files.signing import UrlSigner

SIGNER = UrlSigner(b"test-secret")
PATH = "/files/task_abc/0.png"
EXPIRES = 1_700_000_000_000
BEFORE = EXPIRES - 1


def test_roundtrip() -> None:
    signature = SIGNER.sign(PATH, EXPIRES)
    SIGNER.verify(PATH, EXPIRES, signature, BEFORE)
    assert "=" not in signature
    assert len(signature) == 43  # 32 bytes, unpadded base64


def test_signature_is_stable_and_keyed() -> None:
    assert SIGNER.sign(PATH, EXPIRES) == UrlSigner(b"test-secret").sign(PATH, EXPIRES)
    assert SIGNER.sign(PATH, EXPIRES) != UrlSigner(b"other-secret").sign(PATH, EXPIRES)


@pytest.mark.parametrize(
    ("path", "expires"),
    [("/files/task_abc/1.png", EXPIRES), ("/files/task_abd/0.png", EXPIRES), (PATH, EXPIRES + 1)],
)
def test_tampered_path_or_expiry_is_invalid(path: str, expires: int) -> None:
    signature = SIGNER.sign(PATH, EXPIRES)
    with pytest.raises(Forbidden, match=r"^The URL signature is invalid\.$"):
        SIGNER.verify(path, expires, signature, BEFORE)


@pytest.mark.parametrize("signature", ["", "x", "A" * 43, "é" * 43])
def test_wrong_signature_is_invalid(signature: str) -> None:
    with pytest.raises(Forbidden, match="invalid"):
        SIGNER.verify(PATH, EXPIRES, signature, BEFORE)


@pytest.mark.parametrize("now", [EXPIRES, EXPIRES + 1])
def test_expired(now: int) -> None:
    with pytest.raises(Forbidden, match=r"^The URL has expired\.$"):
        SIGNER.verify(PATH, EXPIRES, SIGNER.sign(PATH, EXPIRES), now)


def test_forged_and_expired_reports_invalid() -> None:
    with pytest.raises(Forbidden, match="invalid"):
        SIGNER.verify(PATH, EXPIRES, "A" * 43, EXPIRES + 1)


def test_query() -> None:
    assert SIGNER.query(PATH, EXPIRES) == f"?expires={EXPIRES}&signature={SIGNER.sign(PATH, EXPIRES)}"


def test_empty_secret_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        UrlSigner(b"")


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@given(
    path=st.text(),
    expires=st.integers(min_value=0, max_value=2**63 - 1),
    index=st.integers(min_value=0, max_value=42),
    replacement=st.characters(),
)
def test_any_path_verifies_and_any_one_character_change_fails(
    path: str, expires: int, index: int, replacement: str
) -> None:
    signature = SIGNER.sign(path, expires)
    assert set(signature) <= set(_ALPHABET)
    SIGNER.verify(path, expires, signature, expires - 1)
    if replacement == signature[index]:
        replacement = "A" if replacement != "A" else "B"
    tampered = signature[:index] + replacement + signature[index + 1 :]
    with pytest.raises(Forbidden, match="invalid"):
        SIGNER.verify(path, expires, tampered, expires - 1)
