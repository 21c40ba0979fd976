#!/usr/bin/env python3
"""Whole-model check of the C GPT-2 + LoRA against an independent PyTorch
implementation (CTest label `reference`).

The C side (tests/ref_dump.c) builds a tiny GPT-2, runs it on a fixed batch
and dumps its weights, the batch, its loss and its gradients (or, in the AdamW
modes, the loss of every optimizer step). This script recomputes the same
quantities with its own model, written from the GPT-2 definition and not from
the C code:

  * token + learned position embeddings;
  * pre-LayerNorm blocks (eps 1e-5): x += attn(ln_1(x)); x += mlp(ln_2(x));
  * causal self-attention with explicit softmax(q k^T / sqrt(head_size)) v,
    q|k|v fused in c_attn;
  * MLP c_fc -> GELU (tanh approximation) -> c_proj;
  * final LayerNorm and an LM head tied to the token embedding;
  * cross-entropy averaged over targets != -1;
  * LoRA as PEFT defines it, on attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj:
    y = W x + b + s * B(A(dropout(x))), s = alpha / r (alpha / sqrt(r) with
    rsLoRA), inverted dropout (kept inputs scaled by 1 / (1 - p)).

Weights are (out, in), nn.Linear's orientation, as in the C buffers. The
float32 weights are cast to float64 and everything here runs in float64, so
the disagreement measured is the C side's alone.

Agreement required (the project's acceptance rule):
  loss                    |c - ref| / |ref|            <= 1e-5
  each gradient tensor    max|c - ref| / max|ref|      <= 1e-3
  AdamW loss at each step |c - ref| / |ref|            <= 1e-4
The table also shows, for information, the worst elementwise relative error
|c - ref| / |ref| over the elements with |ref| >= 1e-3 max|ref| (smaller ones
are rounding noise relative to the tensor and would dominate any ratio).

Usage:
  gpt2_lora_ref.py --dumper PATH MODE...   run `PATH MODE DIR` for each mode
                                           into a temporary directory, check each
  gpt2_lora_ref.py --dump DIR...           check existing dumps
  --expect-fail TENSOR   succeed only if the checks of TENSOR, and nothing
                         else, fail (for the negative test with CU_REF_CORRUPT)

Ends with "N passed, N failed". Exit status: 0 all checks passed (or, with
--expect-fail, exactly the expected ones failed), 1 a check failed, 2 bad
usage or an unreadable dump, 77 PyTorch is not available (CTest skips).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # depends on the machine: CTest reports a skip
    print("gpt2_lora_ref.py: %s for %s; run it with Debian's /usr/bin/python3" %
          (e, sys.executable), file=sys.stderr)
    sys.exit(77)

LOSS_TOL = 1e-5
GRAD_TOL = 1e-3
TRAJ_TOL = 1e-4
NORM_TOL = 1e-3  # global gradient norm before clipping, per step
LR_TOL = 1e-6  # schedule values (the C side rounds them to float32)
# Trainable weights after the last AdamW step, per tensor: looser than the
# gradients because Adam divides by sqrt(v), so elements whose gradient is
# near zero move by a fraction of lr on rounding noise alone.
FINAL_TOL = 1e-2
ELEM_FLOOR = 1e-3  # elementwise ratio only over |ref| >= ELEM_FLOOR * max|ref|

# LoRA target names (the config's) -> GPT-2 module, and (in, out) in units of C.
TARGET_MODULES = {
    "qkv": ("attn.c_attn", 1, 3),
    "attn_proj": ("attn.c_proj", 1, 1),
    "mlp_fc": ("mlp.c_fc", 1, 4),
    "mlp_proj": ("mlp.c_proj", 4, 1),
}


class UsageError(Exception):
    """A dump is missing, unreadable or inconsistent (exit 2)."""


# --------------------------------------------------------------- the model


def gelu_tanh(x):
    """GPT-2's GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def layer_norm(x, w, b):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # biased, as LayerNorm
    return (x - mean) / torch.sqrt(var + 1e-5) * w + b


