"""Run-level guarantees: resume after a kill equals an uninterrupted run; every pushed folder loads with
trust_remote_code in a fresh process; DDP with 2 CPU processes through `accelerate launch`."""

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from train.cli import main as cli_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tiny models on a shared 2-core machine: one thread per process is several times faster than two.
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tri(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs-data")
    with open(os.path.join(ROOT, "data", "flores200_devtest", "eng_Latn.devtest"), encoding="utf-8") as f:
        en = [line[:60] for line in f.read().splitlines()[:4]]
    with open(os.path.join(ROOT, "data", "flores200_devtest", "swh_Latn.devtest"), encoding="utf-8") as f:
        sw = [line[:60] for line in f.read().splitlines()[:4]]
    rows = [{"src_text": sw[i], "src_lang": "swh_Latn", "en_text": en[i], "tgt_text": sw[(i + 1) % 4],
             "tgt_lang": "swh_Latn"} for i in range(4)]
    path = d / "tri.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def tri_ragged(tmp_path_factory):
    """8 records of very different lengths: 2 optimizer steps per epoch, so a kill after step 3 is mid-epoch."""
    d = tmp_path_factory.mktemp("runs-data-ragged")
    with open(os.path.join(ROOT, "data", "flores200_devtest", "eng_Latn.devtest"), encoding="utf-8") as f:
        en = f.read().splitlines()[:8]
    with open(os.path.join(ROOT, "data", "flores200_devtest", "swh_Latn.devtest"), encoding="utf-8") as f:
        sw = f.read().splitlines()[:8]
    cut = [12, 90, 30, 140, 20, 60, 110, 45]
    rows = [{"src_text": sw[i][:cut[i]], "src_lang": "swh_Latn", "en_text": en[i][:cut[(i + 3) % 8]],
             "tgt_text": sw[(i + 1) % 8][:40], "tgt_lang": "swh_Latn"} for i in range(8)]
    path = d / "tri_ragged.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def stage1_args(bases, train_file, out, steps, extra=()):
    return ["stage1", "--config", os.path.join(ROOT, "train", "configs", "stage1.yaml"),
            "--nmt_name_or_path", bases["nmt"], "--llm_name_or_path", bases["llm"], "--train_file", train_file,
            "--output_dir", str(out), "--max_steps", str(steps), "--per_device_train_batch_size", "2",
            "--total_batch_size", "4", "--learning_rate", "3e-3", "--warmup_steps", "2", "--bf16", "false",
            "--base_dtype", "float32", "--logging_steps", "1", "--use_cpu", "true", "--disable_tqdm", "true",
            "--report_to", "none", "--seed", "7", *extra]


def _python_in_background(code: str, log_path):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    with open(log_path, "w") as log:  # a file, not a pipe: a full pipe would block the child
        return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=log)


def test_resume_after_a_kill_matches_an_uninterrupted_run(tiny_bases, tri_ragged, tmp_path):
    """8 records of mixed lengths, 2 per micro-batch, 2 accumulation steps, length-grouped batches (the recipe's
    sampler), warmup + linear decay; killed mid-epoch: the resumed run must restore weights, optimizer, scheduler,
    RNG and data position."""
    tri = tri_ragged
    killed = tmp_path / "killed"
    args = stage1_args(tiny_bases, tri, killed, 6, ["--save_strategy", "steps", "--save_steps", "3"])
    # SIGKILL right after checkpoint-3 is written: no clean shutdown, nothing flushed after it. It runs in the
    # background while the uninterrupted reference run trains in this process (2 cores).
    proc = _python_in_background(f"""
        import os, signal
        from transformers import TrainerCallback
        from train.cli import main
        class Kill(TrainerCallback):
            def on_save(self, args, state, control, **kwargs):
                if state.global_step == 3:
                    os.kill(os.getpid(), signal.SIGKILL)
        main({args!r}, callbacks=[Kill()])
        """, tmp_path / "killed.log")
    full = tmp_path / "full"
    cli_main(stage1_args(tiny_bases, tri, full, 6, ["--save_strategy", "no"]))
    proc.wait(timeout=300)
    assert proc.returncode == -9, (tmp_path / "killed.log").read_text()[-3000:]
    assert sorted(p for p in os.listdir(killed) if p.startswith("checkpoint")) == ["checkpoint-3"]
    ckpt = killed / "checkpoint-3"
    assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"} <= set(os.listdir(ckpt))
    # The checkpoint holds the bridge weights only (trainable weights, not the bases) + optimizer state.
    assert not any(k.startswith(("llm.", "nmt.model.encoder")) for k in load_file(ckpt / "model.safetensors"))
    cli_main(args + ["--resume_from_checkpoint", str(ckpt)])
    a, b = load_file(full / "model.safetensors"), load_file(killed / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    history = [h for h in json.load(open(full / "trainer_state.json"))["log_history"] if "loss" in h]
    # Gradient accumulation is accounted for once: with 2 micro-batches per step the logged loss is their mean,
    # i.e. exactly the weighted sum of the mean terms (it would be 2x with the Trainer's default inference).
    for h in history:
        assert h["loss"] == pytest.approx(h["ce_llm"] + h["ce_dec"] + 6.0 * h["ot"], rel=1e-4)
    log_a = [h["loss"] for h in history]
    log_b = [h["loss"] for h in json.load(open(killed / "trainer_state.json"))["log_history"] if "loss" in h]
    assert log_a[3:] == pytest.approx(log_b[-3:], rel=1e-5)


class FakeHub:
    """Stands in for `huggingface_hub.HfApi` inside Trainer: keeps a copy of every folder it is asked to upload."""

    def __init__(self, root):
        self.root, self.pushes = root, []

    def create_repo(self, repo_id, **kwargs):
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, repo_id, folder_path, path_in_repo=None, ignore_patterns=(), run_as_future=False, **kw):
        import fnmatch

        dest = os.path.join(self.root, f"push-{len(self.pushes)}")
        ignore = [p for p in (ignore_patterns or [])]
        shutil.copytree(folder_path, dest, ignore=lambda d, names: [n for n in names if any(
            fnmatch.fnmatch(n, p.rstrip("/")) for p in ignore)])
        self.pushes.append((path_in_repo, dest, kw.get("commit_message")))
        if run_as_future:
            from concurrent.futures import Future

            future = Future()
            future.set_result(None)
            return future
        return None


