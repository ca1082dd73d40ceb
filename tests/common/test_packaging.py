"""Packaging: the optional dependencies (the `xlm` and `plots` extras) stay optional.

The core install has neither sacremoses nor matplotlib: importing the package and running the CLI must not need
them, and the code that does need one names the extra to install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OPTIONAL = {"sacremoses": "xlm", "matplotlib": "plots", "datasets": "finetune", "seqeval": "finetune"}
BLOCKED = ("sacremoses", "matplotlib", "matplotlib.pyplot", "datasets", "seqeval", "rouge_score")

# Runs in a fresh interpreter (this process has long imported both packages): blocks the optional packages unless
# told to only watch them, imports every package of the zoo, runs the CLI's help, and prints what got imported.
CHILD = """
import json, sys
block = sys.argv[1] == "block"
if block:
    for name in BLOCKED:
        sys.modules[name] = None  # `import name` now raises ImportError, as when it is not installed
import common, conversion, led_jax, lilt_jax, llama_jax, longformer_jax, xlm_jax, llama_jax.pretrain
import conversion.finetune, common.finetune.job, common.finetune.tasks
from conversion.cli import main
codes = []
for argv in (["--help"], ["train", "--help"], ["finetune", "--help"]):
    try:
        main(argv)
    except SystemExit as e:
        codes.append(e.code)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {n.split(".")[0] for n in BLOCKED} and sys.modules[m])
print(json.dumps({"help_exit_codes": codes, "loaded": loaded}))
"""


def run_child(mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", f"BLOCKED = {BLOCKED!r}\n" + CHILD, mode], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_and_cli_help_do_not_import_optional_packages():
    got = run_child("watch")
    assert got == {"help_exit_codes": [0, 0, 0], "loaded": []}


def test_import_and_cli_help_work_without_optional_packages():
    assert run_child("block")["help_exit_codes"] == [0, 0, 0]


def test_xlm_tokenizer_names_its_extra_when_sacremoses_is_missing(monkeypatch):
    from xlm_jax.tokenizer import XLMTokenizer

    monkeypatch.setitem(sys.modules, "sacremoses", None)
    with pytest.raises(ImportError, match=r"^XLMTokenizer needs sacremoses: pip install 'jaxzoo\[xlm\]'$"):
        XLMTokenizer({"a</w>": 4}, [])


def test_plot_losses_names_its_extra_when_matplotlib_is_missing(monkeypatch, tmp_path):
    from llama_jax.pretrain import plot_losses

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"^plot_losses needs matplotlib: pip install 'jaxzoo\[plots\]'$"):
        plot_losses([(1, 2.0), (2, 1.5)], [], 3.0, tmp_path / "loss.png")
    assert not (tmp_path / "loss.png").exists()
    from llama_jax.pretrain import PretrainConfig, run
    with pytest.raises(ImportError, match=r"^jaxzoo train \(its loss-curve PNG\) needs matplotlib"):
        run(PretrainConfig(out=str(tmp_path / "run")), spec=None, save_pretrained=None)  # before any work
    assert not (tmp_path / "run").exists()


def test_finetune_data_and_metrics_name_their_extra_when_missing(monkeypatch, tmp_path):
    from common.finetune import metrics
    from common.finetune.data import read_rows

    (tmp_path / "train.jsonl").write_text('{"text": "a"}\n')
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match=r"^reading data files needs datasets: pip install 'jaxzoo\[finetune\]'$"):
        read_rows(tmp_path / "train.jsonl")
    for name in ("rouge_score", "rouge_score.rouge_scorer"):  # the submodule too: it may be imported already
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"needs rouge_score: pip install 'jaxzoo\[finetune\]'"):
        metrics.rouge_scores(["a"], ["a"])


def test_pyproject_keeps_optional_packages_in_extras_that_the_test_extra_pulls():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    extras = project["optional-dependencies"]
    for package, extra in OPTIONAL.items():
        assert package not in core
        assert any(req.startswith(package) for req in extras[extra])
    assert "jaxzoo[xlm,plots,finetune]" in extras["test"]
    assert "transformers>=5.24,<5.25" in extras["test"]  # the parity oracle's version
    assert project["license"] == "Apache-2.0"  # an SPDX expression (PEP 639), not the deprecated table


def test_float_model_process_never_imports_qwix_or_orbax(tmp_path):
    """qwix (~0.35 s with flax.nnx) and Orbax (~0.2 s) load only when quantizing or checkpointing: a process
    that loads a float safetensors checkpoint and runs it imports neither (every CLI and pipeline start)."""
    import torch
    import transformers

    from tests.factory import save_hf

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16)
    save_hf(transformers.LlamaForCausalLM(config), tmp_path)
    child = ("import json, sys\nimport numpy as np\nimport conversion\n"
             f"model = conversion.from_pretrained({str(tmp_path)!r})\n"
             "model(input_ids=np.ones((1, 4), np.int32))\n"
             "model.generate(np.ones((1, 4), np.int32), max_new_tokens=2)\n"
             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('qwix', 'orbax', 'flax'))))")
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not [m for m in loaded if m.split(".")[0] in ("qwix", "orbax")], loaded
