"""Kit zips encrypted for delivery: to a passphrase or a participant's public key, opened only intact."""

from __future__ import annotations

import io
import os
import stat
import zipfile

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flctl.provisioner import kit_encryption as enc
from flctl.provisioner.build import provision
from flctl.provisioner.errors import InputError, KitError, PassphraseError
from flctl.provisioner.kit_unpack import unpack_file, unpack_zip
from flctl.provisioner.project_loader import load_project
from flctl.provisioner.signing import verify_kit

from .conftest import LOCAL_PROJECT

FAST = {"log2_n": 10}  # scrypt's cost is a parameter of the file; tests need no 128 MiB per derivation


def fast_passphrase(text: bytes = b"correct horse battery") -> enc.Passphrase:
    return enc.Passphrase.derive(text, **FAST)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_passphrase_round_trip():
    """What is sealed with a passphrase opens with it, byte for byte."""
    sealed = enc.encrypt_with_passphrase(b"a kit", fast_passphrase())
    assert sealed.startswith(b"FLCTLKIT\x01\x01") and b"a kit" not in sealed
    assert enc.decrypt(sealed, "x", passphrase=b"correct horse battery") == b"a kit"


@pytest.mark.parametrize("make", [x25519.X25519PrivateKey.generate, lambda: ec.generate_private_key(ec.SECP256R1())],
                         ids=["x25519", "p256"])
def test_public_key_round_trip(make):
    """What is sealed to a public key opens with its private key."""
    key = make()
    sealed = enc.encrypt_to_key(b"a kit", key.public_key())
    assert enc.decrypt(sealed, "x", key=key) == b"a kit"


def test_wrong_passphrase_and_wrong_key_are_told_apart_from_damage():
    """A wrong passphrase or key is a PassphraseError naming the file; a changed byte is a KitError."""
    sealed = enc.encrypt_with_passphrase(b"a kit", fast_passphrase())
    with pytest.raises(PassphraseError, match=r"the passphrase does not open f\.zip\.enc"):
        enc.decrypt(sealed, "f.zip.enc", passphrase=b"wrong passphrase!")
    key = x25519.X25519PrivateKey.generate()
    with pytest.raises(PassphraseError, match="encrypted to another key"):
        enc.decrypt(enc.encrypt_to_key(b"a kit", key.public_key()), "f", key=x25519.X25519PrivateKey.generate())
    # tag, ciphertext, nonce, file salt, scrypt's p: all in the authenticated data or checked
    for at in (len(sealed) - 1, len(sealed) - 20, 65, 30, 12):
        bad = bytearray(sealed)
        bad[at] ^= 1
        with pytest.raises(KitError, match="damaged or was altered"):
            enc.decrypt(bytes(bad), "f", passphrase=b"correct horse battery")
    with pytest.raises(KitError, match="cut short"):
        enc.decrypt(sealed[:40], "f", passphrase=b"correct horse battery")


def test_recipient_from_a_certificate_request(tmp_path):
    """The key `flctl kit request` made can receive a kit: its CSR is the public half."""
    from flctl.provisioner.csr import make_request

    req = make_request("site-1", "local", "site", None, tmp_path)
    sealed = enc.encrypt_to_key(b"a kit", enc.load_recipient(req.csr_path))
    assert enc.decrypt(sealed, "f", key=enc.load_private(req.key_path)) == b"a kit"


def test_rsa_recipient_is_refused(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(65537, 2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "rsa.pub").write_bytes(pem)
    with pytest.raises(KitError, match="X25519 or EC P-256"):
        enc.load_recipient(tmp_path / "rsa.pub")


def test_forked_writers_encrypt_every_kit(tmp_path, umask_022):
    """Kits made in forked helpers get their NAME.zip.enc too (0600), each opening to its own zip."""
    site_key = x25519.X25519PrivateKey.generate()
    delivery = enc.Delivery(fast_passphrase(), {"site-1": site_key.public_key()})
    result = provision(load_project(LOCAL_PROJECT).project, tmp_path / "ws", workers=2, delivery=delivery)
    for kit in result.kits:
        assert kit.encrypted_zip == kit.zip_path.with_name(f"{kit.name}.zip.enc") and mode(kit.encrypted_zip) == 0o600
        opened = enc.decrypt(kit.encrypted_zip.read_bytes(), kit.name,
                             **({"key": site_key} if kit.name == "site-1" else
                                {"passphrase": b"correct horse battery"}))
        assert opened == kit.zip_path.read_bytes()


def test_encrypting_to_a_stranger_is_refused(tmp_path):
    delivery = enc.Delivery(None, {"nobody": x25519.X25519PrivateKey.generate().public_key()})
    with pytest.raises(InputError, match="nobody is not a participant"):
        provision(load_project(LOCAL_PROJECT).project, tmp_path / "ws", delivery=delivery)
    assert not (tmp_path / "ws").exists()


def test_unpacked_kit_is_private_and_verifies(local_kits, tmp_path, umask_022):
    """Unpacking makes the kit folder and its folders 0700, files 0600 and scripts 0700; the kit verifies."""
    kit = unpack_file(local_kits.prod_dir / "site-1.zip", tmp_path / "in")
    assert kit == tmp_path / "in" / "site-1" and verify_kit(kit).ok
    assert {mode(p) for p in kit.rglob("*") if p.is_dir()} | {mode(kit)} == {0o700}
    assert mode(kit / "startup/site.key") == 0o600 and mode(kit / "startup/start.sh") == 0o700
    assert mode(kit / "startup/ca.crt") == 0o600


def _zip(entries: dict[str, tuple[bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, (data, attr) in entries.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = attr << 16
            archive.writestr(info, data)
    return buffer.getvalue()


@pytest.mark.parametrize(("entries", "words"), [
    ({"site-1/startup/x": (b"", 0o100600), "site-1/../../evil": (b"", 0o100600)}, "outside its kit folder"),
    ({"/etc/evil": (b"", 0o100600)}, "outside its kit folder"),
    ({"site-1/startup/link": (b"/etc/passwd", 0o120777)}, "not a plain file"),
    ({"site-1/a": (b"", 0o100600), "site-2/b": (b"", 0o100600)}, "more than one top folder"),
    ({".ssh/authorized_keys": (b"", 0o100600)}, "named after its participant"),
], ids=["dotdot", "absolute", "symlink", "two-tops", "hidden"])
def test_hostile_zip_is_refused_and_nothing_written(tmp_path, entries, words):
    """A zip that could write outside its folder, or a link, is refused before anything is written."""
    with pytest.raises(KitError, match=words):
        unpack_zip(_zip(entries), tmp_path / "in", "k.zip")
    assert not (tmp_path / "in").exists()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_after_the_magic_give_a_sentence_not_a_crash(tail):
    """Whatever follows the magic, decrypting ends in KitError or PassphraseError, never another exception."""
    with pytest.raises((KitError, PassphraseError)):
        enc.decrypt(b"FLCTLKIT" + tail, "f", passphrase=b"correct horse battery",
                    key=x25519.X25519PrivateKey.generate())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_any_bytes_as_a_zip_give_a_sentence_not_a_crash(tmp_path, data):
    """Arbitrary bytes given as a kit zip are refused with KitError and leave nothing behind."""
    with pytest.raises(KitError):
        unpack_zip(data, tmp_path / "in", "k.zip")
    assert not (tmp_path / "in").exists()
