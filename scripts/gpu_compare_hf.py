#!/usr/bin/env python3
"""Hugging Face side of scripts/gpu-compare.sh (run on a GPU host with torch and transformers).

  python3 scripts/gpu_compare_hf.py make  DIR FIXTURE_DIR   # random MiMo-VL-7B-shaped checkpoint (bf16) into DIR
  python3 scripts/gpu_compare_hf.py bench DIR OUT.json      # transformers (bf16, sdpa) timings
  python3 scripts/gpu_compare_hf.py table HF.json VLM4J.json  # side-by-side table with ratios

The checkpoint is built on the GPU from config.json (published Qwen2.5-VL layout) with transformers' own small
random init, and written as safetensors shards under the published tensor names (model.*, visual.*, lm_head.*),
with the fixture's tokenizer and preprocessor files alongside. Timings (same definitions as CudaCompareBench):
  decode_bB: B sequences of 128 random prompt tokens, 128 new tokens greedy with no early stop; decode tok/s =
             B * 127 / (time(generate 128) - time(generate 1)), i.e. the 127 steps after the prefill.
  vision:    vision tower on the pixel values of a 1036x1036 image (grid 1x74x74, 5476 patches -> 1369 tokens).
  prefill:   forward over 16 text tokens + <vision_start> + 1369 <image_pad> + <vision_end> + 16 text tokens,
             vision tower included, logits of the last position only.
"""
import json
import os
import shutil
import sys
import time

MIMO_CONFIG = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
    "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
    "vision_start_token_id": 151652, "vision_end_token_id": 151653, "vision_token_id": 151654,
    "image_token_id": 151655, "video_token_id": 151656, "hidden_act": "silu", "hidden_size": 4096,
    "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 128000,
    "max_window_layers": 36, "num_attention_heads": 32, "num_hidden_layers": 36, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05, "rope_theta": 640000.0, "sliding_window": 32768, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "use_cache": True, "use_sliding_window": False,
    "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3456,
                      "num_heads": 16, "in_chans": 3, "out_hidden_size": 4096, "patch_size": 14,
                      "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                      "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "temporal_patch_size": 2},
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vocab_size": 151680,
}
GRID = (1, 74, 74)
PROMPT, NEW = 128, 128
BATCHES = (1, 16, 64)


def published_name(k):
    for a, b in (("model.language_model.", "model."), ("model.visual.", "visual."), ("language_model.model.", "model."),
                 ("language_model.lm_head.", "lm_head.")):
        if k.startswith(a):
            return b + k[len(a):]
    return k


def build(dir_):
    import torch
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration
    os.makedirs(dir_, exist_ok=True)
    with open(os.path.join(dir_, "config.json"), "w") as f:
        json.dump(MIMO_CONFIG, f, indent=2)
    cfg = AutoConfig.from_pretrained(dir_)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, torch_dtype=torch.bfloat16, attn_implementation="sdpa")
    return model.eval()


def make(dir_, fixture):
    import torch
    from safetensors.torch import save_file
    t0 = time.time()
    model = build(dir_)
    sd = {published_name(k): v for k, v in model.state_dict().items()}
    if "lm_head.weight" not in sd:
        raise SystemExit("no lm_head.weight in " + str(list(sd)[:5]))
    shard, shards, size, limit = {}, [], 0, 4 << 30
    for k in sorted(sd):
        shard[k] = sd[k].contiguous()
        size += sd[k].numel() * sd[k].element_size()
        if size >= limit:
            shards.append(shard)
            shard, size = {}, 0
    if shard:
        shards.append(shard)
    weight_map = {}
    for i, s in enumerate(shards):
        name = "model-%05d-of-%05d.safetensors" % (i + 1, len(shards))
        save_file({k: v.cpu() for k, v in s.items()}, os.path.join(dir_, name), metadata={"format": "pt"})
        for k in s:
            weight_map[k] = name
    with open(os.path.join(dir_, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(v.numel() * v.element_size() for v in sd.values())},
                   "weight_map": weight_map}, f)
    with open(os.path.join(dir_, "config.json"), "w") as f:   # the published layout, whatever transformers rewrote
        json.dump(MIMO_CONFIG, f, indent=2)
    for n in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", "chat_template.json", "generation_config.json"):
        if os.path.exists(os.path.join(fixture, n)):
            shutil.copy(os.path.join(fixture, n), dir_)
    params = sum(v.numel() for v in sd.values())
    print("wrote %s: %.2fB parameters in %d shards, %.1f s" % (dir_, params / 1e9, len(shards), time.time() - t0), flush=True)


