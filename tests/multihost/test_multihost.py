"""Several JAX processes on this machine as the hosts of one job (2 processes x 4 devices and 4 x 2), against the
same work in this one process on 8 devices: loading reads only each process's share, the train step fed by each
process's own rows, Orbax checkpoints across process counts and meshes, a host killed during an async save, and
the HF export written by process 0.

Cost: each job is a fresh set of processes (JAX start-up, compiles of a 0.6 M-param Llama); the jobs of the
module are shared through module-scoped fixtures.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from tests.multihost import jobs
from tests.multihost.harness import run_processes

TOPOLOGIES = {"2x4": (2, 4), "4x2": (4, 2)}
STEPS = 4
MESH = [2, 2, 2]  # data x fsdp x tensor: every axis splits something
LOAD_MESH = [1, 8, 1]  # FSDP over every device: each process holds 1/processes of each matrix
# What a process reads besides tensor bytes: safetensors headers, the index, config.json, source files of lazy
# imports.
OVERHEAD = 256 * 1024


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return str(jobs.write_checkpoint(str(tmp_path_factory.mktemp("multihost") / "llama")))


@pytest.fixture(scope="module")
def reference(checkpoint, tmp_path_factory):
    """One process, 8 devices: the load, and STEPS steps with the HF export at the end."""
    out = tmp_path_factory.mktemp("reference")
    return {"load": jobs.load(checkpoint, LOAD_MESH),
            "train": jobs.train(checkpoint, MESH, STEPS, export_dir=str(out / "hf")), "hf": out / "hf"}


@pytest.fixture(scope="module")
def two_by_four(checkpoint, tmp_path_factory):
    """2 processes x 4 devices: the load, then STEPS steps with a checkpoint every 2 steps and the HF export."""
    out = tmp_path_factory.mktemp("two_by_four")
    calls = [["load", dict(checkpoint=checkpoint, mesh=LOAD_MESH)],
             ["train", dict(checkpoint=checkpoint, mesh=MESH, steps=STEPS, ckpt_dir=str(out / "ckpt"), save_every=2,
                            export_dir=str(out / "hf"))]]
    results = run_processes("tests.multihost.jobs:several", 2, 4, args={"calls": calls})
    return [dict(zip(("load", "train"), r.value)) for r in results], out


@pytest.fixture(scope="module")
def four_by_two(checkpoint, two_by_four):
    """4 processes x 2 devices: the load, STEPS steps, and a restore of the 2 x 4 run's checkpoint onto another
    mesh."""
    calls = [["load", dict(checkpoint=checkpoint, mesh=LOAD_MESH)],
             ["train", dict(checkpoint=checkpoint, mesh=MESH, steps=STEPS)],
             ["restore", dict(checkpoint=checkpoint, ckpt_dir=str(two_by_four[1] / "ckpt"), mesh=[1, 4, 2])]]
    results = run_processes("tests.multihost.jobs:several", 4, 2, args={"calls": calls})
    return [dict(zip(("load", "train", "restore"), r.value)) for r in results]


def per_process(topology: str, request) -> list[dict]:
    return request.getfixturevalue("two_by_four")[0] if topology == "2x4" else request.getfixturevalue("four_by_two")


def assert_same_params(got: dict, want: dict, atol: float = 0.0) -> None:
    """Equal params, bit for bit unless ``atol`` is given."""
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=atol, err_msg=name)


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_each_process_reads_only_its_share(reference, topology, request):
    results = [r["load"] for r in per_process(topology, request)]
    want = reference["load"]
    total = sum(a.nbytes for a in want["params"].values())  # float32 params of a float32 file: the tensor bytes
    # One process on 8 devices holds and reads every tensor once.
    assert want["unique_local_bytes"] == total
    assert total <= want["bytes_read"] <= total + OVERHEAD
    for r in results:
        # A process keeps its devices' shards of each param (FSDP: 1/processes of each matrix) and reads those
        # bytes of the file and no others.
        assert r["unique_local_bytes"] < total / TOPOLOGIES[topology][0] * 1.1
        assert r["unique_local_bytes"] <= r["bytes_read"] <= r["unique_local_bytes"] + OVERHEAD, r
        assert_same_params(r["params"], want["params"])
        np.testing.assert_allclose(r["logits"], want["logits"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_train_step_across_processes_equals_one_process(reference, topology, request):
    want = reference["train"]
    for r in (r["train"] for r in per_process(topology, request)):
        # Reductions over hosts sum in another order than on one host: equal to float32 rounding.
        np.testing.assert_allclose(r["losses"], want["losses"], rtol=0, atol=1e-6)
        assert r["step"] == STEPS
        assert_same_params(r["params"], want["params"], atol=1e-6)
        for a, b in zip(r["opt_state"], want["opt_state"]):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_hf_export_by_process_zero_equals_one_process_export(reference, two_by_four):
    import conversion
    from safetensors.numpy import load_file
    results, out = two_by_four
    got, want = out / "hf", reference["hf"]
    assert sorted(p.name for p in got.iterdir()) == sorted(p.name for p in want.iterdir())
    assert (got / "config.json").read_text() == (want / "config.json").read_text()
    a, b = load_file(got / "model.safetensors"), load_file(want / "model.safetensors")
    assert_same_params(a, b, atol=1e-6)  # as the trained params (test_train_step_across_processes_...)
    # The export holds exactly the trained (gathered) params of the job.
    reloaded = jobs.flat(conversion.from_pretrained(got, progress=False).params)
    assert_same_params(reloaded, results[0]["train"]["params"])


@pytest.mark.parametrize("where", ["4x2", "one process"])
def test_checkpoint_restores_on_another_process_count_and_mesh(checkpoint, two_by_four, where, request):
    results, out = two_by_four
    if where == "4x2":
        restored = [r["restore"] for r in request.getfixturevalue("four_by_two")]
    else:
        restored = [jobs.restore(checkpoint=checkpoint, ckpt_dir=str(out / "ckpt"), mesh=[1, 4, 2])]
    want = results[0]["train"]
    for r in restored:
        assert r["step"] == STEPS
        assert_same_params(r["params"], want["params"])  # bit for bit
        for a, b in zip(r["opt_state"], want["opt_state"]):
            np.testing.assert_array_equal(a, b)


def test_host_killed_during_async_save_ends_the_job_and_a_restart_resumes_exactly(checkpoint, two_by_four,
                                                                                 tmp_path):
    ckpt_dir = str(tmp_path / "ckpt")
    args = dict(checkpoint=checkpoint, mesh=MESH, steps=STEPS, ckpt_dir=ckpt_dir, save_every=2)
    crashed = run_processes("tests.multihost.jobs:train", 2, 4, args=dict(args, kill_process=1, kill_after_save=STEPS),
                            heartbeat_timeout=5, timeout=90, expect_success=False)
    assert crashed[1].returncode == -9
    # The survivor does not hang: JAX's coordination service ends it, naming the dead process.
    assert crashed[0].returncode != 0 and crashed[0].value is None
    assert "stopped sending heartbeats" in crashed[0].stderr, crashed[0].stderr[-3000:]
    # The save of the last step never completed; the restart resumes from step 2 and ends bit-identical.
    resumed = [r.value for r in run_processes("tests.multihost.jobs:train", 2, 4, args=dict(args, resume=True))]
    want = two_by_four[0][0]["train"]
    for r in resumed:
        assert r["first"] == 2
        np.testing.assert_array_equal(r["losses"], want["losses"][2:])
        assert_same_params(r["params"], want["params"])


def pretrain_config(tmp, name: str):
    from common.tokenization import docs_corpus
    from llama_jax.pretrain import PretrainConfig
    corpus = tmp / "corpus.txt"
    if not corpus.exists():
        corpus.write_text("\n\n".join(docs_corpus(stdlib_docstrings=False)[:20]))
    return PretrainConfig(out=str(tmp / name), corpus=str(corpus), vocab_size=300, hidden_size=64, layers=2, heads=2,
                          kv_heads=1, intermediate_size=128, seq_len=32, batch_size=8, steps=8, warmup_steps=2,
                          eval_every=4, checkpoint_every=4, sample_tokens=4, mesh=(1, 4, 1))


def test_jaxzoo_train_one_command_per_host_equals_one_process(tmp_path):
    """`jaxzoo train --coordinator ... --num-processes 2 --process-id I` on 2 hosts of 2 devices: the same run as
    one process on 4 devices (losses, held-out loss, the HF export), process 0 writing the files."""
    from safetensors.numpy import load_file
    from conversion import ARCHITECTURES, save_pretrained
    from llama_jax.pretrain import run
    from tests.multihost.harness import free_port, launch
    cfg = pretrain_config(tmp_path, "multi")
    flags = ["--corpus", cfg.corpus, "--out", cfg.out, "--vocab-size", "300", "--hidden-size", "64", "--layers", "2",
             "--heads", "2", "--kv-heads", "1", "--intermediate-size", "128", "--seq-len", "32", "--batch-size", "8",
             "--steps", "8", "--warmup-steps", "2", "--eval-every", "4", "--checkpoint-every", "4",
             "--sample-tokens", "4", "--mesh", "1,4,1", "--coordinator", f"localhost:{free_port()}",
             "--num-processes", "2"]
    ran = launch([[sys.executable, "-m", "conversion.cli", "train", *flags, "--process-id", str(i)] for i in (0, 1)],
                 devices_per_process=2, timeout=240)
    for code, err in ran:
        assert code == 0, err[-3000:]
    reference = run(pretrain_config(tmp_path, "single"), ARCHITECTURES["LlamaForCausalLM"].spec, save_pretrained,
                    log=lambda *_: None)
    got = json.loads((tmp_path / "multi" / "summary.json").read_text())
    assert got["steps"] == reference["steps"] == 8
    np.testing.assert_allclose(got["final_train_loss"], reference["final_train_loss"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(got["final_eval_loss"], reference["final_eval_loss"], rtol=0, atol=1e-5)
    multi, single = tmp_path / "multi" / "hf", tmp_path / "single" / "hf"
    assert (multi / "tokenizer.json").read_bytes() == (single / "tokenizer.json").read_bytes()
    a, b = load_file(multi / "model.safetensors"), load_file(single / "model.safetensors")
    for name in b:
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=1e-5, err_msg=name)
    assert sorted(p.name for p in (tmp_path / "multi" / "checkpoints").iterdir()) == ["4", "8"]


@pytest.mark.parametrize("argv, message", [
    (["--num-processes", "2"], "need --coordinator"),
    (["--coordinator", "localhost:1234"], "needs --num-processes"),
    (["--coordinator", "auto", "--process-id", "0"], "leave out --num-processes"),
])
def test_train_multi_host_flags_are_checked(argv, message, capsys):
    from conversion.cli import main
    assert main(["train", *argv]) == 2
    assert message in capsys.readouterr().err
