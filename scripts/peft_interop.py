#!/usr/bin/env python3
"""vlm4j <-> peft / transformers interop check (run by scripts/peft-interop.sh, which explains the steps).

Inputs are the vlm4j traces' own tensors (input_ids, pixel_values, image_grid_thw), so both sides see identical
inputs. Checks, each printed as a PASS/FAIL line with its numbers:
  adapter-load   every tensor of adapter_model.safetensors landed in the PeftModel (keys and values), and peft
                 created no LoRA module the file does not hold (target_modules regex matches exactly those)
  peft[case]     vlm4j (adapter unmerged, float32) against transformers + peft (float32, eager): max abs diff of
                 the top-20 logits (HF's logits gathered at vlm4j's top-20 ids), of logits_last [V] and of the
                 per-position logsumexp <= 0.02 (the fixtures' float32 bound), top-1 identical wherever HF's lead
                 is >= 0.01; also prints how far the adapter moves the logits (base vs base+adapter), to show the
                 check is not vacuous
  merged-load    the merged folder loads in transformers with no missing / unexpected / mismatched keys
  merged-weights every merged weight is within one bf16 rounding (|d| <= 2^-8 |w|, w the exact float32
                 merge by peft's merge_and_unload) of W + scale * B @ A; untouched weights bit-identical
  merged[case]   transformers on the merged folder vs vlm4j on the merged folder: <= 0.02 (same weights);
                 vs transformers + peft unmerged: <= 2 * e_ref + 0.02, where e_ref is the same distance for
                 peft's own merge rounded to bf16 (the rounding that any bf16 export has)
"""
import argparse, glob, json, os, sys

import torch
from safetensors.torch import load_file

TOL = 0.02
TIE = 0.01


def log(*a):
    print(*a, flush=True)


def load_base(path):
    from transformers import Qwen2_5_VLForConditionalGeneration
    return Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()


def forward(model, tr):
    ids = tr["input_ids"]
    kw = dict(input_ids=ids, attention_mask=torch.ones_like(ids))
    if "pixel_values" in tr:
        kw["pixel_values"] = tr["pixel_values"].float()
        kw["image_grid_thw"] = tr["image_grid_thw"].long()
    cfg = model.config
    img_tok = getattr(cfg, "image_token_id", None) or getattr(getattr(cfg, "text_config", cfg), "image_token_id", None)
    vid_tok = getattr(cfg, "video_token_id", None) or getattr(getattr(cfg, "text_config", cfg), "video_token_id", None)
    mm = torch.zeros_like(ids)
    if img_tok is not None: mm[ids == img_tok] = 1
    if vid_tok is not None: mm[ids == vid_tok] = 2
    kw["mm_token_type_ids"] = mm
    with torch.no_grad():
        try:
            out = model(**kw)
        except TypeError:
            kw.pop("mm_token_type_ids")
            out = model(**kw)
    return out.logits[0].float()


def vs_trace(tr, logits):
    """vlm4j trace (top-20, logits_last, logsumexp) against full logits [L, V]."""
    ids, vals = tr["logits_top20_ids"].long(), tr["logits_top20_values"].float()
    d_top = (logits.gather(1, ids) - vals).abs().max().item()
    d_last = (logits[-1] - tr["logits_last"].float()).abs().max().item()
    d_lse = (torch.logsumexp(logits, dim=-1) - tr["logits_logsumexp"].float()).abs().max().item()
    top2 = logits.topk(2, dim=-1)
    lead = top2.values[:, 0] - top2.values[:, 1]
    clear = lead >= TIE
    agree = (top2.indices[:, 0] == ids[:, 0])
    bad = int((~agree & clear).sum())
    return dict(max_abs_top20=d_top, max_abs_last=d_last, max_abs_lse=d_lse, top1_agree=int(agree.sum()),
                positions=int(ids.shape[0]), top1_mismatch_clear=bad, max_abs=max(d_top, d_last, d_lse))