def causal_self_attention(qkv, n_head):
    """qkv (B, T, 3C) = q | k | v -> (B, T, C)."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    hs = C // n_head
    q, k, v = qkv.split(C, dim=2)
    q, k, v = (z.view(B, T, n_head, hs).transpose(1, 2) for z in (q, k, v))  # (B, nh, T, hs)
    scores = q @ k.transpose(-2, -1) / math.sqrt(hs)  # (B, nh, T, T)
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    scores = scores.masked_fill(~causal, float("-inf"))
    scores = scores - scores.amax(dim=-1, keepdim=True)
    probs = scores.exp()
    probs = probs / probs.sum(dim=-1, keepdim=True)
    return (probs @ v).transpose(1, 2).reshape(B, T, C)


class Gpt2Lora:
    """GPT-2 with optional PEFT-style LoRA adapters, as pure functions of named
    float64 tensors: params["h.0.attn.c_attn.weight"] is (out, in),
    adapters["h.0.attn.c_attn"] = (A (r, in), B (out, r))."""

    def __init__(self, n_layer, n_head, lora_scale=0.0, dropout=0.0, masks=None):
        self.n_layer = n_layer
        self.n_head = n_head
        self.lora_scale = lora_scale
        self.dropout = dropout
        self.masks = masks or {}  # module -> keep-mask shaped like the adapter input

    def linear(self, x, module, params, adapters):
        y = x @ params[module + ".weight"].t() + params[module + ".bias"]
        if module in adapters:
            A, B = adapters[module]
            if module in self.masks:
                x = x * self.masks[module] / (1.0 - self.dropout)
            y = y + self.lora_scale * ((x @ A.t()) @ B.t())
        return y

    def loss(self, params, adapters, inputs, targets):
        B, T = inputs.shape
        x = params["wte"][inputs] + params["wpe"][:T]
        for l in range(self.n_layer):
            h = "h.%d." % l
            a = layer_norm(x, params[h + "ln_1.weight"], params[h + "ln_1.bias"])
            qkv = self.linear(a, h + "attn.c_attn", params, adapters)
            att = causal_self_attention(qkv, self.n_head)
            x = x + self.linear(att, h + "attn.c_proj", params, adapters)
            m = layer_norm(x, params[h + "ln_2.weight"], params[h + "ln_2.bias"])
            fc = gelu_tanh(self.linear(m, h + "mlp.c_fc", params, adapters))
            x = x + self.linear(fc, h + "mlp.c_proj", params, adapters)
        x = layer_norm(x, params["ln_f.weight"], params["ln_f.bias"])
        logits = x @ params["wte"].t()  # tied head
        return F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T),
                               ignore_index=-1, reduction="mean")


def expected_param_shapes(L, C, V, maxT):
    """GPT-2's tensors and their (out, in) shapes, from the definition."""
    shapes = {"wte": (V, C), "wpe": (maxT, C), "ln_f.weight": (C,), "ln_f.bias": (C,)}
    for l in range(L):
        h = "h.%d." % l
        for ln in ("ln_1", "ln_2"):
            shapes[h + ln + ".weight"] = (C,)
            shapes[h + ln + ".bias"] = (C,)
        for module, i, o in TARGET_MODULES.values():
            shapes[h + module + ".weight"] = (o * C, i * C)
            shapes[h + module + ".bias"] = (o * C,)
    return shapes


def expected_lora_shapes(L, C, r, targets):
    shapes = {}
    for l in range(L):
        for t in targets:
            module, i, o = TARGET_MODULES[t]
            shapes["h.%d.%s.lora_A" % (l, module)] = (r, i * C)
            shapes["h.%d.%s.lora_B" % (l, module)] = (o * C, r)
    return shapes


# ------------------------------------------------------------------ a dump


def read_array(d, name, dtype, count=None):
    path = os.path.join(d, name)
    try:
        a = np.fromfile(path, dtype=dtype)
    except OSError as e:
        raise UsageError("%s: %s" % (path, e.strerror))
    if count is not None and a.size != count:
        raise UsageError("%s: %d values, expected %d" % (path, a.size, count))
    return a


def split_buffer(buf, table):
    """{name: float64 tensor} from a flat float32 buffer and its tensor table."""
    out = {}
    for t in table:
        n = int(np.prod(t["shape"]))
        if t["offset"] + n > buf.size:
            raise UsageError("tensor %s runs past the end of its buffer" % t["name"])
        piece = buf[t["offset"]:t["offset"] + n].astype(np.float64).reshape(t["shape"])
        out[t["name"]] = torch.from_numpy(piece.copy())
    return out


def buffer_size(table):
    return max(t["offset"] + int(np.prod(t["shape"])) for t in table)


