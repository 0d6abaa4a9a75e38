// layer_backward of attention.h, in a translation unit of its own: the longest to compile, so ninja builds it
// beside the other two.
#include "attention.h"

// The gradients of layer_forward: grad_x (in, F, B) (undefined unless `input_grad`), grad_weight and grad_bias
// (undefined unless `bias_grad`) in nn.Linear's order. Each thread sums its tiles' weight gradient apart.
std::vector<at::Tensor> layer_backward(at::Tensor x, at::Tensor weight, at::Tensor saved, at::Tensor alpha,
                                       at::Tensor out, at::Tensor grad_out, std::optional<at::Tensor> grad_alpha,
                                       std::optional<at::Tensor> attn_keep, std::optional<at::Tensor> head_keep,
                                       int64_t heads, double scale, bool residual, bool qkv_relu, bool input_grad,
                                       bool bias_grad) {
  check(x, "x"); check(weight, "weight"); check(saved, "saved"); check(alpha, "alpha"); check(out, "out");
  check(grad_out, "grad_out");
  if (grad_alpha) check(*grad_alpha, "grad_alpha");
  if (attn_keep) check(*attn_keep, "attn_keep");
  if (head_keep) check(*head_keep, "head_keep");
  const int64_t in = x.size(0), F = x.size(1), B = x.size(2), O = weight.size(0), parts = residual ? 4 : 3;
  const int64_t H = heads, D = O / (parts * H), T = (B + TILE - 1) / TILE, inv = (in + W - 1) / W;
  LayerArgs L{{parts, H, D, B, (float)scale, residual, qkv_relu}, F, in, parts * D, (qkv_relu ? parts : 3) * D};
  TORCH_CHECK(saved.numel() == T * H * L.kept * NV * F * W, "saved does not match x and weight");
  auto Wt = weight.view({parts, H, D, in}).transpose(0, 1).reshape({O, in}).t().contiguous();  // (in, O) cols (h, part, c)
  auto grad_x = input_grad ? at::empty({in, F, B}, x.options()) : at::Tensor();
  std::vector<vf> total_w(O * inv, splat(0.0f)), total_b(bias_grad ? O : 0, splat(0.0f));
  std::mutex lock;
  const float *px = x.data_ptr<float>(), *pw = Wt.data_ptr<float>(), *ps = saved.data_ptr<float>();
  const float *pa = alpha.data_ptr<float>(), *po = out.data_ptr<float>(), *pg = grad_out.data_ptr<float>();
  const float *pga = opt_ptr(grad_alpha), *ak = opt_ptr(attn_keep), *hk = opt_ptr(head_keep);
  float* gx = input_grad ? grad_x.data_ptr<float>() : nullptr;
  at::parallel_for(0, T, 1, [&](int64_t t0, int64_t t1) {
    std::vector<vf> gw(O * inv, splat(0.0f)), gb(bias_grad ? O : 0, splat(0.0f));
#define CALL(FV) layer_backward_tiles<FV>(L, px, pw, ps, pa, po, pg, pga, ak, hk, gx, gw.data(), \
                                          bias_grad ? gb.data() : nullptr, t0, t1)
    DISPATCH_F(F, CALL)
#undef CALL
    std::lock_guard<std::mutex> guard(lock);
    for (size_t i = 0; i < gw.size(); ++i) total_w[i] += gw[i];
    for (size_t i = 0; i < gb.size(); ++i) total_b[i] += gb[i];
  });
  auto gw_h = at::empty({O, in}, x.options());  // rows (h, part, c)
  float* g = gw_h.data_ptr<float>();
  const float* tw = reinterpret_cast<const float*>(total_w.data());
  for (int64_t r = 0; r < O; ++r)
    for (int64_t i = 0; i < in; ++i) g[r * in + i] = tw[r * inv * W + i];
  auto grad_w = gw_h.view({H, parts, D, in}).transpose(0, 1).reshape({O, in}).contiguous();
  at::Tensor grad_b;
  if (bias_grad) {
    auto gb_h = at::empty({O}, x.options());
    float* b = gb_h.data_ptr<float>();
    for (int64_t r = 0; r < O; ++r) {
      float s = 0.0f;
      for (int l = 0; l < W; ++l) s += total_b[r][l];
      b[r] = s;
    }
    grad_b = gb_h.view({H, parts, D}).transpose(0, 1).reshape({O}).contiguous();
  }
  return {grad_x, grad_w, grad_b};
}
