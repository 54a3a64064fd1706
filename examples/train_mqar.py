"""Train a 2-layer model on multi-query associative recall (MQAR) with any recurgen spec(s), on CPU.

    python examples/train_mqar.py gated_delta_rule                        # one spec, a few minutes on 2 cores
    python examples/train_mqar.py gated_delta_rule gla retention          # compare three in one command
    python examples/train_mqar.py examples/my_gated_delta.rec --steps 900  # your own spec
    python examples/train_mqar.py gla --mode recurrent                    # walk the tokens (slower, same math)

The recurrences run on the torch backend in chunk mode: the chunked-parallel form of each spec's kernel
family in plain torch (recurgen.runtime.chunk_torch), differentiated by autograd; a spec without a chunk
form walks its tokens.

MQAR (Arora et al. 2023, "Zoology", §3): a sequence starts with key-value pairs `k1 v1 k2 v2 ...`,
then the keys come back in a random order at random later positions, each followed by its value; the
model is scored on predicting the value after each queried key. Everything else is filler (token 0)
and is not scored. Sequences are generated on the fly, so every batch is new data. Keys and values are
drawn from disjoint halves of the vocabulary, and the keys of one sequence are distinct.

Chance level is 1/num_kv_pairs for a model that has learnt to output *some* value of the context
(and 2/vocab for one that has not); the README states what the bundled settings reach.

Writes `<out>/mqar.png` (loss and recall accuracy per step, one line per spec) and `<out>/mqar.md` (a
table of final accuracy on held-out sequences and wall time). Needs matplotlib for the plot
(`pip install -e '.[examples]'`); without it the table is still written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from recurgen import load
from recurgen.layers import RecurrentLayer

IGNORE = -100  # label of unscored positions (F.cross_entropy's ignore_index)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def mqar_batch(batch: int, seq_len: int, vocab: int, pairs: int,
               gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`(tokens, labels)`, both `[batch, seq_len]` int64; labels are IGNORE except after a queried key."""
    half = vocab // 2
    slots = (seq_len - 2 * pairs) // 2  # where a (query key, value) pair can go after the context
    if half - 1 < pairs or slots < pairs:
        raise ValueError(f"MQAR: {pairs} pairs do not fit vocab={vocab}, seq_len={seq_len}")
    keys = torch.rand(batch, half - 1, generator=gen).argsort(-1)[:, :pairs] + 1  # distinct, in [1, half)
    values = torch.randint(half, vocab, (batch, pairs), generator=gen)
    seq = torch.zeros(batch, seq_len + 1, dtype=torch.long)
    seq[:, : 2 * pairs] = torch.stack([keys, values], dim=-1).reshape(batch, 2 * pairs)
    pos = 2 * pairs + 2 * torch.rand(batch, slots, generator=gen).argsort(-1)[:, :pairs]
    order = torch.rand(batch, pairs, generator=gen).argsort(-1)
    seq.scatter_(1, pos, keys.gather(1, order))
    seq.scatter_(1, pos + 1, values.gather(1, order))
    labels = torch.full((batch, seq_len), IGNORE, dtype=torch.long)
    labels.scatter_(1, pos, values.gather(1, order))  # at a query key, predict its value
    return seq[:, :seq_len], labels


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------
class Block(nn.Module):
    """Pre-norm residual block: token mixing by the recurrence, then a channel-mixing MLP."""

    def __init__(self, spec: str, d_model: int, n_heads: int, conv_silu: bool, mode: str) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(d_model)
        self.mixer = RecurrentLayer(spec, d_model, n_heads, backend="torch", mode=mode, conv_activation=conv_silu)
        self.norm2 = nn.RMSNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class LM(nn.Module):
    """Embedding, `n_layers` blocks, final norm, LM head."""

    def __init__(self, spec: str, vocab: int, d_model: int, n_heads: int, n_layers: int = 2,
                 conv_silu: bool = True, mode: str = "chunk") -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.blocks = nn.ModuleList(Block(spec, d_model, n_heads, conv_silu, mode) for _ in range(n_layers))
        self.norm = nn.RMSNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    spec: str
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    acc: list[float] = field(default_factory=list)
    final_acc: float = math.nan
    seconds: float = 0.0
    n_params: int = 0
    mode: str = "chunk"
    step_seconds: float = math.nan  # median wall time of a training step
    load: float = math.nan  # mean 1-minute load average of the machine during training (os.getloadavg)


