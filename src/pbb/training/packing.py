"""Packed SFT batches: several rows in one sequence, each attending only to itself.

The padded path of :mod:`pbb.training.sft` runs a batch as rows x width, right-padded; the pad tokens
and the forward passes a batch is cut into cost time, most of all on a GPU. Packing lays the
rows of an optimizer step end to end instead (first-fit decreasing, deterministic), into
sequences whose length suits the attention implementation (:func:`layout`), several sequences
a forward pass up to the memory bound, with

* **position ids restarting at 0 for every row**: a row sees the positions it sees alone;
* **per-row attention isolation from those position ids**, the library's own route: given
  ``position_ids`` and no attention mask (and no cache), transformers' mask construction
  (``masking_utils.find_packed_sequence_indices``) cuts a sequence into documents where the
  positions restart and builds the attention from them: a block-diagonal causal mask for SDPA
  and eager (and pbb's fp32 SDPA on a CPU), a document ``BlockMask`` for FlexAttention. For
  flash-attention the pass is flattened into one row and the row boundaries are passed as
  varlen ``cu_seq_lens`` (its own inference from position ids works at batch size 1 only, and
  reads the device). No row ever attends to another: :func:`isolates` checks it on the model at
  hand, in the layout training uses (a model whose code does not build its attention from the
  position ids fails it, and is then trained padded);
* **targets** (``-100`` off the completion and at every row's last token, so no row predicts
  its neighbour's first token) and the loss computed only at the positions that have one:
  transformers' ``logits_to_keep`` takes them (a 1-D index tensor for one sequence, a boolean
  mask for several), so neither the prompt's nor the padding's logits are ever materialised.

The update is the padded path's up to float rounding (the same rows per step, the same token
mean): ``tests/test_packing.py`` checks loss, gradients and per-row logits against unpacked rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

IGNORE = -100
#: sequence length where attention is a dense block-diagonal mask (SDPA, eager): its cost grows
#: with the sequence, not the rows, so packed sequences stay short there; at this length packing
#: still kept the padded path's speed on a CPU, longer ones fell below it (docs/benchmarks.md)
DENSE_SEQUENCE_TOKENS = 256


@dataclass(frozen=True)
class Layout:
    """How packed rows are laid out for an attention implementation.

    ``sequence``: the longest packed sequence. ``flatten``: all sequences of a forward pass in
    one row (batch size 1), as flash-attention's varlen path and FlexAttention's document mask
    want them. ``varlen``: the row boundaries passed as ``cu_seq_lens_q/k`` and
    ``max_length_q/k`` (computed on the host: no device synchronisation to infer them).
    """

    sequence: int
    flatten: bool = False
    varlen: bool = False


def layout(attn_implementation: str | None, max_tokens: int) -> Layout:
    """The layout for a model's ``config._attn_implementation``: one flattened sequence as long
    as the forward pass where attention costs by the rows (a flash-attention varlen kernel,
    FlexAttention's block mask); sequences of :data:`DENSE_SEQUENCE_TOKENS`, several a pass,
    where it is a dense block-diagonal mask (SDPA, eager, anything else)."""
    impl = attn_implementation or ""
    if "flash" in impl:
        return Layout(max_tokens, flatten=True, varlen=True)
    if impl == "flex_attention":
        return Layout(max_tokens, flatten=True)
    return Layout(min(max_tokens, DENSE_SEQUENCE_TOKENS))


def pack(rows: Sequence[int], lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Rows (indices into ``lengths``) packed into bins of at most ``capacity`` tokens.

    First-fit decreasing: longest rows first (ties in the given order), each into the first bin
    with room, else a new bin. Deterministic. A row longer than ``capacity`` gets a bin of its
    own (the bound is a memory bound, as :func:`pbb.training.sft.split_by_tokens` treats it).
    """
    order = sorted(range(len(rows)), key=lambda k: (-lengths[rows[k]], k))
    bins: list[list[int]] = []
    room: list[int] = []
    for k in order:
        i = rows[k]
        n = lengths[i]
        for b, r in enumerate(room):
            if n <= r:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room.append(capacity - n)
    return bins


def forward_passes(sequences: list[list[int]], lengths: Sequence[int], max_tokens: int,
                   multiple: int = 1) -> list[list[list[int]]]:
    """Packed sequences (lists of row indices) grouped into forward passes of at most
    ``max_tokens`` padded tokens (longest sequences first; every sequence of a pass is padded
    to its longest, rounded up to ``multiple``). A sequence over the bound runs alone."""
    def size(seq):
        return -(-sum(lengths[i] for i in seq) // multiple) * multiple

    passes: list[list[list[int]]] = []
    for seq in sorted(sequences, key=size, reverse=True):
        if passes and (len(passes[-1]) + 1) * size(passes[-1][0]) <= max_tokens:
            passes[-1].append(seq)
        else:
            passes.append([seq])
    return passes


@dataclass
class Packed:
    """One forward pass of packed rows (tensors on the CPU until :meth:`to`)."""

    input_ids: object  # (B, S) long
    position_ids: object  # (B, S) long: 0, 1, ... within each row (and the padding tail)
    targets: object  # (B, S) long: the next token where it is a completion token, else -100
    keep: object  # positions with a target: (S,) long indices if B == 1, else (B, S) bool
    n: int  # number of targets (completion tokens)
    rows: list[list[int]]  # row lengths per sequence, for tests and reports
    kwargs: dict  # extra model inputs (flash-attention's varlen boundaries), else empty

    def to(self, device) -> Packed:
        move = {k: getattr(self, k).to(device, non_blocking=True)
                for k in ("input_ids", "position_ids", "targets", "keep")}
        kwargs = {k: v.to(device, non_blocking=True) if hasattr(v, "to") else v
                  for k, v in self.kwargs.items()}
        return Packed(**move, n=self.n, rows=self.rows, kwargs=kwargs)


def collate_packed(sequences: list[list[tuple[list[int], int]]], pad_id: int,
                   multiple: int = 1, how: Layout | None = None) -> Packed:
    """Sequences of encoded rows ``(ids, n_prompt)`` as one packed forward pass.

    Every sequence is right-padded to the longest, rounded up to ``multiple`` (fewer distinct
    shapes for compiled kernels); the padding tail takes positions 0, 1, ... of its own, so it
    is a document of its own, never attended to by a row, and has no target. ``how``: a
    :class:`Layout` that flattens the sequences into one and/or adds varlen boundaries.
    """
    import torch

    if how is not None and how.flatten:
        sequences = [[row for seq in sequences for row in seq]]
    lens = [sum(len(ids) for ids, _ in seq) for seq in sequences]
    width = -(-max(lens) // multiple) * multiple
    x = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    pos = torch.empty((len(sequences), width), dtype=torch.long)
    y = torch.full((len(sequences), width), IGNORE, dtype=torch.long)
    n = 0
    for b, seq in enumerate(sequences):
        at = 0
        for ids, n_prompt in seq:
            m = len(ids)
            x[b, at:at + m] = torch.tensor(ids)
            pos[b, at:at + m] = torch.arange(m)
            # position t predicts token t + 1: the completion tokens n_prompt..m-1 are the
            # targets of positions n_prompt - 1 .. m - 2; the row's last position predicts
            # nothing (the next token is another row's)
            y[b, at + n_prompt - 1:at + m - 1] = torch.tensor(ids[n_prompt:])
            n += m - n_prompt
            at += m
        pos[b, at:] = torch.arange(width - at)
    mask = y != IGNORE
    keep = mask[0].nonzero().squeeze(1) if len(sequences) == 1 else mask
    rows = [[len(ids) for ids, _ in seq] for seq in sequences]
    kwargs = {}
    if how is not None and how.varlen:  # one sequence: its rows, then the padding tail
        docs = rows[0] + ([width - lens[0]] if width > lens[0] else [])
        cu = torch.tensor([0] + docs, dtype=torch.int32).cumsum(0, dtype=torch.int32)
        kwargs = {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": max(docs),
                  "max_length_k": max(docs)}
    return Packed(x, pos, y, keep, n, rows, kwargs)


def _logits(model, batch: Packed, position_ids: bool = True):
    """The logits of a packed batch's target positions, (n, V) in order (row by row)."""
    out = model(input_ids=batch.input_ids,
                position_ids=batch.position_ids if position_ids else None,
                logits_to_keep=batch.keep, use_cache=False, **(batch.kwargs if position_ids else {}))
    logits = out.logits
    if batch.keep.dim() == 1:  # one sequence: (1, n, V) at the kept positions
        if logits.shape[1] != batch.keep.shape[0]:  # a model that ignores an index tensor
            logits = logits[:, batch.keep]
    elif logits.dim() == 3:  # several: (n, V), unless the model ignored the mask
        logits = logits[batch.keep]
    return logits.reshape(-1, logits.shape[-1])


def packed_loss(model, batch: Packed):
    """Mean cross-entropy over the completion tokens of a packed batch (and their count).

    The model is given the position ids and no attention mask (see the module's docstring) and
    asked for the logits of the target positions only.
    """
    import torch.nn.functional as F

    targets = batch.targets[0, batch.keep] if batch.keep.dim() == 1 else batch.targets[batch.keep]
    loss = F.cross_entropy(_logits(model, batch).float(), targets, reduction="sum")
    return loss / max(1, batch.n), batch.n


def isolates(model, config=None, pad_id: int = 0, how: Layout | None = None) -> bool:
    """Whether this model, with its attention implementation, keeps packed rows apart.

    One forward pass as training runs them (:func:`packed_loss`'s call): two sequences, a row
    (arbitrary tokens) packed after another in the first, alone in the second. Its logits must
    be the same in both up to float rounding: closer than a hundredth of their difference
    without the position ids (the plain causal attention of one long sequence: what no
    isolation looks like; a scale-free test, so bf16 rounding of a wrapped model does not fail
    it). ``model`` is what trains (a DDP wrapper too; every process must call this, as with any
    forward); ``config`` the model's config where ``model`` has none; ``how`` the layout
    training uses (by default, the one for the model's attention implementation).
    """
    import torch

    config = config if config is not None else model.config
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    g = torch.Generator().manual_seed(0)
    a = torch.randint(3, config.vocab_size, (11,), generator=g).tolist()
    b = torch.randint(3, config.vocab_size, (7,), generator=g).tolist()
    device = next(model.parameters()).device
    if how is None:
        how = layout(getattr(config, "_attn_implementation", None), 64)
    # every position but a row's last has a target (prompts of one token); flattened, the
    # second sequence's row follows the first's rows (its positions restart: still alone)
    batch = collate_packed([[(a, 1), (b, 1)], [(b, 1)]], pad_id, how=how).to(device)
    after_a = slice(len(a) - 1, len(a) + len(b) - 2)  # b's positions in the first sequence
    alone = slice(len(a) + len(b) - 2, None)  # ... and in the second
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
            packed = _logits(model, batch).float()
            mixed = _logits(model, batch, position_ids=False).float()
    finally:
        model.train(was_training)
    apart = (packed[after_a] - packed[alone]).abs().max()
    together = (mixed[after_a] - mixed[alone]).abs().max()
    return bool(apart <= 0.01 * together)