class Dump:
    def __init__(self, d):
        try:
            with open(os.path.join(d, "meta.json")) as f:
                self.meta = meta = json.load(f)
        except (OSError, ValueError) as e:
            raise UsageError("%s/meta.json: %s" % (d, e))
        self.dir = d
        self.mode = meta["mode"]
        mc, lc = meta["model"], meta["lora"]
        self.L, self.NH, self.C = mc["n_layer"], mc["n_head"], mc["n_embd"]
        self.V, self.maxT = mc["vocab_size"], mc["max_seq_len"]
        self.B, self.T = meta["B"], meta["T"]
        self.lora = lc["enabled"]
        self.ptable = meta["param_tensors"]
        self.params = split_buffer(read_array(d, "params.f32", "<f4", buffer_size(self.ptable)),
                                   self.ptable)
        self.ltable = meta.get("lora_tensors", [])
        self.adapters_flat = {}
        if self.lora:
            self.adapters_flat = split_buffer(
                read_array(d, "lora.f32", "<f4", buffer_size(self.ltable)), self.ltable)
        n = self.B * self.T
        self.inputs = torch.from_numpy(
            read_array(d, "inputs.i32", "<i4", n).astype(np.int64).reshape(self.B, self.T))
        self.targets = torch.from_numpy(
            read_array(d, "targets.i32", "<i4", n).astype(np.int64).reshape(self.B, self.T))
        self.masks = {}
        if self.lora and lc["dropout"] > 0:
            raw = read_array(d, "masks.u8", "u1")
            for m in meta["dropout_masks"]:
                rows, cols = m["shape"]
                keep = raw[m["offset"]:m["offset"] + rows * cols].astype(np.float64)
                self.masks[m["module"]] = torch.from_numpy(keep.reshape(self.B, self.T, cols))
        scale = 0.0
        if self.lora:
            r = lc["r"]
            scale = lc["alpha"] / (math.sqrt(r) if lc["rslora"] else r)
        self.model = Gpt2Lora(self.L, self.NH, scale, lc["dropout"], self.masks)

    def trainable_table(self):
        return self.ltable if self.lora else self.ptable

    def adapters(self, flat=None):
        flat = self.adapters_flat if flat is None else flat
        out = {}
        for name in flat:
            if name.endswith(".lora_A"):
                module = name[:-len(".lora_A")]
                out[module] = (flat[name], flat[module + ".lora_B"])
        return out