def test_every_pushed_revision_loads_with_trust_remote_code(tiny_bases, tri, tmp_path, monkeypatch):
    import transformers.trainer

    hub = FakeHub(tmp_path / "hub")
    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: hub)
    out = tmp_path / "out"
    cli_main(stage1_args(tiny_bases, tri, out, 4, ["--save_strategy", "steps", "--save_steps", "2",
                                                   "--push_to_hub", "true", "--hub_model_id", "me/xbridge-stage1",
                                                   "--hub_strategy", "every_save"]))
    main_pushes = [dest for path, dest, _ in hub.pushes if path is None]
    assert len(main_pushes) >= 3  # step 2, step 4, end of training
    for dest in main_pushes:
        files = set(os.listdir(dest))
        assert {"config.json", "model.safetensors", "README.md", "configuration_xbridge.py", "modeling_xbridge.py",
                "processing_xbridge.py", "processor_config.json"} <= files, files
        assert not any(f.startswith("checkpoint-") for f in files)
    card = open(os.path.join(main_pushes[-1], "README.md")).read()
    assert "training stage: 1" in card and "final loss" in card and "tri.jsonl" in card
    # A fresh process, outside the repo (so the bundle can only come from the pushed folder).
    code = f"""
        import json, sys
        from transformers import AutoModel, AutoProcessor
        for folder in {main_pushes!r}:
            model = AutoModel.from_pretrained(folder, trust_remote_code=True)
            processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            batch = processor(["Habari ya asubuhi"], src_lang="swh_Latn", return_tensors="pt")
            ids = model.generate(**batch, tgt_lang="swh_Latn", max_new_tokens=4)
            print(folder, model.config.stage, processor.batch_decode(ids, skip_special_tokens=True))
        """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count(" 1 [") == len(main_pushes), proc.stdout


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_cpu_processes_with_accelerate_launch(tiny_bases, tri, tmp_path):
    """Two CPU processes over gloo. (FSDP and DeepSpeed cannot run on CPU here: accelerate 1.16 turns an FSDP or
    ZeRO config into plain multi-CPU DDP, since its AcceleratorState enables them for GPU-like devices only.)"""
    out = tmp_path / "ddp"
    args = stage1_args(tiny_bases, tri, out, 3, ["--save_strategy", "no", "--total_batch_size", "4",
                                                  "--per_device_train_batch_size", "2"])
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
           str(_free_port()), "--num_cpu_threads_per_process", "1", "-m", "train", *args]
    env = {**os.environ, "PYTHONPATH": ROOT, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # 2 processes x 2 per device = the total batch of 4: no accumulation needed.
    assert "total batch 4 = 2 per device x 2 processes x 1 accumulation steps" in proc.stderr
    state = json.load(open(out / "trainer_state.json"))
    losses = [h for h in state["log_history"] if "loss" in h]
    assert len(losses) == 3 and all("ce_dec" in h and "ot" in h for h in losses)
    assert os.path.exists(out / "model.safetensors")
    # One process at the same global batch (2 per device x 2 accumulation steps) logs the same losses: the data
    # split, the hidden-state hook and OT give each rank its part, and DDP's mean equals the accumulated mean.
    from train.cli import main as cli_main

    single = cli_main(stage1_args(tiny_bases, tri, tmp_path / "single", 3, ["--save_strategy", "no"]))
    alone = [h for h in single.state.log_history if "loss" in h]
    for key in ("loss", "ce_llm", "ce_dec", "ot"):
        for a, b in zip(losses, alone):
            assert abs(a[key] - b[key]) <= 1e-3 * abs(b[key]), (key, losses, alone)
