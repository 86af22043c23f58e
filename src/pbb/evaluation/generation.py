"""Generation engines behind :class:`pbb.evaluation.generators.HFGenerator` (``eval.generator``).

``hf``: batches of ``eval.batch_size`` length-sorted, left-padded prompts, each through
transformers' ``model.generate`` (dynamic KV cache). A batch runs until its longest completion
ends: a sequence that stopped early keeps being decoded (as padding) until then.

``static``: a *slot* engine (:func:`generate_static`). The KV cache is one preallocated tensor per
layer of ``slots x kv_heads x (longest prompt + max_new_tokens) x head_dim``; every slot holds one
sequence, its tokens at columns ``0..len-1`` and its own write position. A decode step runs every
slot at once (one token each, a 4D mask hiding each slot's unused columns); a sequence that ends
frees its slot, and the next prompts (longest first, as in ``hf``) are prefilled into free slots
while the others keep decoding. Nothing is decoded after its end of turn, and shapes never change
between steps, so on CUDA each decode step is one replayed CUDA graph (kernel launches were what
bounded ``hf``'s speed for small models). Slots: sized by free GPU memory and the KV bytes per
token on CUDA, ``eval.batch_size`` on a CPU.

``auto``: ``static`` on CUDA (greedy, a model it supports), ``hf`` elsewhere. On a CPU ``hf``
stays the default: see benchmarks/bench_model_generate.py for the measured comparison.

Both are greedy-exact with each other in fp32 on a CPU (tests/test_generation.py); in bf16 a
different batch layout can flip a near-tie between two tokens (the count is in the benchmark).
"""

from __future__ import annotations

import inspect
import math
from collections import deque
from collections.abc import Callable

from pbb.errors import PbbError

GENERATORS = ("auto", "hf", "static")
#: at most this many slots, whatever the memory (a decode step's cost grows with them)
MAX_SLOTS = 1024
#: share of the free GPU memory the slot engine's KV cache may take
MEMORY_SHARE = 0.5
#: at most this many prompt tokens per prefill forward (bounds its activations)
PREFILL_TOKENS = 16384


