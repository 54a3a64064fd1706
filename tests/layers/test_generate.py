"""examples/generate.py at a tiny size, as CI runs it: a language model of recurgen layers trains for a few steps,
then generates with prefill + decode, and its decode logits equal the full forward's at every position, for one
spec of each transition class."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recurgen.runtime.cache import import_file
from tests.layers.test_decode import BY_CLASS

ROOT = Path(__file__).resolve().parents[2]


generate = import_file("generate_example", ROOT / "examples" / "generate.py")  # examples/ is not a package
TINY = ["--steps", "2", "--batch", "2", "--seq-len", "16", "--d-model", "8", "--heads", "2", "--layers", "2",
        "--sentences", "30", "--new-tokens", "6", "--backend", "torch", "--check"]


@pytest.mark.parametrize("name", sorted(set(BY_CLASS.values())))
def test_generate_runs_and_decode_equals_forward(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    threads = torch.get_num_threads()
    try:
        assert generate.main([name, *TINY]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "trained 2 steps" in out
    assert "decode vs full forward" in out
    assert "(ok)" in out


def test_decode_logits_at_every_position_with_sampling() -> None:
    torch.manual_seed(0)
    text = generate.corpus(20)
    vocab = generate.Vocab(text)
    model = generate.LanguageModel("gla", len(vocab.chars), 8, 2, 2, backend="torch").eval()
    ids, decoded = generate.generate(model, vocab.encode("the ")[None].repeat(2, 1), 9, temperature=1.0)
    assert ids.shape == (2, 13)
    assert decoded.shape == (2, 12, len(vocab.chars))
    with torch.no_grad():
        full, _ = model(ids[:, :-1])
    torch.testing.assert_close(decoded, full, rtol=1e-4, atol=1e-5)
