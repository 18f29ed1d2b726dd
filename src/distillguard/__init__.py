"""distillguard: detect distillation at scale (model-output harvesting) in LLM API logs."""

import os as _os
import sys as _sys

__version__ = "0.2.0"

# Polars' allocator (jemalloc) hands freed pages back to the kernel after 0.5 s by default, and a
# scan allocates and frees batch-sized buffers all the time: the same memory is faulted in and
# zeroed again and again (~15 % of a scan's CPU was kernel time). Keeping freed pages for 5 s cuts
# that kernel time by a third (1M-exchange scan: 1.3–1.9 s of CPU; wall time −4 % median) for a little
# more resident memory. jemalloc reads this once, when Polars loads; Polars appends it to its own
# defaults, so a value the user set is kept (and read after ours, so it wins).
if "polars" not in _sys.modules:
    _user = _os.environ.get("_RJEM_MALLOC_CONF")
    _os.environ["_RJEM_MALLOC_CONF"] = "dirty_decay_ms:5000,muzzy_decay_ms:5000" + ("," + _user if _user else "")