# ------------------------------------------------------------- the checks


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = []  # (mode, subject)
        self.mode = ""

    def record(self, ok, check, subject):
        """check: the kind of comparison; subject: what was compared (a
        tensor's name for gradients and weights)."""
        if ok:
            self.passed += 1
        else:
            self.failed.append((self.mode, subject))
        return "ok" if ok else "FAIL"

    def header(self, title):
        print("\n== %s" % title)
        print("%-32s %-9s %11s %11s %10s %10s  %s" %
              ("tensor", "shape", "max|ref|", "max|diff|", "rel", "elem-worst", ""))

    def tensor(self, check, name, got, ref, tol):
        got = np.asarray(got, dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        diff = np.abs(got - ref)
        scale = float(np.abs(ref).max()) if ref.size else 0.0
        maxdiff = float(diff.max()) if ref.size else 0.0
        rel = maxdiff / scale if scale > 0 else (0.0 if maxdiff == 0 else math.inf)
        big = np.abs(ref) >= ELEM_FLOOR * scale
        elem = float((diff[big] / np.abs(ref[big])).max()) if scale > 0 and big.any() else 0.0
        ok = bool(np.isfinite(got).all()) and rel <= tol
        status = self.record(ok, check, name)
        shape = "x".join(str(s) for s in ref.shape)
        print("%-32s %-9s %11.4e %11.4e %10.2e %10.2e  %s" %
              (name, shape, scale, maxdiff, rel, elem, status))
        return rel, elem

    def scalar(self, check, name, got, ref, tol):
        rel = abs(got - ref) / abs(ref) if ref != 0 else abs(got)
        ok = math.isfinite(got) and rel <= tol
        status = self.record(ok, check, name)
        print("%-32s C %.12g  ref %.12g  rel %.2e (tol %.0e)  %s" % (name, got, ref, rel, tol,
                                                                    status))
        return rel


def check_layout(d, rep):
    """The C tensor tables against GPT-2's shapes, so the reference cannot
    silently read a buffer in some other layout."""
    want = expected_param_shapes(d.L, d.C, d.V, d.maxT)
    got = {t["name"]: tuple(t["shape"]) for t in d.ptable}
    ok = got == want
    if d.lora:
        lc = d.meta["lora"]
        want_l = expected_lora_shapes(d.L, d.C, lc["r"], lc["targets"])
        got_l = {t["name"]: tuple(t["shape"]) for t in d.ltable}
        ok = ok and got_l == want_l
    status = rep.record(ok, "layout", d.mode)
    print("layout: %d base tensors, %d LoRA tensors, shapes as GPT-2 defines them  %s" %
          (len(d.ptable), len(d.ltable), status))
    if not ok:
        for name in sorted(set(want) ^ set(got)):
            print("  only in %s: %s" % ("reference" if name in want else "dump", name))


def leaf(t, grad):
    return t.clone().requires_grad_(grad)


def check_gradients(d, rep, summary):
    """Loss and every trainable gradient of one forward+backward."""
    params = {k: leaf(v, not d.lora) for k, v in d.params.items()}
    flat = {k: leaf(v, True) for k, v in d.adapters_flat.items()}
    loss = d.model.loss(params, d.adapters(flat), d.inputs, d.targets)
    loss.backward()
    n_valid = int((d.targets >= 0).sum())
    if n_valid != d.meta["n_valid"]:
        rep.record(False, "n_valid", d.mode)
        print("n_valid: C %d, reference %d  FAIL" % (d.meta["n_valid"], n_valid))
    rel = rep.scalar("loss", "loss", d.meta["loss"], loss.item(), LOSS_TOL)
    summary["loss"] = max(summary.get("loss", 0.0), rel)

    table = d.trainable_table()
    grads = read_array(d.dir, "grads.f32", "<f4", buffer_size(table))
    c_grads = split_buffer(grads, table)
    source = flat if d.lora else params
    rep.header("%s: gradients (tol %.0e per tensor)" % (d.mode, GRAD_TOL))
    key = "lora_grad" if d.lora else "full_grad"
    for t in table:
        ref = source[t["name"]].grad
        if ref is None:
            ref = torch.zeros_like(source[t["name"]])
        rel, elem = rep.tensor("grad", t["name"], c_grads[t["name"]].numpy(), ref.numpy(),
                               GRAD_TOL)
        summary[key] = max(summary.get(key, 0.0), rel)
        summary[key + "_elem"] = max(summary.get(key + "_elem", 0.0), elem)


def schedule_lr(s, step):
    """optim.c's schedule: linear warmup over warmup_steps, then cosine from
    lr down to min_lr reached at step max_steps - 1."""
    lr, min_lr, warmup, max_steps = s["lr"], s["min_lr"], s["warmup_steps"], s["max_steps"]
    if step < warmup:
        return lr * (step + 1) / warmup
    decay_steps = max_steps - warmup
    if decay_steps <= 1:
        return lr
    frac = min((step - warmup) / (decay_steps - 1), 1.0)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * frac)) * (lr - min_lr)


def check_adamw(d, rep, summary):
    """Replays the C run's AdamW steps with torch.optim.AdamW and compares the
    loss before every step, the gradient norm, and the final weights."""
    a = d.meta["adamw"]
    params = {k: leaf(v, not d.lora) for k, v in d.params.items()}
    flat = {k: leaf(v, True) for k, v in d.adapters_flat.items()}
    trainable = flat if d.lora else params
    # decoupled weight decay on matrices only; biases and norm gains are exempt
    decay = [p for p in trainable.values() if p.dim() == 2]
    no_decay = [p for p in trainable.values() if p.dim() != 2]
    groups = [{"params": decay, "weight_decay": a["weight_decay"]}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=a["schedule"]["lr"], betas=(a["beta1"], a["beta2"]),
                            eps=a["eps"])
    all_params = list(trainable.values())
    adapters = d.adapters(flat)
    print("\n== %s: %d AdamW steps, clip %g, schedule %s (tol %.0e per step)" %
          (d.mode, a["steps"], a["clip"], a["schedule"]["kind"], TRAJ_TOL))
    for k in range(a["steps"]):
        opt.zero_grad(set_to_none=True)
        loss = d.model.loss(params, adapters, d.inputs, d.targets)
        loss.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(all_params, a["clip"]))
        lr = schedule_lr(a["schedule"], k)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        rel = rep.scalar("loss", "step %d loss" % k, a["losses"][k], loss.item(), TRAJ_TOL)
        summary["adamw"] = max(summary.get("adamw", 0.0), rel)
        rep.scalar("norm", "step %d grad norm" % k, a["grad_norms"][k], norm, NORM_TOL)
        rep.scalar("lr", "step %d lr" % k, a["lrs"][k], lr, LR_TOL)
    table = d.trainable_table()
    final = split_buffer(read_array(d.dir, "final.f32", "<f4", buffer_size(table)), table)
    rep.header("%s: weights after %d steps (tol %.0e per tensor)" % (d.mode, a["steps"],
                                                                     FINAL_TOL))
    bound = 2.0 * sum(a["lrs"])
    for t in table:
        got, ref = final[t["name"]].numpy(), trainable[t["name"]].detach().numpy()
        for label, part, tol in final_parts(t["name"], d.C):
            if tol is not None:
                rel, _ = rep.tensor("final", label, got[part], ref[part], tol)
                summary["adamw_final"] = max(summary.get("adamw_final", 0.0), rel)
                continue
            drift = float(np.abs(got[part] - ref[part]).max())
            status = rep.record(drift <= bound, "final", label)
            print("%-32s drift %.3e <= %.3e (2 sum(lr)); its gradient is zero  %s" %
                  (label, drift, bound, status))


