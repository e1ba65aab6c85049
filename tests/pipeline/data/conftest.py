"""Data tests run single-threaded: the machine is shared."""

from __future__ import annotations

import torch

# One torch thread for the whole session (set at import, before any fixture runs): the machine is
# shared, and bit-exact comparisons between runs need the same thread count.
torch.set_num_threads(1)
