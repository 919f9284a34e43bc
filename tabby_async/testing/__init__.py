"""``tabby_async.testing``: an in-process TabbyAPI emulator for tests and benchmarks.

It speaks the real TabbyAPI server's admin wire protocol (models, embeddings,
downloads, LoRA, prompt templates, sampler overrides, tokens, health, keys, service
info) and its OpenAI inference routes (completions, chat, embeddings), byte for
byte, over real HTTP on a local port, records what it receives and can inject
faults::

    from tabby_async.testing import EmulatedModel, TabbyEmulator

    async with TabbyEmulator(models=["a", EmulatedModel("b", modules=8, delay=0.01)]) as server:
        ...  # talk to server.url with server.api_key / server.admin_key
        server.faults.fail_next(2, status=429, headers={"Retry-After": "1"})
        assert server.count("GET", "/v1/model/list") == 1

The pytest plugin (``tabby_async.testing.pytest_plugin``, a ``pytest11`` entry
point) provides the ``tabby_emulator`` and ``tabby_emulator_factory`` fixtures, and
for synchronous tests ``tabby_emulator_thread``: a :class:`ThreadedEmulator`, the
emulator served from a background thread, which blocking clients such as FastAPI's
``TestClient`` can reach.

Behaviour that was not seen on a live server but follows the public TabbyAPI
source, or is the emulator's own choice:

- Listings follow TabbyAPI's ``get_key_permission``: a request whose key has admin
  permission (``x-admin-key`` or ``x-api-key``/``Bearer`` holding the admin key, or
  auth disabled) sees every folder; an api key sees only what is loaded (the
  loaded model / its draft / the loaded embedding model). A permission lookup that
  raises in the real server (e.g. a wrong ``x-admin-key`` beside a valid
  ``x-api-key`` on a listing) gives its plain-text ``500 Internal Server Error``.
- ``/v1/auth/permission`` errors: 400 ``The provided authentication key is
  invalid.`` / ``... is missing.``
- Bodies are validated after auth, like FastAPI; only malformed JSON is a 422
  before auth. Unknown keys are ignored; lax pydantic coercions apply.
- A ``draft_model`` block needs a ``draft_model_name`` (a 422 without one). An unknown
  draft name fails the load in-stream with ``MSG_MISSING_DRAFT``; an unknown
  ``backend`` (not exllamav2/exllamav3) with TabbyAPI's "Invalid backend" text. The
  previous model is unloaded before either check, so nothing is loaded afterwards.
- The card (from the source): ``rope_alpha: "auto"`` is reported as ``1.0``;
  ``max_seq_len`` absent or 0 is the model's own (``EmulatedModel.max_seq_len``,
  8192 if it has none), ``-1`` the model's own (4096 if none); ``cache_size``
  absent or 0 is that ``max_seq_len``, and a ``max_seq_len`` above
  ``cache_size`` is cut to it; ``cache_mode`` is echoed as sent (``"FP16"`` when
  absent); ``chunk_size`` (2048 when absent) is raised to at least 256 and
  rounded up to a multiple of 256; ``max_batch_size`` (and ``/props``
  ``total_slots``) is ``EmulatedModel.max_batch_size``: the load request has no
  such field. ``vision: true`` on a model without a vision component is off.
  A model folder's ``tabby_config.yml`` (``EmulatedModel.folder_config``) wins
  over the request on every real load.
- A load request is queued as soon as its head is sent; it runs even if its client
  disconnects while waiting for the lock.
- Loading the embedding model that is already loaded: 400 ``Embeddings model "X" is
  already loaded! Aborting.`` (from the source). Embedding loads are not behind the
  model load lock; a client disconnect cancels one (nothing loaded afterwards).
- Downloads: the repo must be in ``downloadable``; otherwise 400 with the offline
  reason. The target folder is ``folder_name`` or the part after ``/`` in
  ``repo_id``; an existing model folder gives 400 ``[Errno 17] File exists:
  'models/<folder>'`` (checked after the repo lookup, before the wait).
  ``repo_type: "lora"`` downloads to ``loras/``: a LoRA folder, not a model.
- LoRA: the backend applies none (the server's only backend stubs them out), so
  every load lists every adapter under ``failure`` and none is ever active.
- Templates, sampler presets and LoRA folders are constructor fixtures
  (:class:`TabbyEmulator`); a missing folder is an empty fixture (``None`` for
  LoRA). A template switch to an unknown name is the server's plain-text 500.
- Tokens come from a toy tokenizer (UTF-8 bytes, BOS id 1) and chat messages
  from a toy renderer (``<role>: <content>`` lines): the shapes, statuses and
  checks are the server's, the token values are not any model's.
- Inference (``/v1/completions``, ``/v1/chat/completions``, ``/v1/embeddings``):
  deterministic text (token ``k`` is ``"<card id>:<k> "``, ``reply_tokens`` of
  them and then EOS unless ``max_tokens`` stops it first), optional per-token
  delay, no sampling, no logprobs (always ``null``), no tool calls, no stop
  strings; prompt token counts come from the toy tokenizer, prefill takes no
  time. Embeddings are 8 float32 values from a hash of the model and the text.
  Generations are booked in :attr:`TabbyEmulator.generations`; an explicit
  unload cancels them (a stream then stays open with pings only, as on the
  server), a swap through a load waits for them, a client that goes away
  cancels its own. Only the first of the server's context checks (the prompt
  longer than the context) is made. The KoboldAI API is 404 here.
"""

from ._emulator import TabbyEmulator
from ._faults import Fault, FaultInjector
from ._generation import Generation, Generations, GenerationStats
from ._load import BACKENDS
from ._models import EmulatedModel, RecordedRequest
from ._serve import run_emulator, serve_forever
from ._thread import ThreadedEmulator

__all__ = [
    "BACKENDS",
    "EmulatedModel",
    "Fault",
    "FaultInjector",
    "Generation",
    "GenerationStats",
    "Generations",
    "RecordedRequest",
    "TabbyEmulator",
    "ThreadedEmulator",
    "run_emulator",
    "serve_forever",
]