def _base(model):
    """The transformers model under a PEFT wrapper (or the model itself)."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def _forward_params(model) -> set[str]:
    return set(inspect.signature(_base(model).forward).parameters)


def _mask_kind(impl: str | None) -> str | None:
    """How attention implementation ``impl`` takes its mask: "bool" (as sdpa: True attends),
    "float" (as eager: added to the scores), or None (another kind: flash, flex). Implementations
    registered by name (pbb's fp32 SDPA for CPU training, :func:`pbb.training.precision.fp32_attention_on_cpu`)
    are known by the mask function they registered."""
    if impl in ("sdpa", "eager"):
        return {"sdpa": "bool", "eager": "float"}[impl]
    try:
        from transformers.masking_utils import (
            AttentionMaskInterface,
            eager_mask,
            sdpa_mask,
        )

        fn = AttentionMaskInterface()[impl]
    except Exception:  # noqa: BLE001 - unknown name, or another transformers layout
        return None
    return "bool" if fn is sdpa_mask else "float" if fn is eager_mask else None


def why_not_static(model) -> str | None:
    """Why the slot engine cannot run ``model`` (None when it can)."""
    base = _base(model)
    cfg = getattr(base, "config", None)
    if cfg is None or getattr(cfg, "is_encoder_decoder", False):
        return "not a decoder-only transformers model"
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    types = set(getattr(text, "layer_types", None) or ["full_attention"])
    if types != {"full_attention"}:
        return f"layer types {sorted(types)} (only full attention is supported)"
    if getattr(text, "sliding_window", None) and getattr(text, "use_sliding_window", True):
        return "sliding-window attention"
    impl = getattr(cfg, "_attn_implementation", None)
    if _mask_kind(impl) is None:
        return f"attention implementation {impl!r} (one masked as sdpa or eager is)"
    params = _forward_params(model)
    if not ({"cache", "past_key_values"} & params and "position_ids" in params):
        return "its forward takes no cache or position_ids"
    gc = getattr(model, "generation_config", None)
    processors = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_repetition_penalty": 1.0,
                  "min_length": 0, "min_new_tokens": None, "bad_words_ids": None,
                  "suppress_tokens": None, "begin_suppress_tokens": None,
                  "forced_bos_token_id": None, "forced_eos_token_id": None, "sequence_bias": None}
    for name, neutral in processors.items():
        value = getattr(gc, name, neutral)
        if value not in (neutral, None, 0, 1.0, [], {}):
            return f"generation_config.{name} = {value!r} (a logits processor)"
    return None


def choose(name: str, model, temperature: float = 0.0) -> str:
    """The engine ``name`` means for this model: ``auto`` resolved; ``static`` checked."""
    if name not in GENERATORS:
        raise PbbError(f"eval.generator: unknown generator {name!r} ({', '.join(GENERATORS)})")
    if name == "auto":
        device = next(model.parameters()).device
        return "static" if device.type == "cuda" and temperature == 0 \
            and why_not_static(model) is None else "hf"
    if name == "static":
        reason = why_not_static(model)
        if reason:
            raise PbbError(f"eval.generator: static cannot run this model: {reason}; use hf (or auto)")
    return name


def kv_bytes_per_token(model, dtype) -> int:
    """Bytes of K and V, all layers, for one token."""
    import torch

    cfg = _base(model).config
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return 2 * cfg.num_hidden_layers * kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()


def cuda_slots(model, dtype, seq_len: int, wanted: int) -> int:
    """Slots that fit in ``MEMORY_SHARE`` of the GPU's free memory: each holds ``seq_len`` tokens of
    KV cache, plus its logits (fp32 and the model's)."""
    import torch

    device = next(model.parameters()).device
    free, _ = torch.cuda.mem_get_info(device)
    vocab = _base(model).config.get_text_config().vocab_size
    per_slot = kv_bytes_per_token(model, dtype) * seq_len + 8 * vocab + 64 * seq_len
    return max(1, min(wanted, MAX_SLOTS, int(free * MEMORY_SHARE // per_slot)))


def compute_dtype(model):
    """The dtype K and V come out in: autocast's when it is on, else the weights'."""
    import torch

    p = next(model.parameters())
    if p.dtype.is_floating_point and torch.is_autocast_enabled(p.device.type):
        return torch.get_autocast_dtype(p.device.type)
    return p.dtype


def _make_cache_class():
    from transformers.cache_utils import Cache

    class SlotCache(Cache):
        """K/V of every slot, preallocated; ``update`` writes each slot's new token at its own
        position (decode) or a whole left-padded prompt batch into chosen slots (prefill)."""

        is_compileable = True

        def __init__(self, keys: list, values: list):
            try:
                super().__init__(layers=[])
            except Exception:  # noqa: BLE001 - another transformers release: only update is used
                self.layers = []
            self.k, self.v = keys, values
            self.mode = "decode"
            self.pos = None       # decode: (S,) write column per slot
            self.rows = None      # decode: arange(S)
            self.window = None    # decode: columns returned (None: all)
            self.slots = None     # prefill: (k,) slot per row
            self.prompt_rows = None  # prefill: arange(k)
            self.shift = None     # prefill: (k, P) source column of each column (padding cut)
            self.shift_cols = None   # prefill: arange(>= P)

        def update(self, key_states, value_states, layer_idx, *args, **kwargs):
            k, v = self.k[layer_idx], self.v[layer_idx]
            key_states, value_states = key_states.to(k.dtype), value_states.to(v.dtype)
            if self.mode == "prefill":
                # the prompt attends to itself only; its real tokens go to columns 0..len-1
                p = key_states.shape[2]
                src = (self.prompt_rows[:, None], slice(None), self.shift)
                dst = (self.slots[:, None], slice(None), self.shift_cols[None, :p])
                k[dst] = key_states[src]
                v[dst] = value_states[src]
                return key_states, value_states
            # advanced-index writes: scatter_ is far slower in bf16 on a CPU (docs/benchmarks.md)
            k[self.rows, :, self.pos] = key_states[:, :, 0]
            v[self.rows, :, self.pos] = value_states[:, :, 0]
            if self.window is None:
                return k, v
            return k[:, :, :self.window], v[:, :, :self.window]

        def get_seq_length(self, layer_idx: int = 0) -> int:
            return 0

        def __len__(self) -> int:
            return len(self.k)

    return SlotCache


class _Slots:
    """The slot engine's state for one call of :func:`generate_static`."""

    def __init__(self, model, ids, *, slots, max_new_tokens, stop_ids, temperature, graphs):
        import torch

        self.torch = torch
        self.model, self.ids, self.m = model, ids, max_new_tokens
        self.temperature = temperature
        self.device = next(model.parameters()).device
        self.dtype = compute_dtype(model)
        params = _forward_params(model)
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        self.keep_kw = "logits_to_keep" in params
        base = _base(model)
        self.eager_mask = _mask_kind(base.config._attn_implementation) == "float"
        cfg = base.config.get_text_config()
        heads = cfg.num_attention_heads
        kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        self.T = max(len(x) for x in ids) + max_new_tokens
        self.S = slots
        shape = (slots, kv_heads, self.T, head_dim)
        dev = self.device
        self.K = [torch.zeros(shape, dtype=self.dtype, device=dev) for _ in range(cfg.num_hidden_layers)]
        self.V = [torch.zeros(shape, dtype=self.dtype, device=dev) for _ in range(cfg.num_hidden_layers)]
        self.cache = _make_cache_class()(self.K, self.V)
        self.stop = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=dev)
        self.lens = torch.zeros(slots, dtype=torch.long, device=dev)    # tokens cached per slot
        self.cur = torch.zeros(slots, dtype=torch.long, device=dev)     # next input per slot
        self.n_gen = torch.zeros(slots, dtype=torch.long, device=dev)   # tokens generated
        self.alive = torch.zeros(slots, dtype=torch.bool, device=dev)
        self.gen = torch.zeros(slots, max_new_tokens, dtype=torch.long, device=dev)
        self.cols = torch.arange(self.T, device=dev)
        self.rows = torch.arange(slots, device=dev)
        self.owner: list[int | None] = [None] * slots   # prompt index per slot (host)
        self.host_len = [0] * slots                     # upper bound of lens per slot (host)
        self.graph = None
        self.prefills = 0  # prefill forwards run
        self.graphs = graphs and temperature == 0 and dev.type == "cuda"
        top_k = getattr(getattr(model, "generation_config", None), "top_k", None)
        self.top_k = top_k if temperature > 0 and top_k else None

    # ---- one decode step, the same tensors every time (CUDA-graph capturable) ----
    def _pick(self, logits):
        torch = self.torch
        if self.temperature == 0:
            return logits.argmax(-1)
        scores = logits / self.temperature
        if self.top_k and self.top_k < scores.shape[-1]:  # as model.generate: top-k 50 by default
            kth = scores.topk(self.top_k, dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        return torch.multinomial(scores.softmax(-1), 1).squeeze(-1)

    def _step(self, window: int | None) -> None:
        torch = self.torch
        cols = self.cols if window is None else self.cols[:window]
        mask = (cols[None, :] <= self.lens[:, None])[:, None, None, :]
        if self.eager_mask:
            mask = torch.zeros(mask.shape, dtype=self.dtype, device=self.device).masked_fill(
                ~mask, torch.finfo(self.dtype).min)
        self.cache.mode, self.cache.pos, self.cache.window = "decode", self.lens, window
        self.cache.rows = self.rows
        kw = {self.cache_kw: self.cache, "use_cache": True}
        if self.keep_kw:
            kw["logits_to_keep"] = 1
        out = self.model(input_ids=self.cur[:, None], attention_mask=mask,
                         position_ids=self.lens[:, None], **kw)
        nxt = self._pick(out.logits[:, -1, :].float())
        live = self.alive.clone()
        at = self.n_gen.clamp(max=self.m - 1)
        self.gen[self.rows, at] = torch.where(live, nxt, self.gen[self.rows, at])
        self.n_gen.add_(live.long())
        self.lens.add_(live.long())
        ended = (nxt[:, None] == self.stop[None, :]).any(-1) | (self.n_gen >= self.m)
        self.alive.copy_(live & ~ended)
        self.cur.copy_(torch.where(live, nxt, self.cur))

    def step(self, window: int | None) -> None:
        if not self.graphs:
            self._step(window)
            return
        if self.graph is None:
            try:
                self.graph = self._capture()
            except Exception as e:  # noqa: BLE001 - a model step that cannot be captured: eager
                from rich.console import Console

                Console(stderr=True).print(
                    f"eval.generator static: decode steps could not be captured as a CUDA graph "
                    f"({type(e).__name__}: {str(e)[:200]}); continuing without graphs",
                    markup=False, highlight=False, soft_wrap=True)
                self.graphs = False
                self._step(None)
                return
        self.graph.replay()

    def _capture(self):
        """One decode step as a CUDA graph (window: every column). Warm-up runs change nothing
        that matters: every slot is dead or its state is restored after."""
        torch = self.torch
        state = (self.lens, self.cur, self.n_gen, self.alive, self.gen)
        saved = [t.clone() for t in state]
        # autocast's weight cache must be off while capturing (torch.cuda.graphs' rule)
        ctx = torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"), cache_enabled=False) \
            if torch.is_autocast_enabled("cuda") else torch.autocast("cuda", enabled=False)
        try:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream), ctx:
                for _ in range(2):
                    self._step(None)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), ctx:
                self._step(None)
        finally:
            # the warm-up steps wrote K/V only at columns the next real steps overwrite first
            for t, s in zip(state, saved):
                t.copy_(s)
        return graph

    # ---- admitting prompts into free slots ----
    def admit(self, queue: deque) -> None:
        free = [s for s in range(self.S) if self.owner[s] is None]
        take = []
        while queue and len(take) < len(free):
            take.append(queue.popleft())
        start = 0
        while start < len(take):
            # prompts arrive longest first: the first of a group bounds its padded width
            width = len(self.ids[take[start]])
            n = max(1, min(len(take) - start, PREFILL_TOKENS // max(1, width)))
            self._prefill(free[start:start + n], take[start:start + n])
            start += n

    def _prefill(self, slots: list[int], prompts: list[int]) -> None:
        torch = self.torch
        dev = self.device
        seqs = [self.ids[i] for i in prompts]
        p = max(len(s) for s in seqs)
        pad = [p - len(s) for s in seqs]
        input_ids = torch.tensor([[0] * d + s for d, s in zip(pad, seqs)], device=dev)
        real = torch.tensor([[0] * d + [1] * len(s) for d, s in zip(pad, seqs)], device=dev)
        position_ids = (real.cumsum(-1) - 1).clamp(min=0)
        cols = torch.arange(p, device=dev)
        causal = cols[None, :] <= cols[:, None]
        allowed = causal[None] & real.bool()[:, None, :]
        allowed |= torch.eye(p, dtype=torch.bool, device=dev)[None]  # a pad row attends to itself
        mask = allowed[:, None]
        if self.eager_mask:
            mask = torch.zeros(mask.shape, dtype=self.dtype, device=dev).masked_fill(
                ~mask, torch.finfo(self.dtype).min)
        shift = (cols[None, :] + torch.tensor(pad, device=dev)[:, None]).clamp(max=p - 1)
        self.cache.mode = "prefill"
        self.cache.slots = torch.tensor(slots, device=dev)
        self.cache.prompt_rows = torch.arange(len(slots), device=dev)
        self.cache.shift, self.cache.shift_cols = shift, cols
        kw = {self.cache_kw: self.cache, "use_cache": True}
        if self.keep_kw:
            kw["logits_to_keep"] = 1
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, **kw)
        self.prefills += 1
        first = self._pick(out.logits[:, -1, :].float())
        self.cache.mode = "decode"
        st = self.cache.slots
        lens = torch.tensor([len(s) for s in seqs], device=dev)
        self.lens[st] = lens
        self.cur[st] = first
        self.gen[st] = 0
        self.gen[st, 0] = first
        self.n_gen[st] = 1
        stopped = (first[:, None] == self.stop[None, :]).any(-1) | (self.m <= 1)
        self.alive[st] = ~stopped
        for s, i, n in zip(slots, prompts, lens.tolist()):
            self.owner[s], self.host_len[s] = i, n

    # ---- collecting what ended ----
    def harvest(self) -> list[tuple[int, list[int]]]:
        torch = self.torch
        alive = self.alive.tolist()
        ended = [s for s in range(self.S) if self.owner[s] is not None and not alive[s]]
        if not ended:
            return []
        idx = torch.tensor(ended, device=self.device)
        gen, n = self.gen[idx].tolist(), self.n_gen[idx].tolist()
        self.lens[idx] = 0  # a free slot attends to column 0 only: its rows stay finite
        done = []
        for s, g, k in zip(ended, gen, n):
            done.append((self.owner[s], g[:k]))
            self.owner[s], self.host_len[s] = None, 0
        return done

    def compact(self) -> None:
        """Keep only the occupied slots once no prompt is left to admit: fewer rows per step.
        With CUDA graphs, in the next power of two of them (a graph is captured per size);
        eager, exactly them, once at most 3/4 of the slots are (each time a copy of the cache)."""
        torch = self.torch
        used = [s for s in range(self.S) if self.owner[s] is not None]
        if self.graphs:
            size = max(1, 2 ** math.ceil(math.log2(max(1, len(used)))))
        else:
            size = max(1, len(used)) if 4 * len(used) <= 3 * self.S else self.S
        if size >= self.S:
            return
        keep = used + [s for s in range(self.S) if self.owner[s] is None][:size - len(used)]
        idx = torch.tensor(keep, device=self.device)
        for lst in (self.K, self.V):
            for j, t in enumerate(lst):
                lst[j] = t.index_select(0, idx)
        for name in ("lens", "cur", "n_gen", "alive", "gen"):
            setattr(self, name, getattr(self, name).index_select(0, idx))
        self.owner = [self.owner[s] for s in keep]
        self.host_len = [self.host_len[s] for s in keep]
        self.S = size
        self.rows = torch.arange(size, device=self.device)
        self.cache.k, self.cache.v = self.K, self.V
        self.graph = None


def generate_static(model, ids: list[list[int]], *, slots: int, max_new_tokens: int,
                    stop_ids: list[int], temperature: float = 0.0,
                    on_done: Callable[[list[tuple[int, list[int]]]], None] | None = None,
                    graphs: bool = True, sync_every: int | None = None,
                    stats: dict | None = None) -> list[list[int]]:
    """Token ids generated for each prompt (``ids``: prompt token ids), in the order given, each
    cut after its first stop id. Prompts are admitted longest first. ``on_done`` gets
    ``(index, tokens)`` pairs as sequences end. ``graphs``: decode steps as CUDA graphs (CUDA,
    greedy only). ``sync_every``: decode steps between looks at which slots ended (1 on a CPU, 4
    on CUDA: a finished slot idles at most that many steps, its tokens ignored). ``stats``, if
    given, is filled with ``decode_steps``, ``slot_steps`` (slots run by those steps: the decode
    work), ``prefills`` and ``slots``."""
    import torch

    if not ids:
        return []
    if any(not x for x in ids):
        raise PbbError("generate: an empty prompt")
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    queue = deque(order)
    out: list[list[int] | None] = [None] * len(ids)
    eng = _Slots(model, ids, slots=max(1, min(slots, len(ids))), max_new_tokens=max_new_tokens,
                 stop_ids=stop_ids, temperature=temperature, graphs=graphs)
    cuda = eng.device.type == "cuda"
    counts = {"decode_steps": 0, "slot_steps": 0, "prefills": 0, "slots": eng.S}
    every = sync_every or (4 if cuda else 1)
    refill = max(1, eng.S // 8) if cuda else 1

    def collect() -> None:
        done = eng.harvest()
        for i, toks in done:
            out[i] = toks
        if done and on_done:
            on_done(done)

    with torch.inference_mode():
        eng.admit(queue)
        collect()
        while any(o is not None for o in eng.owner) or queue:
            if queue and sum(o is None for o in eng.owner) >= refill:
                eng.admit(queue)
                collect()
                continue
            if not queue:
                eng.compact()
            for _ in range(every):
                window = None
                if not eng.graphs:  # eager: attend over the columns in use only
                    window = min(eng.T, max(eng.host_len) + 1)
                eng.step(window)
                counts["decode_steps"] += 1
                counts["slot_steps"] += eng.S
                eng.host_len = [n + 1 if o is not None else n
                                for n, o in zip(eng.host_len, eng.owner)]
            collect()
    counts["prefills"] = eng.prefills
    if stats is not None:
        stats.update(counts)
    return out  # type: ignore[return-value]
