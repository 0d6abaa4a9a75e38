// attention_backward of attention.h (layer_backward, the heavier, compiles beside it: layer_backward.cpp).
#include "attention.h"

at::Tensor attention_backward(at::Tensor p, at::Tensor alpha, at::Tensor out, at::Tensor grad_out,
                              std::optional<at::Tensor> grad_alpha, std::optional<at::Tensor> attn_keep,
                              std::optional<at::Tensor> head_keep, double scale, bool residual, bool qkv_relu) {
  check(p, "p"); check(alpha, "alpha"); check(out, "out"); check(grad_out, "grad_out");
  if (grad_alpha) check(*grad_alpha, "grad_alpha");
  if (attn_keep) check(*attn_keep, "attn_keep");
  if (head_keep) check(*head_keep, "head_keep");
  const int64_t parts = p.size(0), H = p.size(1), D = p.size(2), F = p.size(3), B = p.size(4);
  TORCH_CHECK(parts == (residual ? 4 : 3), "p has ", parts, " parts; residual=", residual);
  Args a{parts, H, D, B, (float)scale, residual, qkv_relu};
  auto grad_p = at::empty_like(p);
  const float *pp = p.data_ptr<float>(), *pa = alpha.data_ptr<float>(), *po = out.data_ptr<float>();
  const float *pg = grad_out.data_ptr<float>(), *pga = opt_ptr(grad_alpha), *ak = opt_ptr(attn_keep);
  const float* hk = opt_ptr(head_keep);
  float* gp = grad_p.data_ptr<float>();
  const int64_t tiles = (B + TILE - 1) / TILE;
  at::parallel_for(0, tiles, 1, [&](int64_t t0, int64_t t1) {
#define CALL(FV) backward_tiles<FV>(a, F, pp, pa, po, pg, pga, ak, hk, gp, t0, t1)
    DISPATCH_F(F, CALL)
#undef CALL
  });
  return grad_p;
}
