from __future__ import annotations

import pytest

from agentmem import llm, models
from agentmem.errors import ModelError
from agentmem.models import ModelSpec
from agentmem.scripted import Reply


def test_every_litellm_exception_is_in_the_error_table():
    """Fails when litellm adds an exception type the table does not know."""
    lib = llm.litellm()
    known = {name for name, *_ in llm.ERRORS}
    for cls in lib.LITELLM_EXCEPTION_TYPES:
        assert any(issubclass(cls, getattr(lib.exceptions, name, None) or getattr(lib, name))
                   for name in known if isinstance(getattr(lib.exceptions, name, None)
                                                   or getattr(lib, name, None), type)), cls


@pytest.mark.parametrize("kind,retryable,words", [
    ("rate_limit", True, "rate limited"), ("timeout", True, "did not answer in time"),
    ("auth", False, "rejected the API key"), ("context_window", False, "too long"),
    ("unavailable", True, "unavailable"), ("connection", True, "could not reach"),
    ("not_found", False, "does not know this model"), ("server", True, "internal error"),
])
def test_provider_errors_are_translated(model, monkeypatch, kind, retryable, words):
    monkeypatch.setenv("AGENTMEM_RETRIES", "0")
    model.push(Reply(error=kind))
    with pytest.raises(ModelError) as err:
        llm.complete(ModelSpec("scripted/x", None, "test"), [{"role": "user", "content": "hi"}])
    assert err.value.retryable is retryable and words in err.value.message
    assert err.value.hint


def test_transient_errors_are_retried_then_succeed(model):
    model.push(Reply(error="timeout"), Reply(error="unavailable"), "fine")
    waits = []
    reply = llm.complete(ModelSpec("scripted/x", None, "test"), [{"role": "user", "content": "hi"}],
                         on_retry=lambda e, w: waits.append(w))
    assert reply.text == "fine" and len(waits) == 2


def test_running_out_of_scripted_replies_fails_loudly(model):
    from agentmem.scripted import ScriptExhausted

    with pytest.raises(ScriptExhausted, match="no reply queued for call #1"):
        llm.complete(ModelSpec("scripted/x", None, "test"), [{"role": "user", "content": "hi"}])
    model.exhausted.clear()


def test_model_resolution_order(monkeypatch, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("model: haiku\naliases:\n  mine: openai/my-model\n")
    monkeypatch.setenv("AGENTMEM_CONFIG", str(cfg))
    assert models.resolve(None, {}).model == "anthropic/claude-haiku-4-5"
    assert models.resolve(None, {"model": "mine"}).model == "openai/my-model"
    monkeypatch.setenv("AGENTMEM_MODEL", "sonnet")
    assert models.resolve(None, {"model": "mine"}).model == "anthropic/claude-sonnet-4-5"
    assert models.resolve("ollama/llama3.2", {"model": "mine"}).model == "ollama/llama3.2"
    sleep = models.resolve(None, {"model": "mine", "sleep_model": "4.1"}, sleep=True)
    assert sleep.model == "openai/gpt-4.1"


def test_missing_key_and_keyless_providers(monkeypatch):
    with pytest.raises(ModelError, match="no API key") as err:
        models.check_key(ModelSpec("anthropic/claude-haiku-4-5", None, "--model"))
    assert "ANTHROPIC_API_KEY" in (err.value.hint or "")
    models.check_key(ModelSpec("ollama/llama3.2", None, "--model"))        # local: no key
    models.check_key(ModelSpec("openai/local", "http://localhost:8000/v1", "x"))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    models.check_key(ModelSpec("anthropic/claude-haiku-4-5", None, "--model"))


def test_a_model_wait_lets_another_thread_hold_the_baton(model):
    import threading

    from agentmem import baton

    computing = threading.Lock()
    seen: list[bool] = []

    def respond(_messages):
        seen.append(computing.acquire(timeout=5))   # free while this thread waits
        computing.release()
        return "ok"

    model.responder = respond
    with baton.holding(computing):
        assert llm.complete(ModelSpec("scripted/x", None, "test"),
                            [{"role": "user", "content": "hi"}]).text == "ok"
        assert computing.locked()                   # held again once the reply is in
        with baton.waiting():
            with baton.waiting():                   # nested: released once, taken back once
                assert not computing.locked()
            assert not computing.locked()
        assert computing.locked()
    assert seen == [True] and not computing.locked()
    with baton.waiting():                           # without a baton: nothing to let go
        pass


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("listener", ["callback", "cache", "debug print"])
def test_litellm_logging_runs_only_when_someone_listens(model, monkeypatch, stream, listener):
    """litellm's background success logging is skipped while nothing listens (it only costs CPU
    and a thread), and runs again as soon as something does."""
    import functools
    import threading
    import time

    from litellm.litellm_core_utils.litellm_logging import Logging

    lib = llm.litellm()
    logged = threading.Event()
    original = Logging.success_handler

    @functools.wraps(original)
    def spy(self, *args, **kwargs):
        logged.set()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Logging, "success_handler", spy)
    for name in llm._CALLBACK_LISTS:   # litellm.Cache() adds itself to them: put them back after
        monkeypatch.setattr(lib, name, list(getattr(lib, name)))
    spec = ModelSpec("scripted/x", None, "test")
    on_text = (lambda _text: None) if stream else None
    model.push("unheard", "heard")
    reply = llm.complete(spec, [{"role": "user", "content": "first"}], on_text=on_text)
    assert reply.text == "unheard"
    time.sleep(0.3)                                   # the pool would have run it by now
    assert not logged.is_set()

    if listener == "callback":
        monkeypatch.setattr(lib, "success_callback", [lambda *args, **kwargs: None])
    elif listener == "cache":            # a cache alone, without the callbacks it registers
        monkeypatch.setattr(lib, "cache", lib.Cache(type="local"))
        for name in llm._CALLBACK_LISTS:
            monkeypatch.setattr(lib, name, [])
    else:
        monkeypatch.setenv("LITELLM_PRINT_STANDARD_LOGGING_PAYLOAD", "1")
        monkeypatch.setattr("builtins.print", lambda *args, **kwargs: None)
    reply = llm.complete(spec, [{"role": "user", "content": "second"}], on_text=on_text)
    assert reply.text == "heard"
    assert logged.wait(5), "whoever listens must still get litellm's logging"


def test_a_process_that_loaded_litellm_collects_young_objects_less_often():
    """litellm's objects are frozen out of the collector's sight, and young objects are
    collected every GC_YOUNG allocations (benchmarks/sleep_scale.py says why)."""
    import gc

    from agentmem import llm

    llm.litellm()
    assert gc.get_threshold()[0] >= llm.GC_YOUNG
    assert gc.get_freeze_count() > 100_000
