"""A small character-level language model of recurgen layers: train briefly on a toy corpus, then generate with
prefill + token-by-token decoding (each layer's `LayerCache`: the recurrence's states and its short-conv window).

    python examples/generate.py                          # gated_delta_rule, about a minute of CPU on one thread
    python examples/generate.py gla --steps 300          # any bundled spec or .rec file
    python examples/generate.py mamba2 --check           # also: decode logits == full-forward logits, every position

The corpus is generated here (no download): sentences from a tiny grammar ("the red fox sees a small dog."),
so a model that learnt it continues a prompt with well-formed words. Decoding runs `layer.step` per token after
one prefill of the prompt (`layer(x, return_cache=True)`); `--check` compares the logits of that decode with the
logits of one forward pass over the whole generated text, position by position.

On CPU, torch's threads on a busy 2-core machine can make training many times slower than one thread (see
docs/cpu.md): `--threads` picks them (default 1).
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from recurgen.layers import LayerCache, RecurrentLayer

ARTICLES = ("the", "a")
ADJECTIVES = ("red", "small", "quick", "old", "happy", "green")
NOUNS = ("fox", "dog", "cat", "bird", "child", "robot")
VERBS = ("sees", "likes", "follows", "finds", "helps")


def corpus(sentences: int, seed: int = 0) -> str:
    """Sentences `article [adjective] noun verb article [adjective] noun.` from a seeded generator."""
    rng = random.Random(seed)

    def phrase() -> str:
        words = [rng.choice(ARTICLES)] + ([rng.choice(ADJECTIVES)] if rng.random() < 0.6 else []) + \
            [rng.choice(NOUNS)]
        return " ".join(words)

    return " ".join(f"{phrase()} {rng.choice(VERBS)} {phrase()}." for _ in range(sentences))


class Vocab:
    def __init__(self, text: str) -> None:
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor([self.index[c] for c in text], dtype=torch.long)

    def decode(self, ids: torch.Tensor) -> str:
        return "".join(self.chars[int(i)] for i in ids)


class Block(nn.Module):
    """Pre-norm residual block: RMSNorm → RecurrentLayer, RMSNorm → MLP."""

    def __init__(self, spec: str, d_model: int, heads: int, backend: str | None) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.RMSNorm(d_model), nn.RMSNorm(d_model)
        self.mix = RecurrentLayer(spec, d_model, heads, backend=backend)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor, return_cache: bool = False) -> tuple[torch.Tensor, LayerCache | None]:
        if return_cache:
            h, cache = self.mix(self.norm1(x), return_cache=True)
        else:
            h, cache = self.mix(self.norm1(x)), None
        x = x + h
        return x + self.mlp(self.norm2(x)), cache

    def step(self, x: torch.Tensor, cache: LayerCache) -> tuple[torch.Tensor, LayerCache]:
        h, cache = self.mix.step(self.norm1(x), cache)
        x = x + h
        return x + self.mlp(self.norm2(x)), cache


class LanguageModel(nn.Module):
    def __init__(self, spec: str, vocab: int, d_model: int, heads: int, layers: int,
                 backend: str | None = None) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.blocks = nn.ModuleList(Block(spec, d_model, heads, backend) for _ in range(layers))
        self.norm = nn.RMSNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, ids: torch.Tensor, return_cache: bool = False
                ) -> tuple[torch.Tensor, list[LayerCache | None]]:
        """`ids: [B, T]` → logits `[B, T, vocab]` (and, with `return_cache`, each layer's cache after the last id)."""
        x = self.embed(ids)
        caches = []
        for block in self.blocks:
            x, cache = block(x, return_cache)
            caches.append(cache)
        return self.head(self.norm(x)), caches

    @torch.no_grad()
    def step(self, ids: torch.Tensor, caches: list[LayerCache]) -> tuple[torch.Tensor, list[LayerCache]]:
        """One token per row, `ids: [B]` → logits `[B, vocab]`; the caches are updated in place."""
        x = self.embed(ids)
        for i, block in enumerate(self.blocks):
            x, caches[i] = block.step(x, caches[i])
        return self.head(self.norm(x)), caches


def train(model: LanguageModel, data: torch.Tensor, steps: int, batch: int, seq_len: int, lr: float,
          seed: int = 0, log_every: int = 50) -> list[float]:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    losses = []
    for step in range(steps):
        start = torch.randint(0, len(data) - seq_len - 1, (batch,), generator=gen)
        chunk = torch.stack([data[s: s + seq_len + 1] for s in start.tolist()])
        logits, _ = model(chunk[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:4d}  loss {losses[-1]:.3f}", flush=True)
    return losses


@torch.no_grad()
def generate(model: LanguageModel, prompt: torch.Tensor, new_tokens: int, temperature: float = 0.0,
             seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Prefill `prompt: [B, P]`, then decode `new_tokens` one at a time (greedy at temperature 0).

    Returns the whole sequence `[B, P + new_tokens]` and the logits that predicted each token after the first
    `[B, P + new_tokens - 1, vocab]` (the prefill's, then the decode's).
    """
    gen = torch.Generator().manual_seed(seed)
    logits, caches = model(prompt, return_cache=True)
    ids, seen = [prompt], [logits]
    last = logits[:, -1]
    for _ in range(new_tokens):
        if temperature > 0:
            nxt = torch.multinomial(F.softmax(last / temperature, -1), 1, generator=gen)[:, 0]
        else:
            nxt = last.argmax(-1)
        ids.append(nxt[:, None])
        last, caches = model.step(nxt, caches)  # type: ignore[arg-type]
        seen.append(last[:, None])
    return torch.cat(ids, 1), torch.cat(seen, 1)[:, :-1]


def check_decode(model: LanguageModel, ids: torch.Tensor, decoded: torch.Tensor) -> float:
    """The largest |decode logit − full-forward logit| over every position (the forward sees the whole text)."""
    with torch.no_grad():
        full, _ = model(ids[:, :-1])
    return float((full - decoded).abs().max())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec", nargs="?", default="gated_delta_rule", help="bundled spec name or path to a .rec file")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--sentences", type=int, default=2000, help="size of the generated corpus")
    ap.add_argument("--prompt", default="the red fox ")
    ap.add_argument("--new-tokens", type=int, default=80)
    ap.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    ap.add_argument("--backend", choices=("torch", "triton"), default=None,
                    help="default: Triton on a GPU (or under TRITON_INTERPRET=1), else the pure-torch path")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default); see docs/cpu.md")
    ap.add_argument("--check", action="store_true",
                    help="fail (exit 1) unless the decode logits equal the full forward's at every position")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    text = corpus(args.sentences, args.seed)
    vocab = Vocab(text)
    if any(c not in vocab.index for c in args.prompt):
        ap.error(f"the prompt may only use the corpus' characters: {''.join(vocab.chars)!r}")
    model = LanguageModel(args.spec, len(vocab.chars), args.d_model, args.heads, args.layers, args.backend)
    t0 = time.perf_counter()
    losses = train(model, vocab.encode(text), args.steps, args.batch, args.seq_len, args.lr, args.seed)
    print(f"trained {args.steps} steps in {time.perf_counter() - t0:.1f}s ({torch.get_num_threads()} thread(s)); "
          f"final loss {losses[-1] if losses else float('nan'):.3f}")
    model.eval()
    ids, decoded = generate(model, vocab.encode(args.prompt)[None], args.new_tokens, args.temperature, args.seed)
    print(f"{args.prompt!r} → {vocab.decode(ids[0, len(args.prompt):])!r}")
    if args.check:
        err = check_decode(model, ids, decoded)
        ok = err <= 1e-3
        print(f"decode vs full forward: largest logit difference {err:.2e} over {decoded.shape[1]} positions "
              f"({'ok' if ok else 'MISMATCH'})")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