def vs_full(a, b):
    d = (a - b).abs().max().item()
    top2 = b.topk(2, dim=-1)
    clear = (top2.values[:, 0] - top2.values[:, 1]) >= TIE
    agree = a.argmax(-1) == top2.indices[:, 0]
    return dict(max_abs=d, top1_agree=int(agree.sum()), positions=int(a.shape[0]), top1_mismatch_clear=int((~agree & clear).sum()))


RESULTS = []


def verdict(name, ok, info):
    RESULTS.append(dict(check=name, ok=bool(ok), **info))
    nums = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
    log(f"{'PASS' if ok else 'FAIL'} {name}: {nums}")


def new_name(k):
    """A checkpoint key (published layout or transformers 5) as a transformers 5 state_dict key."""
    if k.startswith("visual."): return "model." + k
    if k.startswith("model.") and not k.startswith(("model.language_model.", "model.visual.")):
        return "model.language_model." + k[len("model."):]
    return k


def read_dir(d):
    t = {}
    for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        t.update(load_file(f))
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--merged", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--cases", default="text,image")
    a = ap.parse_args()
    import transformers, peft
    from peft import PeftModel
    log(f"torch {torch.__version__} transformers {transformers.__version__} peft {peft.__version__}")
    torch.manual_seed(0)
    cases = a.cases.split(",")
    traces = {c: load_file(os.path.join(a.work, f"trace-{c}-adapter.safetensors")) for c in cases}
    mtraces = {c: load_file(os.path.join(a.work, f"trace-{c}-merged.safetensors")) for c in cases}

    # --- adapter: load in peft, check every tensor arrived
    pm = PeftModel.from_pretrained(load_base(a.model), a.adapter).eval()
    sd = pm.state_dict()
    file = load_file(os.path.join(a.adapter, "adapter_model.safetensors"))
    missing, maxd = [], 0.0
    for k, v in file.items():
        mk = k.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")
        if mk not in sd and k.endswith(".weight"):  # modules_to_save: saved under the module's own name
            mk = k[: -len(".weight")] + ".modules_to_save.default.weight"
        if mk not in sd: missing.append(k); continue
        maxd = max(maxd, (sd[mk].float() - v.float()).abs().max().item())
    lora_mods = [n for n, _ in pm.named_modules() if n.endswith(".lora_A.default")]
    n_file = sum(1 for k in file if k.endswith(".lora_A.weight"))
    cfg = json.load(open(os.path.join(a.adapter, "adapter_config.json")))
    scal = {n: m.scaling.get("default") for n, m in pm.named_modules() if hasattr(m, "scaling") and isinstance(m.scaling, dict)}
    sc = sorted(set(scal.values()))
    verdict("adapter-load", not missing and maxd == 0.0 and len(lora_mods) == n_file,
            dict(file_tensors=len(file), not_in_model=len(missing), max_abs_value_diff=maxd, peft_lora_modules=len(lora_mods),
                 file_lora_modules=n_file, r=cfg.get("r"), lora_alpha=cfg.get("lora_alpha"), peft_scaling=str(sc)))
    if missing: log("  not in model (first 5):", missing[:5])

    # --- logits: vlm4j adapter trace vs transformers + peft
    peft_logits, base_logits = {}, {}
    for c in cases:
        tr = traces[c]
        peft_logits[c] = forward(pm, tr)
        with pm.disable_adapter():
            base_logits[c] = forward(pm, tr)
        r = vs_trace(tr, peft_logits[c])
        eff = (peft_logits[c] - base_logits[c]).abs().max().item()
        r["adapter_effect_max_abs"] = eff
        r["seq_len"] = int(tr["input_ids"].shape[1])
        if "pixel_values" in tr: r["image_grid_thw"] = str(tr["image_grid_thw"].tolist())
        verdict(f"peft[{c}] vlm4j(adapter,unmerged) vs transformers+peft", r["max_abs"] <= TOL and r["top1_mismatch_clear"] == 0 and eff > 10 * TOL, r)

    # --- merged folder: loads in transformers, weights are the bf16-rounded merge
    from transformers import Qwen2_5_VLForConditionalGeneration
    try:
        mm, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(a.merged, dtype=torch.float32, attn_implementation="eager",
                                                                   output_loading_info=True)
        info = {k: list(v) for k, v in info.items() if isinstance(v, (list, set, tuple))}
    except TypeError:
        mm, info = load_base(a.merged), {}
    mm.eval()
    bad_keys = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    verdict("merged-load transformers.from_pretrained(merged)", not bad_keys,
            dict(**{k: len(v) for k, v in info.items()}))
    if bad_keys: log("  ", {k: v[:5] for k, v in bad_keys.items()})

    ref = PeftModel.from_pretrained(load_base(a.model), a.adapter).merge_and_unload().eval()
    ref_sd = {k: v.detach().float() for k, v in ref.state_dict().items()}
    base_files = {new_name(k): v for k, v in read_dir(a.model).items()}
    merged_files = read_dir(a.merged)
    over, worst, changed, unmapped, n_el, dtypes = 0, 0.0, 0, [], 0, set()
    for k, v in merged_files.items():
        nk = new_name(k)
        dtypes.add(str(v.dtype))
        if nk not in ref_sd: unmapped.append(k); continue
        w, m = ref_sd[nk], v.float()
        if m.shape != w.shape: unmapped.append(k + " shape"); continue
        d = (m - w).abs()
        bound = w.abs() * 2.0 ** -8 + 1e-30
        over += int((d > bound).sum())
        worst = max(worst, (d / (w.abs() + 1e-30)).max().item())
        n_el += d.numel()
        if nk in base_files and not torch.equal(base_files[nk].float(), m): changed += 1
    verdict("merged-weights vs exact merge (peft merge_and_unload, float32)", over == 0 and not unmapped,
            dict(tensors=len(merged_files), elements=n_el, dtypes=",".join(sorted(dtypes)), over_1_bf16_rounding=over,
                 max_rel_err=worst, tensors_changed_vs_base=changed, lora_modules=n_file, unmapped=len(unmapped)))
    if unmapped: log("  unmapped (first 5):", unmapped[:5])

    # python-side reference of bf16 rounding: peft's merge rounded to bf16
    with torch.no_grad():
        for p in ref.parameters(): p.copy_(p.to(torch.bfloat16).float())
    for c in cases:
        tr, mtr = traces[c], mtraces[c]
        if not torch.equal(tr["input_ids"], mtr["input_ids"]):
            verdict(f"merged[{c}] input_ids", False, dict(note="merged trace tokenised differently")); continue
        ml = forward(mm, tr)
        r1 = vs_trace(mtr, ml)
        verdict(f"merged[{c}] vlm4j(merged) vs transformers(merged)", r1["max_abs"] <= TOL and r1["top1_mismatch_clear"] == 0, r1)
        e_ref = (forward(ref, tr) - peft_logits[c]).abs().max().item()
        r2 = vs_full(ml, peft_logits[c])
        r2["e_ref_bf16_peft_merge"] = e_ref
        r2["bound"] = 2 * e_ref + TOL
        r2["vlm4j_adapter_trace_vs_transformers_merged"] = vs_trace(tr, ml)["max_abs"]
        verdict(f"merged[{c}] transformers(merged) vs transformers+peft(unmerged)", r2["max_abs"] <= r2["bound"] and r2["top1_mismatch_clear"] == 0, r2)

    ok = all(r["ok"] for r in RESULTS)
    json.dump(RESULTS, open(os.path.join(a.work, "interop.json"), "w"), indent=1)
    log(("PASS" if ok else "FAIL") + f" overall: {sum(r['ok'] for r in RESULTS)}/{len(RESULTS)} checks")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
