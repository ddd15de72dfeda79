"""HTTPS settings and the certificate check `gengate serve` makes before it starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from gengate.server.run import server_config
from gengate.server.tls import check_tls, tls_options
from gengate.settings import Settings, load_settings
from gengate.startup import ConfigFileError, StartupError


@pytest.fixture
def pems(tmp_path: Path) -> tuple[Path, Path]:
    issued = trustme.CA().issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    for blob in issued.cert_chain_pems:
        blob.write_to_path(str(cert), append=True)
    issued.private_key_pem.write_to_path(str(key))
    return cert, key


def tls_settings(tmp_path: Path, cert: Path | None, key: Path | None = None) -> Settings:
    return load_settings(data_dir=tmp_path / "data", ssl_certfile=cert, ssl_keyfile=key)


def test_a_certificate_makes_result_urls_https(tmp_path: Path, pems: tuple[Path, Path]) -> None:
    plain = tls_settings(tmp_path, None)
    assert (plain.scheme, plain.base_url) == ("http", "http://127.0.0.1:8000")
    assert tls_options(plain) == {}
    served = tls_settings(tmp_path, *pems)
    assert (served.scheme, served.base_url) == ("https", "https://127.0.0.1:8000")
    check_tls(served)
    assert tls_options(served) == {"ssl_certfile": str(pems[0]), "ssl_keyfile": str(pems[1])}
    config = server_config(object(), served)
    assert (config.ssl_certfile, config.ssl_keyfile) == (str(pems[0]), str(pems[1]))
    assert config.is_ssl


def test_a_key_without_a_certificate_is_refused(tmp_path: Path, pems: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigFileError, match="ssl_keyfile is set without ssl_certfile"):
        tls_settings(tmp_path, None, pems[1])


def test_unusable_files_are_one_clear_error(tmp_path: Path, pems: tuple[Path, Path]) -> None:
    cert, key = pems
    missing = tmp_path / "missing.pem"
    with pytest.raises(StartupError, match=f"TLS certificate file {missing} does not exist"):
        check_tls(tls_settings(tmp_path, missing, key))
    with pytest.raises(StartupError, match=f"TLS key file {missing} does not exist"):
        check_tls(tls_settings(tmp_path, cert, missing))
    with pytest.raises(StartupError, match="cannot serve HTTPS with"):
        check_tls(tls_settings(tmp_path, cert))  # the certificate file holds no key
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(StartupError, match=f"cannot serve HTTPS with {garbage}"):
        check_tls(tls_settings(tmp_path, garbage, key))