def timed(fn, reps=1):
    import torch
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def prompt_ids():
    ids = [1000 + i for i in range(16)] + [151652] + [151655] * (GRID[1] * GRID[2] // 4) + [151653] + [2000 + i for i in range(16)]
    return ids


def bench(dir_, out):
    import torch
    model = build(dir_)   # same shapes; transformers' random init (timings do not depend on the values)
    res = {"side": "transformers", "device": torch.cuda.get_device_name(0),
           "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__}}
    g = torch.Generator(device="cuda").manual_seed(1)
    with torch.inference_mode():
        for b in BATCHES:
            ids = torch.randint(0, 150000, (b, PROMPT), device="cuda", generator=g)
            mask = torch.ones_like(ids)

            def gen(n):
                out_ = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                                      do_sample=False, pad_token_id=0, use_cache=True)
                assert out_.shape[1] == PROMPT + n, out_.shape
            gen(4)   # warm-up
            t1 = timed(lambda: gen(1))
            tn = timed(lambda: gen(NEW))
            tps = b * (NEW - 1) / (tn - t1)
            res["decode_b%d" % b] = {"tok_s": tps, "ms_step": 1000 * (tn - t1) / (NEW - 1), "prefill_s": t1}
            print("transformers decode batch %d: %.1f tok/s (%.2f ms/step), prefill+1 %.3f s" % (b, tps, 1000 * (tn - t1) / (NEW - 1), t1), flush=True)
            del ids, mask
            torch.cuda.empty_cache()
        px = torch.randn(GRID[0] * GRID[1] * GRID[2], 1176, device="cuda", generator=g).to(torch.bfloat16)
        grid = torch.tensor([list(GRID)], device="cuda")
        visual = model.model.visual if hasattr(model, "model") and hasattr(model.model, "visual") else model.visual
        enc = lambda: visual(px, grid_thw=grid)
        for _ in range(2):
            enc()
        tv = timed(enc, 3)
        res["vision_ms"] = 1000 * tv
        print("transformers vision encode 1036x1036: %.1f ms" % (1000 * tv), flush=True)
        pid = torch.tensor([prompt_ids()], device="cuda")

        def pre():
            o = model(input_ids=pid, attention_mask=torch.ones_like(pid), pixel_values=px, image_grid_thw=grid,
                      use_cache=True, logits_to_keep=1)
            return o.logits
        for _ in range(2):
            pre()
        tp = timed(pre, 3)
        res["prefill_ms"] = 1000 * tp
        res["prefill_tokens"] = pid.shape[1]
        print("transformers prefill image + 32 text tokens (%d tokens): %.1f ms" % (pid.shape[1], 1000 * tp), flush=True)
    res["memory_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    with open(out, "w") as f:
        json.dump(res, f, indent=1)


def table(hf_path, vl_path):
    hf = json.load(open(hf_path)) if os.path.exists(hf_path) else {}
    vl = json.load(open(vl_path)) if os.path.exists(vl_path) else {}
    rows = []
    for b in BATCHES:
        k = "decode_b%d" % b
        rows.append(("decode tok/s, batch %d" % b, hf.get(k, {}).get("tok_s"), vl.get(k, {}).get("tok_s"), True))
    rows.append(("vision encode 1036x1036, ms", hf.get("vision_ms"), vl.get("vision_ms"), False))
    rows.append(("prefill image + 32 text tokens, ms", hf.get("prefill_ms"), vl.get("prefill_ms"), False))
    for k in sorted(vl):
        if k.startswith("extra:"):
            rows.append((k[6:], None, vl[k], k.endswith("tok/s")))
    print("device: %s | transformers %s, torch %s" % (hf.get("device", vl.get("device")),
          hf.get("versions", {}).get("transformers"), hf.get("versions", {}).get("torch")))
    print("| measure | transformers (bf16, sdpa) | vlm4j (CUDA, bf16) | vlm4j speed-up |")
    print("|---|---|---|---|")
    f = lambda v: "-" if v is None else ("%.1f" % v)
    for name, a, b, higher in rows:
        ratio = "-" if a is None or b is None else "%.2fx" % ((b / a) if higher else (a / b))
        print("| %s | %s | %s | %s |" % (name, f(a), f(b), ratio))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make":
        make(sys.argv[2], sys.argv[3])
    elif cmd == "bench":
        bench(sys.argv[2], sys.argv[3])
    elif cmd == "table":
        table(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)
