#!/usr/bin/env python3
"""transformers + peft side of scripts/gpu-train-compare.sh: one LoRA training step of a MiMo-VL-7B-shaped model.

  python3 scripts/gpu_train_hf.py bench DIR OUT.json [--tokens 2048] [--steps 8] [--warmup 3] [--gradient-checkpointing 0|1]
  python3 scripts/gpu_train_hf.py table HF.json VLM4J.json

The model is built on the GPU with transformers' random init from the MiMo-VL-7B config of gpu_compare_hf.py (same
shapes as the checkpoint vlm4j loads; step times do not depend on the values), bf16, sdpa attention. LoRA as
ms-swift's `--train_type lora` defaults: r 8, alpha 32, dropout 0.05, every linear layer of the language model
(q/k/v/o/gate/up/down_proj of the 36 layers: 252 modules; vision tower, merger and LM head frozen). Data: one text
sequence of --tokens random ids, batch 1, loss on every token (labels = input ids). A step: forward with loss,
backward, clip_grad_norm_(1.0), AdamW(lr 1e-4, weight decay 0.1) step, zero_grad; timed between
torch.cuda.synchronize() calls after the warm-up steps. Peak memory: torch.cuda.max_memory_allocated() and
max_memory_reserved() over the training steps (counters reset after the model is built and LoRA applied).
"""
import json
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

LORA_RE = r".*language_model.*\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)$"


def opt(args, name, default):
    return type(default)(args[args.index(name) + 1]) if name in args else default


def bench(dir_, out, args):
    import torch
    import transformers
    import peft
    from gpu_compare_hf import build
    tokens, steps, warmup = opt(args, "--tokens", 2048), opt(args, "--steps", 8), opt(args, "--warmup", 3)
    gc = opt(args, "--gradient-checkpointing", 0) == 1
    model = build(dir_)
    cfg = peft.LoraConfig(r=8, lora_alpha=32, lora_dropout=0.05, target_modules=LORA_RE, bias="none")
    model = peft.get_peft_model(model, cfg)
    modules = [n for n, m in model.named_modules() if isinstance(m, peft.tuners.lora.LoraLayer)]
    print("LoRA modules: %d (first %s)" % (len(modules), modules[0] if modules else None), flush=True)
    if len(modules) != 252:
        raise SystemExit("expected 252 LoRA modules (36 layers x 7), got %d" % len(modules))
    if gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    optim = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1)
    g = torch.Generator(device="cuda").manual_seed(1234)
    ids = torch.randint(0, 151643, (1, tokens), device="cuda", generator=g)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    losses, times = [], []
    for s in range(warmup + steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        optim.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        t = (time.perf_counter() - t0) * 1000
        losses.append(loss.item())
        if s >= warmup:
            times.append(t)
        print("%s step %d: %.1f ms, loss %.5f" % ("warm-up" if s < warmup else "timed", s, t, losses[-1]), flush=True)
    med = statistics.median(times)
    res = {"side": "transformers+peft", "device": torch.cuda.get_device_name(0), "tokens": tokens, "steps": steps,
           "warmup": warmup, "gradient_checkpointing": gc, "lora_modules": len(modules), "trainable_params": trainable,
           "step_ms_median": med, "step_ms_mean": statistics.mean(times), "step_ms": times,
           "tokens_per_s": tokens / (med / 1000), "peak_device_gb": torch.cuda.max_memory_allocated() / 1e9,
           "peak_reserved_gb": torch.cuda.max_memory_reserved() / 1e9, "losses": losses,
           "loss_on": "every token (labels = input ids)",
           "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}}
    with open(out, "w") as f:
        json.dump(res, f, indent=2)
    print("transformers+peft LoRA step: %d tokens, median %.1f ms, %.0f tok/s, peak allocated %.1f GB (reserved %.1f GB)"
          % (tokens, med, res["tokens_per_s"], res["peak_device_gb"], res["peak_reserved_gb"]), flush=True)


def table(hf_path, vl_path):
    hf, vl = json.load(open(hf_path)), json.load(open(vl_path))
    ratio = vl["tokens_per_s"] / hf["tokens_per_s"]
    print("| side | device | tokens | checkpointing | ms/step (median) | tokens/s | peak memory GB |")
    print("|---|---|---|---|---|---|---|")
    print("| transformers %s + peft %s | %s | %d | %s | %.1f | %.0f | %.1f allocated (%.1f reserved) |" % (
        hf["versions"]["transformers"], hf["versions"]["peft"], hf["device"], hf["tokens"], hf["gradient_checkpointing"],
        hf["step_ms_median"], hf["tokens_per_s"], hf["peak_device_gb"], hf["peak_reserved_gb"]))
    print("| vlm4j | %s | %d | %s | %.1f | %.0f | %.1f in use (%.1f held) |" % (
        vl["device"], vl["tokens"], vl["gradient_checkpointing"], vl["step_ms_median"], vl["tokens_per_s"],
        vl["peak_in_use_gb"], vl["peak_device_gb"]))
    print()
    print("vlm4j / transformers tokens/s: %.2fx (target >= 1.5x: %s); vlm4j peak held %.1f GB (target <= 30 GB: %s)" % (
        ratio, "met" if ratio >= 1.5 else "NOT met", vl["peak_device_gb"], "met" if vl["peak_device_gb"] <= 30 else "NOT met"))


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "bench":
        bench(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif len(sys.argv) == 4 and sys.argv[1] == "table":
        table(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)