def final_parts(name, C):
    """The pieces of a trainable tensor whose weights after the AdamW steps are
    compared: (label, index, tolerance), tolerance None for a bound only.

    The key bias of c_attn is the exception. It adds q . b_k to every score of
    a query, which the softmax cancels, so its exact gradient is zero and the
    C side's is float32 rounding noise (~1e-8). Adam divides by sqrt(v) + eps,
    so that noise moves it by a good fraction of lr per step while float64
    barely moves it. It has no effect on the model's output; it is only
    checked to stay within the distance Adam can travel."""
    everything = (name, slice(None), FINAL_TOL)
    if not name.endswith("attn.c_attn.bias"):
        return [everything]
    return [(name + "[q]", slice(0, C), FINAL_TOL), (name + "[k]", slice(C, 2 * C), None),
            (name + "[v]", slice(2 * C, 3 * C), FINAL_TOL)]


def check_dump(d, rep, summary):
    print("\n######## %s (%s)" % (d.mode, d.dir))
    rep.mode = d.mode
    check_layout(d, rep)
    if "adamw" in d.meta:
        check_adamw(d, rep, summary)
    else:
        check_gradients(d, rep, summary)


# -------------------------------------------------------------------- main


def run_dumper(dumper, mode, root):
    out = os.path.join(root, mode)
    env = dict(os.environ)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    r = subprocess.run([dumper, mode, out], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    if r.returncode != 0:
        raise UsageError("%s %s %s exited with %d" % (dumper, mode, out, r.returncode))
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dumper", help="ref_dump executable; the arguments are then modes")
    p.add_argument("--dump", action="store_true", help="the arguments are existing dump dirs")
    p.add_argument("--expect-fail", metavar="TENSOR",
                   help="pass only if the checks of TENSOR, and nothing else, fail")
    p.add_argument("items", nargs="+", metavar="MODE|DIR")
    a = p.parse_args(argv)
    if bool(a.dumper) == bool(a.dump):
        p.error("give exactly one of --dumper PATH or --dump")
    return a


def main(argv):
    a = parse_args(argv)
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    rep, summary = Report(), {}
    try:
        with tempfile.TemporaryDirectory(prefix="cu_ref_") as root:
            for item in a.items:
                d = run_dumper(a.dumper, item, root) if a.dumper else item
                check_dump(Dump(d), rep, summary)
    except UsageError as e:
        print("gpt2_lora_ref.py: %s" % e, file=sys.stderr)
        return 2

    print("\nworst agreement: " + ", ".join("%s %.2e" % kv for kv in sorted(summary.items())))
    for mode, subject in rep.failed:
        print("failed: %s: %s" % (mode, subject))
    print("%d passed, %d failed" % (rep.passed, len(rep.failed)))
    if a.expect_fail:
        subjects = {s for _, s in rep.failed}
        if subjects == {a.expect_fail}:
            print("the corruption of %s was detected, and nothing else failed" % a.expect_fail)
            return 0
        print("expected exactly %s to fail; it %s" %
              (a.expect_fail, "did not" if a.expect_fail not in subjects else
               "did, but so did: " + ", ".join(sorted(subjects - {a.expect_fail}))))
        return 1
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
