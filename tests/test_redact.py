from __future__ import annotations

import pytest

from agentmem.redact import redact

SECRETS = [
    "sk-abcdefghijklmnopqrstuvwx12345678",
    "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345",
    "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
    "AIzaSyA1234567890abcdefghijklmnopqrstu",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "xoxb-1234567890-abcdefghij",
    "hf_abcdefghijklmnopqrstuvwxyz01234567",
    "gsk_abcdefghijklmnopqrstuvwxyz01234567",
]


@pytest.mark.parametrize("secret", SECRETS)
def test_provider_key_formats_are_redacted(secret: str):
    out = redact(f"my key is {secret}, ok")
    assert secret not in out and "[REDACTED]" in out and out.endswith(", ok")


def test_bearer_private_key_and_assignments():
    text = ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig\n"
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nabc\n-----END RSA PRIVATE KEY-----\n"
            "OPENAI_API_KEY=plainvalue123456")
    out = redact(text)
    assert "eyJhbGci" not in out and "MIIEow" not in out and "plainvalue123456" not in out


def test_ordinary_text_is_untouched():
    text = "Set max_tokens: 1000 and use the token budget; password policy is strict."
    assert redact(text) == text


def test_stream_redactor_catches_a_secret_split_across_chunks():
    from agentmem.redact import StreamRedactor

    secret = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
    text = f"Your key {secret} leaked; rotate it.\nBearer abcdefghijklmnopqrstu end"
    for size in (1, 3, 7, 50):
        r = StreamRedactor()
        shown = "".join(r.feed(text[i:i + size]) for i in range(0, len(text), size)) + r.flush()
        assert secret not in shown and "abcdefghijklmnopqrstu" not in shown
        assert shown == "Your key [REDACTED] leaked; rotate it.\nBearer [REDACTED] end"


def test_environment_values_named_like_keys_are_redacted(monkeypatch):
    """Any value of 12+ characters in a variable named like a key is a secret, wherever it
    shows up, even when it matches no known key shape."""
    from agentmem.redact import env_secrets

    monkeypatch.setenv("MY_SERVICE_TOKEN", "plain-words-but-secret")
    monkeypatch.setenv("ACME_PASSWORD", "pässwörd-ünïcode")        # non-ASCII: 16 characters
    monkeypatch.setenv("SHORT_KEY", "ééééééé")                     # 7 characters, 14 bytes
    monkeypatch.setenv("HARMLESS_NAME", "plain-words-not-secret")
    found = env_secrets()
    assert "plain-words-but-secret" in found and "pässwörd-ünïcode" in found
    assert "ééééééé" not in found and "plain-words-not-secret" not in found
    assert found == sorted(found, key=len, reverse=True)
    text = redact("token plain-words-but-secret and pässwörd-ünïcode, plain-words-not-secret")
    assert text == "token [REDACTED] and [REDACTED], plain-words-not-secret"


def test_environment_scan_survives_another_thread_setting_variables(monkeypatch):
    """litellm's import sets variables (os.environ.setdefault) on a preload thread while a
    journal append may scan the environment for secrets."""
    import os
    import threading

    from agentmem.redact import env_secrets

    names = [f"AGENTMEM_TEST_CHURN_{i}" for i in range(3000)]
    for name in names:
        monkeypatch.delenv(name, raising=False)       # removed again after the test
    done = threading.Event()

    def churn() -> None:
        for name in names:
            os.environ[name] = "x"
        done.set()

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        while not done.is_set():
            env_secrets()
    finally:
        thread.join()
    for name in names:
        del os.environ[name]
