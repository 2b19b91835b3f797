from __future__ import annotations

import pytest

from agentmem.redact import redact

SECRETS = [
    "sk-abcdefghijklmnopqrstuvwx12345678",
    "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345",
    "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
    "sess-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCd",                  # OpenAI session
    "xai-" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789" * 2,                # xAI
    "AIzaSyA1234567890abcdefghijklmnopqrstu",
    "ya29.a0AfH6SMBx3kQ9zLmNoPqRsTuVwXyZ012345",                      # Google OAuth
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",                       # AWS secret access key
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "github_pat_11ABCDEFG0" + "abcdefghijklmnopqrstuvwxyz0123456789" * 2,
    "glpat-xYz12AbC34dEf56GhI78",                                     # GitLab
    "xoxb-1234567890-abcdefghij",
    "https://hooks.slack.com/services/T0ABCDEFG/B0HIJKLMN/abcdefghijklmnopqrstuvwx",
    "sk_live_51HxYzAbCdEfGhIjKlMnOpQr",                               # Stripe
    "rk_live_51HxYzAbCdEfGhIjKlMnOpQrSt",
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "npm_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5",
    "pypi-AgEIcHlwaS5vcmcCJDk3ZTRlZmU0LTYwNzEtNDk5Ni04YmJiLTc3ZmE4ZDM2NDYyNQACKlsz",
    "hf_abcdefghijklmnopqrstuvwxyz01234567",
    "gsk_abcdefghijklmnopqrstuvwxyz01234567",
    "r8_abcdefghijklmnopqrstuvwxyz0123456789",
    ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0"
     ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"),                # JSON Web Token
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq\n-----END RSA PRIVATE KEY-----",
]


@pytest.mark.parametrize("secret", SECRETS)
def test_provider_key_formats_are_redacted(secret: str):
    out = redact(f"my key is {secret}, ok")
    assert secret not in out and secret[-12:] not in out
    assert out.startswith("my key is ") and out.endswith("[REDACTED], ok")


# look like keys to a careless pattern, and are none
NOT_SECRETS = [
    "4b825dc642cb6eb9a060e54bf8d69288fbee4904",                 # a git commit hash
    "da39a3ee5e6b4b0d3255bfef95601890afd80709",                 # 40 lower-case hex
    "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709",                 # upper-case hex: no lower case
    "ThisIsAnOrdinaryButVeryLongCamelCaseName",                 # 40 letters, no digit
    "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",             # base64 of a sha256: 44 long
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYAbc123",           # 46 key characters: no AWS key
    "AAAAB3NzaC1yc2EAAAADAQABAAABAQC7bq1x9Zr0Kq5mX2dT8wLpQ",    # an ssh public key's start
    "/home/Alice/projects/agentmem/src/Main2.java",
    "pk_live_51HxYzAbCdEfGhIjKlMnOpQr",                         # Stripe's publishable key
    "The deploy runs at 09:00 UTC; see commit 3f2a9c1 and ask Bob about the sk_live_ keys.",
    "eyJ is how a JSON object starts in base64; sess-ions and xai-related words stay.",
]


@pytest.mark.parametrize("text", NOT_SECRETS)
def test_key_shaped_text_that_is_no_key_is_untouched(text: str):
    assert redact(f"see {text}, ok") == f"see {text}, ok"


def test_a_bare_aws_key_is_found_among_hashes_and_wide_characters():
    key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    sha = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    wide = "ü" * 50           # two bytes each: the key's place in bytes is not its place in text
    for text in (f"{sha} café={key}\n{sha}", f"{wide} {key} ok"):
        assert redact(text) == text.replace(key, "[REDACTED]")


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
    monkeypatch.setenv("AGENTMEM_TEST_STEADY_TOKEN", "steady-secret-value")
    done = threading.Event()

    def churn() -> None:
        for name in names:
            os.environ[name] = "x"
        done.set()

    scans: list[list[str]] = []
    thread = threading.Thread(target=churn)
    thread.start()
    try:
        while not done.is_set():
            scans.append(env_secrets())       # a "changed size during iteration" would raise
    finally:
        thread.join()
    for name in names:
        del os.environ[name]
    assert scans, "no scan ran while the other thread was setting variables"
    assert all("steady-secret-value" in found for found in scans)


def test_a_pattern_is_compiled_only_once_text_passes_its_gate():
    """`agentmem history` and `diff` redact nothing, so importing compiles no secret pattern;
    plain prose compiles none either, and a key compiles the pattern that redacts it."""
    import subprocess
    import sys

    probe = ("from agentmem import redact as r\n"
             "def n(): return sum(p._compiled is not None for p, _ in r._PATTERNS)\n"
             "a = n(); r.redact('plain words, nothing to hide here'); b = n()\n"
             "out = r.redact('key hf_abcdefghijklmnopqrstuvwxyz0123456789')\n"
             "print(a, b, n(), out)\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "0", "1", "key", "[REDACTED]"]
