// The forward operators of attention.h, and the registration of all four.
#include "attention.h"

#include <torch/library.h>

std::vector<at::Tensor> attention_forward(at::Tensor p, std::optional<at::Tensor> attn_keep,
                                          std::optional<at::Tensor> head_keep, double scale, bool residual,
                                          bool qkv_relu) {
  check(p, "p");
  if (attn_keep) check(*attn_keep, "attn_keep");
  if (head_keep) check(*head_keep, "head_keep");
  const int64_t parts = p.size(0), H = p.size(1), D = p.size(2), F = p.size(3), B = p.size(4);
  TORCH_CHECK(parts == (residual ? 4 : 3), "p has ", parts, " parts; residual=", residual);
  Args a{parts, H, D, B, (float)scale, residual, qkv_relu};
  auto out = at::empty({H, D, F, B}, p.options());
  auto alpha = at::empty({H, F, F, B}, p.options());
  const float *pp = p.data_ptr<float>(), *ak = opt_ptr(attn_keep), *hk = opt_ptr(head_keep);
  float *po = out.data_ptr<float>(), *pa = alpha.data_ptr<float>();
  const int64_t tiles = (B + TILE - 1) / TILE;
  at::parallel_for(0, tiles, 1, [&](int64_t t0, int64_t t1) {
#define CALL(FV) forward_tiles<FV>(a, F, pp, ak, hk, po, pa, t0, t1)
    DISPATCH_F(F, CALL)
#undef CALL
  });
  return {out, alpha};
}

// x (in, F, B), weight (parts * H * D, in) in nn.Linear's row order (part, h, c), bias (parts * H * D) or none.
// Returns out (H, D, F, B), alpha (H, F, F, B) and, when `save`, the raw projection of every tile for
// layer_backward (T, H, kept * D, NV * F * 16; kept = 3 parts, query, key and value, or all with qkv_relu), else
// an empty tensor.
std::vector<at::Tensor> layer_forward(at::Tensor x, at::Tensor weight, std::optional<at::Tensor> bias,
                                      std::optional<at::Tensor> attn_keep, std::optional<at::Tensor> head_keep,
                                      int64_t heads, double scale, bool residual, bool qkv_relu, bool save) {
  check(x, "x"); check(weight, "weight");
  if (attn_keep) check(*attn_keep, "attn_keep");
  if (head_keep) check(*head_keep, "head_keep");
  const int64_t in = x.size(0), F = x.size(1), B = x.size(2), O = weight.size(0), parts = residual ? 4 : 3;
  TORCH_CHECK(weight.size(1) == in && O % (parts * heads) == 0, "weight (", O, ", ", weight.size(1),
              ") does not fit x with ", in, " rows, ", heads, " heads, residual=", residual);
  const int64_t H = heads, D = O / (parts * H), T = (B + TILE - 1) / TILE;
  LayerArgs L{{parts, H, D, B, (float)scale, residual, qkv_relu}, F, in, parts * D, (qkv_relu ? parts : 3) * D};
  auto Wh = weight.view({parts, H, D, in}).transpose(0, 1).contiguous();  // rows (h, part, c)
  at::Tensor bh;
  if (bias && bias->defined()) { check(*bias, "bias"); bh = bias->view({parts, H, D}).transpose(0, 1).contiguous(); }
  auto out = at::empty({H, D, F, B}, x.options());
  auto alpha = at::empty({H, F, F, B}, x.options());
  auto saved = save ? at::empty({T, H, L.kept, NV * F * W}, x.options()) : at::empty({0}, x.options());
  const float *px = x.data_ptr<float>(), *pw = Wh.data_ptr<float>(), *pb = bh.defined() ? bh.data_ptr<float>() : nullptr;
  const float *ak = opt_ptr(attn_keep), *hk = opt_ptr(head_keep);
  float *po = out.data_ptr<float>(), *pa = alpha.data_ptr<float>(), *ps = save ? saved.data_ptr<float>() : nullptr;
  at::parallel_for(0, T, 1, [&](int64_t t0, int64_t t1) {
#define CALL(FV) layer_forward_tiles<FV>(L, px, pw, pb, ak, hk, po, pa, ps, t0, t1)
    DISPATCH_F(F, CALL)
#undef CALL
  });
  return {out, alpha, saved};
}

// The operators, as torch.ops.<the build's name>.<operator>. Called from Python they run without the GIL (as torch's
// own operators do): the app calls the model from a background thread (training, correlations) while the page
// thread and Streamlit's server keep running Python. Nothing here touches a Python object; the per-thread scratch
// (thread_local) keeps concurrent calls apart (tests/test_kernel_threads.py). The namespace is the build's name
// (TORCH_EXTENSION_NAME, which carries the sources' hash), so two builds never register the same operator.
#define AUTOINT_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)
AUTOINT_LIBRARY(TORCH_EXTENSION_NAME, m) {
  m.def("attention_forward", &attention_forward);  // Eqs. 5-8, column layout: (out, alpha)
  m.def("attention_backward", &attention_backward);  // Eqs. 5-8's gradient with respect to p
  m.def("layer_forward", &layer_forward);  // Eqs. 5-8 with their projection, per batch tile: (out, alpha, saved)
  m.def("layer_backward", &layer_backward);  // layer_forward's gradient: (grad_x, grad_weight, grad_bias)
}
