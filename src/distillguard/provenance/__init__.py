"""Proof of distillation: marks that survive training, and tests that find them (docs/provenance.md).

Modules (the first three are standard-library only, so the LiteLLM plugin can import them inside
the proxy process):

- :mod:`.keys`       the provider's private mark key (a :class:`~distillguard.share.keys.KeyRing`)
- :mod:`.canary`     keyed per-account trigger -> response canaries, woven into responses
- :mod:`.evidence`   the append-only, hash-chained log of every mark served
- :mod:`.watermark`  keyed green-list watermark: logits processor and the radioactivity test
- :mod:`.ngram`      a small word-level language model built from a config (experiment, probe tests)
- :mod:`.lmserver`   an OpenAI-compatible HTTP server for such a model
- :mod:`.probe`      query a suspect's OpenAI-compatible API for canaries and the watermark
- :mod:`.experiment` teacher -> harvest -> students -> test, on a CPU, no download
- :mod:`.cli`        ``distillguard provenance``
"""