class Progress:
    """A dependency-free progress bar: redrawn in place on a terminal, a line every 10% otherwise."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.t0 = total, label, time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.last_decile = -1

    def update(self, done: int, note: str) -> None:
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / max(done, 1) * (self.total - done)
        frac = done / self.total
        bar = "#" * int(24 * frac) + "." * (24 - int(24 * frac))
        line = f"{self.label:>18} [{bar}] {done}/{self.total} {elapsed:5.0f}s <{eta:4.0f}s {note}"
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if done == self.total else ""))
        elif int(10 * frac) != self.last_decile:
            self.last_decile = int(10 * frac)
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    scored = labels != IGNORE
    return float((logits.argmax(-1)[scored] == labels[scored]).float().mean())


def train(spec: str, args: argparse.Namespace) -> Run:
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)  # the same data stream for every spec
    mode = args.mode
    if mode == "chunk" and load(spec).chunk_reason is not None:
        print(f"{spec}: no chunk form ({load(spec).chunk_reason}): walking tokens (mode='recurrent')", flush=True)
        mode = "recurrent"
    model = LM(spec, args.vocab, args.d_model, args.heads, conv_silu=args.conv_silu, mode=mode)
    run = Run(spec, n_params=sum(p.numel() for p in model.parameters()), mode=mode)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.98))
    warmup = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(  # linear warmup, cosine decay to 10%
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.55 + 0.45 * math.cos(math.pi * min(s, args.steps) / args.steps)))
    bar = Progress(args.steps, spec)
    t0 = time.perf_counter()
    ema_loss, ema_acc = math.nan, math.nan
    step_times, loads = [], []
    for step in range(1, args.steps + 1):
        t_step = time.perf_counter()
        tokens, labels = mqar_batch(args.batch, args.seq_len, args.vocab, args.pairs, gen)
        logits = model(tokens)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step_times.append(time.perf_counter() - t_step)
        if step % 10 == 0 and hasattr(os, "getloadavg"):
            loads.append(os.getloadavg()[0])
        acc = accuracy(logits.detach(), labels)
        ema_loss = loss.item() if math.isnan(ema_loss) else 0.9 * ema_loss + 0.1 * loss.item()
        ema_acc = acc if math.isnan(ema_acc) else 0.9 * ema_acc + 0.1 * acc
        run.steps.append(step)
        run.loss.append(loss.item())
        run.acc.append(acc)
        if step % 5 == 0 or step == args.steps:
            bar.update(step, f"loss {ema_loss:.3f} acc {ema_acc:.3f}")
    run.seconds = time.perf_counter() - t0
    run.step_seconds = sorted(step_times)[len(step_times) // 2]
    run.load = sum(loads) / len(loads) if loads else math.nan
    model.eval()
    test_gen = torch.Generator().manual_seed(args.seed + 1)  # held-out sequences
    with torch.no_grad():
        tokens, labels = mqar_batch(args.eval_batch, args.seq_len, args.vocab, args.pairs, test_gen)
        run.final_acc = accuracy(model(tokens), labels)
    print(f"{spec}: held-out recall accuracy {run.final_acc:.3f} after {args.steps} steps "
          f"in {run.seconds:.0f}s ({run.step_seconds:.2f} s/step, mode {run.mode}, load average {run.load:.1f}, "
          f"{run.n_params / 1e3:.0f}k params)", flush=True)
    return run


def _smooth(xs: list[float], k: int) -> list[float]:
    out, acc = [], 0.0
    for i, x in enumerate(xs):
        acc += x - (xs[i - k] if i >= k else 0.0)
        out.append(acc / min(i + 1, k))
    return out


def save_results(runs: list[Run], args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chance = 1 / args.pairs
    rows = [f"MQAR: vocab {args.vocab}, sequence length {args.seq_len}, {args.pairs} key-value pairs, "
            f"d_model {args.d_model}, {args.heads} heads, 2 layers, batch {args.batch}, {args.steps} steps, "
            f"lr {args.lr}, {torch.get_num_threads()} CPU thread(s). Accuracy on {args.eval_batch} held-out "
            f"sequences. Chance: {1 / (args.vocab - args.vocab // 2):.3f} guessing among all values, "
            f"{chance:.3f} guessing among the {args.pairs} values of the sequence (1/pairs).",
            "", "| spec | recall accuracy | wall time | s / step | mode | load average | params |",
            "|---|---|---|---|---|---|---|"]
    rows += [f"| `{r.spec}` | {r.final_acc:.3f} | {r.seconds:.0f} s | {r.step_seconds:.2f} | {r.mode} | {r.load:.1f} | "
             f"{r.n_params / 1e3:.0f}k |" for r in runs]
    (out / "mqar.md").write_text("\n".join(rows) + "\n", encoding="utf-8")
    print(f"wrote {out / 'mqar.md'}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[examples]'): no plot", file=sys.stderr)
        return
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    k = max(1, args.steps // 50)  # smooth over 2% of the run: single batches are noisy
    for r in runs:
        label = f"{Path(r.spec).stem} ({r.final_acc:.2f}, {r.seconds:.0f} s)"
        ax_loss.plot(r.steps, _smooth(r.loss, k), label=label)
        ax_acc.plot(r.steps, _smooth(r.acc, k), label=label)
    ax_acc.axhline(chance, color="grey", ls="--", lw=1, label=f"chance: one of the sequence's values (1/{args.pairs})")
    ax_acc.axhline(1 / (args.vocab - args.vocab // 2), color="grey", ls=":", lw=1, label="chance: any value")
    ax_loss.set(xlabel="step", ylabel="cross-entropy on queried values", title="training loss")
    ax_acc.set(xlabel="step", ylabel="recall accuracy", title="recall accuracy (training batches)", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    ax_acc.legend(loc="upper left", fontsize=9)
    fig.suptitle(f"MQAR on CPU: vocab {args.vocab}, T = {args.seq_len}, {args.pairs} pairs, "
                 f"d_model {args.d_model}, 2 layers")
    fig.tight_layout()
    fig.savefig(out / "mqar.png", dpi=110)
    print(f"wrote {out / 'mqar.png'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("specs", nargs="+", help="bundled spec names or paths to .rec files")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--vocab", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--pairs", type=int, default=4, help="key-value pairs per sequence")
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--conv-silu", action=argparse.BooleanOptionalAction, default=True,
                    help="SiLU after the layers' short convolution")
    ap.add_argument("--eval-batch", type=int, default=1024)
    ap.add_argument("--mode", choices=("chunk", "recurrent"), default="chunk",
                    help="chunk: the chunked-parallel form in plain torch (default); recurrent: walk the tokens")
    # One thread: the tensors are small and much of the time is per-op overhead, so more threads mostly add
    # synchronisation (measured with the per-token path: 2 threads on a loaded 2-core machine ran ~10x slower).
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="examples/results")
    ap.add_argument("--collect", action="store_true",
                    help="do not train: plot and tabulate the runs saved in <out>/runs/ for these specs "
                         "(e.g. after training them in separate processes with the same settings)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    runs_dir = Path(args.out) / "runs"
    if args.collect:
        runs = [Run(**json.loads((runs_dir / f"{Path(s).stem}.json").read_text())) for s in args.specs]
    else:
        runs = []
        for spec in args.specs:
            runs.append(train(spec, args))
            runs_dir.mkdir(parents=True, exist_ok=True)
            (runs_dir / f"{Path(spec).stem}.json").write_text(json.dumps(dataclasses.asdict(runs[-1])))
    save_results(runs, args)


if __name__ == "__main__":
    main()
