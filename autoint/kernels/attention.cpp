// Eqs. 5-8 of AutoInt's interacting layer in the column layout, forward and hand-derived backward, for CPU, float32.
// The maths is autoint/model.py's `attention_forward` / `attention_backward`, line for line; this file only
// chooses the loop order (benchmarks/NOTES.md, issue 14, attempts 8-9):
//
//   * the batch is cut into tiles of TILE samples, the outermost (parallel) loop; a tile's rows of p, alpha,
//     out and grad_out are first copied into contiguous local buffers ("packed"), so the compute never touches
//     the global rows, which are B floats apart (4 KB at B=1024: every row maps to the same L1 set and to 1/64
//     of L2's sets, which is what made inductor's loop nest memory-bound);
//   * inside a tile, 16 samples are one vector (GCC vector extension, AVX-512 under -march=native), and the
//     d' channel is a loop OUTSIDE the vector: each contraction keeps the F outputs of one field in registers
//     (F is a template parameter, 1..16) and streams the channel through them.
//
// Shapes: P = 3 or 4 parts (query, key, value, residual), H heads, D = d', F fields, B batch.
//   p (P, H, D, F, B); alpha, attn_keep, grad_alpha (H, F, F, B); out, grad_out, head_keep (H, D, F, B).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cstring>
#include <optional>
#include <vector>

namespace {

typedef float vf __attribute__((vector_size(64)));  // 16 floats
typedef int vi __attribute__((vector_size(64)));
constexpr int W = 16;          // samples a vector
constexpr int TILE = 64;       // samples a tile
constexpr int NV = TILE / W;   // vectors a tile

inline vf splat(float x) { return vf{} + x; }
inline vf vmax(vf a, vf b) { return a > b ? a : b; }
inline vf relu(vf a) { return a > 0.0f ? a : splat(0.0f); }

// exp(x) for the softmax (x <= 0 there): Cephes' expf polynomial, about 1 ulp, vectorised.
inline vf vexp(vf x) {
  x = vmax(x, splat(-87.3f));
  x = x < 88.3f ? x : splat(88.3f);
  vf t = x * 1.44269504088896341f + 12582912.0f;  // round(x / ln 2) in the low mantissa bits
  vf n = t - 12582912.0f;
  vf r = x - n * 0.693359375f + n * 2.12194440e-4f;
  vf q = splat(1.9875691500e-4f);
  q = q * r + 1.3981999507e-3f;
  q = q * r + 8.3334519073e-3f;
  q = q * r + 4.1665795894e-2f;
  q = q * r + 1.6666665459e-1f;
  q = q * r + 5.0000001201e-1f;
  q = q * r * r + r + 1.0f;
  vi e = (__builtin_convertvector(n, vi) + 127) << 23;
  return q * (vf)e;
}

// Copy `rows` global rows (row i starts at src + i * B + b0) into packed[j * rows + i] (vector j of the tile),
// zero-padding past n samples.
constexpr int64_t AHEAD = 12;  // rows prefetched ahead: the rows are in different pages, which the hardware
                               // prefetchers do not cross

inline void pack(vf* packed, const float* src, int64_t rows, int64_t B, int64_t b0, int n) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* s = src + i * B + b0;
    if (i + AHEAD < rows) {
      const float* next = s + AHEAD * B;
      for (int j = 0; j < NV; ++j) __builtin_prefetch(next + j * W, 0, 3);
    }
    if (n == TILE) {
      for (int j = 0; j < NV; ++j) std::memcpy(&packed[j * rows + i], s + j * W, sizeof(vf));
    } else {
      float tmp[TILE] = {0};
      std::memcpy(tmp, s, n * sizeof(float));
      for (int j = 0; j < NV; ++j) std::memcpy(&packed[j * rows + i], tmp + j * W, sizeof(vf));
    }
  }
}

inline void unpack(float* dst, const vf* packed, int64_t rows, int64_t B, int64_t b0, int n) {
  for (int64_t i = 0; i < rows; ++i) {
    float* d = dst + i * B + b0;
    if (i + AHEAD < rows) {
      float* next = d + AHEAD * B;
      for (int j = 0; j < NV; ++j) __builtin_prefetch(next + j * W, 1, 3);
    }
    if (n == TILE) {
      for (int j = 0; j < NV; ++j) std::memcpy(d + j * W, &packed[j * rows + i], sizeof(vf));
    } else {
      float tmp[TILE];
      for (int j = 0; j < NV; ++j) std::memcpy(tmp + j * W, &packed[j * rows + i], sizeof(vf));
      std::memcpy(d, tmp, n * sizeof(float));
    }
  }
}

struct Args {
  int64_t parts, H, D, B;
  float scale;
  bool residual, qkv_relu;
};

template <int F>
void forward_tiles(const Args& a, const float* p, const float* attn_keep, const float* head_keep, float* out,
                   float* alpha, int64_t t0, int64_t t1) {
  const int64_t D = a.D, H = a.H, B = a.B, FF = F * F, DF = D * F;
  std::vector<vf> q(NV * DF), k(NV * DF), v(NV * DF), res(a.residual ? NV * DF : 0), hk(head_keep ? NV * DF : 0);
  std::vector<vf> o(NV * DF), al(NV * FF), ak(attn_keep ? NV * FF : 0), w(FF);
  for (int64_t tile = t0; tile < t1; ++tile) {
    const int64_t b0 = tile * TILE;
    const int n = (int)std::min<int64_t>(TILE, B - b0);
    for (int64_t h = 0; h < H; ++h) {
      const int64_t part = H * DF * B;  // floats between parts of p
      const float* ph = p + h * DF * B;
      pack(q.data(), ph, DF, B, b0, n);
      pack(k.data(), ph + part, DF, B, b0, n);
      pack(v.data(), ph + 2 * part, DF, B, b0, n);
      if (a.residual) pack(res.data(), ph + 3 * part, DF, B, b0, n);
      if (head_keep) pack(hk.data(), head_keep + h * DF * B, DF, B, b0, n);
      if (attn_keep) pack(ak.data(), attn_keep + h * FF * B, FF, B, b0, n);
      if (a.qkv_relu) {
        for (auto& x : q) x = relu(x);
        for (auto& x : k) x = relu(x);
        for (auto& x : v) x = relu(x);
        for (auto& x : res) x = relu(x);
      }
      for (int j = 0; j < NV; ++j) {
        const vf *Q = &q[j * DF], *K = &k[j * DF], *V = &v[j * DF];
        vf* A = &al[j * FF];
        for (int m = 0; m < F; ++m) {  // Eq. 5: scores of field m against every k, then the softmax over k
          vf acc[F];
#pragma GCC unroll 16
          for (int kk = 0; kk < F; ++kk) acc[kk] = splat(0.0f);
          for (int64_t c = 0; c < D; ++c) {
            const vf qm = Q[c * F + m];
            const vf* Kc = K + c * F;
#pragma GCC unroll 16
            for (int kk = 0; kk < F; ++kk) acc[kk] += qm * Kc[kk];
          }
          vf mx = acc[0] * a.scale;
#pragma GCC unroll 16
          for (int kk = 0; kk < F; ++kk) { acc[kk] *= a.scale; mx = vmax(mx, acc[kk]); }
          vf sum = splat(0.0f);
#pragma GCC unroll 16
          for (int kk = 0; kk < F; ++kk) { acc[kk] = vexp(acc[kk] - mx); sum += acc[kk]; }
          const vf inv = 1.0f / sum;
#pragma GCC unroll 16
          for (int kk = 0; kk < F; ++kk) {
            const vf alpha_mk = acc[kk] * inv;
            A[m * F + kk] = alpha_mk;
            w[m * F + kk] = attn_keep ? alpha_mk * ak[j * FF + m * F + kk] : alpha_mk;
          }
        }
        vf* O = &o[j * DF];
        for (int64_t c = 0; c < D; ++c) {  // Eq. 6: sum_k alpha_mk v_k; Eq. 8: + W_Res e_m, ReLU
          vf vk[F];
#pragma GCC unroll 16
          for (int kk = 0; kk < F; ++kk) vk[kk] = V[c * F + kk];
#pragma GCC unroll 16
          for (int m = 0; m < F; ++m) {
            vf acc = splat(0.0f);
#pragma GCC unroll 16
            for (int kk = 0; kk < F; ++kk) acc += w[m * F + kk] * vk[kk];
            if (head_keep) acc *= hk[j * DF + c * F + m];
            if (a.residual) acc += res[j * DF + c * F + m];
            O[c * F + m] = relu(acc);
          }
        }
      }
      unpack(out + h * DF * B, o.data(), DF, B, b0, n);
      unpack(alpha + h * FF * B, al.data(), FF, B, b0, n);
    }
  }
}

template <int F>
void backward_tiles(const Args& a, const float* p, const float* alpha, const float* out, const float* grad_out,
                    const float* grad_alpha, const float* attn_keep, const float* head_keep, float* grad_p,
                    int64_t t0, int64_t t1) {
  const int64_t D = a.D, H = a.H, B = a.B, FF = F * F, DF = D * F;
  const int64_t part = H * DF * B;
  std::vector<vf> q(NV * DF), k(NV * DF), v(NV * DF), pres(a.qkv_relu && a.residual ? NV * DF : 0);
  std::vector<vf> o(NV * DF), go(NV * DF), hk(head_keep ? NV * DF : 0), gc(DF);
  std::vector<vf> al(NV * FF), ak(attn_keep ? NV * FF : 0), ga(grad_alpha ? NV * FF : 0), w(FF), gs(FF);
  std::vector<vf> gq(NV * DF), gk(NV * DF), gv(NV * DF), gr(a.residual ? NV * DF : 0);
  std::vector<vf> rq, rk, rv;  // ReLU masks of the raw projection (qkv_relu)
  if (a.qkv_relu) { rq.resize(NV * DF); rk.resize(NV * DF); rv.resize(NV * DF); }
  for (int64_t tile = t0; tile < t1; ++tile) {
    const int64_t b0 = tile * TILE;
    const int n = (int)std::min<int64_t>(TILE, B - b0);
    for (int64_t h = 0; h < H; ++h) {
      const float* ph = p + h * DF * B;
      pack(q.data(), ph, DF, B, b0, n);
      pack(k.data(), ph + part, DF, B, b0, n);
      pack(v.data(), ph + 2 * part, DF, B, b0, n);
      if (a.qkv_relu) {
        if (a.residual) pack(pres.data(), ph + 3 * part, DF, B, b0, n);
        rq = q; rk = k; rv = v;  // raw values, for the mask of the ReLU's gradient
        for (auto& x : q) x = relu(x);
        for (auto& x : k) x = relu(x);
        for (auto& x : v) x = relu(x);
      }
      pack(o.data(), out + h * DF * B, DF, B, b0, n);
      pack(go.data(), grad_out + h * DF * B, DF, B, b0, n);
      if (head_keep) pack(hk.data(), head_keep + h * DF * B, DF, B, b0, n);
      pack(al.data(), alpha + h * FF * B, FF, B, b0, n);
      if (attn_keep) pack(ak.data(), attn_keep + h * FF * B, FF, B, b0, n);
      if (grad_alpha) pack(ga.data(), grad_alpha + h * FF * B, FF, B, b0, n);
      for (int j = 0; j < NV; ++j) {
        const vf *Q = &q[j * DF], *K = &k[j * DF], *V = &v[j * DF], *A = &al[j * FF];
        // Through Eq. 8's ReLU (and the head dropout); grad_weights_mk = sum_c grad_combined_cm v_ck.
        for (int m = 0; m < F; ++m) {
          vf acc[F];
#pragma GCC unroll 16
          for (int kk = 0; kk < F; ++kk) acc[kk] = splat(0.0f);
          for (int64_t c = 0; c < D; ++c) {
            const int64_t i = j * DF + c * F + m;
            const vf g = o[i] > 0.0f ? go[i] : splat(0.0f);
            if (a.residual) gr[i] = a.qkv_relu ? (pres[i] > 0.0f ? g : splat(0.0f)) : g;
            const vf g2 = head_keep ? g * hk[i] : g;
            gc[c * F + m] = g2;
            const vf* Vc = V + c * F;
#pragma GCC unroll 16
            for (int kk = 0; kk < F; ++kk) acc[kk] += g2 * Vc[kk];
          }
          // The softmax's gradient: grad_scores = alpha (gat - sum_k alpha gat) scale.
          vf gat[F];
          vf dot = splat(0.0f);
#pragma GCC unroll 16
          for (int kk = 0; kk < F; ++kk) {
            const int64_t i = m * F + kk;
            gat[kk] = attn_keep ? acc[kk] * ak[j * FF + i] : acc[kk];
            if (grad_alpha) gat[kk] += ga[j * FF + i];
            dot += A[i] * gat[kk];
            w[i] = attn_keep ? A[i] * ak[j * FF + i] : A[i];
          }
#pragma GCC unroll 16
          for (int kk = 0; kk < F; ++kk) gs[m * F + kk] = A[m * F + kk] * (gat[kk] - dot) * a.scale;
        }
        // grad_value_ck = sum_m w_mk gc_cm; grad_key_ck = sum_m gs_mk q_cm; grad_query_cm = sum_k gs_mk k_ck.
        for (int64_t c = 0; c < D; ++c) {
          vf accv[F], acck[F];
#pragma GCC unroll 16
          for (int kk = 0; kk < F; ++kk) { accv[kk] = splat(0.0f); acck[kk] = splat(0.0f); }
#pragma GCC unroll 16
          for (int m = 0; m < F; ++m) {
            const vf g = gc[c * F + m], qm = Q[c * F + m];
#pragma GCC unroll 16
            for (int kk = 0; kk < F; ++kk) { accv[kk] += w[m * F + kk] * g; acck[kk] += gs[m * F + kk] * qm; }
          }
          const vf* Kc = K + c * F;
#pragma GCC unroll 16
          for (int m = 0; m < F; ++m) {
            vf acc = splat(0.0f);
#pragma GCC unroll 16
            for (int kk = 0; kk < F; ++kk) acc += gs[m * F + kk] * Kc[kk];
            const int64_t i = j * DF + c * F + m;
            gq[i] = a.qkv_relu ? (rq[i] > 0.0f ? acc : splat(0.0f)) : acc;
          }
#pragma GCC unroll 16
          for (int kk = 0; kk < F; ++kk) {
            const int64_t i = j * DF + c * F + kk;
            gv[i] = a.qkv_relu ? (rv[i] > 0.0f ? accv[kk] : splat(0.0f)) : accv[kk];
            gk[i] = a.qkv_relu ? (rk[i] > 0.0f ? acck[kk] : splat(0.0f)) : acck[kk];
          }
        }
      }
      float* gh = grad_p + h * DF * B;
      unpack(gh, gq.data(), DF, B, b0, n);
      unpack(gh + part, gk.data(), DF, B, b0, n);
      unpack(gh + 2 * part, gv.data(), DF, B, b0, n);
      if (a.residual) unpack(gh + 3 * part, gr.data(), DF, B, b0, n);
    }
  }
}

const float* opt_ptr(const std::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? t->data_ptr<float>() : nullptr;
}

void check(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(),
              name, " must be a contiguous float32 CPU tensor");
}

#define DISPATCH_F(F_RUNTIME, CALL)                                                      \
  switch (F_RUNTIME) {                                                                   \
    case 1: CALL(1); break; case 2: CALL(2); break; case 3: CALL(3); break;              \
    case 4: CALL(4); break; case 5: CALL(5); break; case 6: CALL(6); break;              \
    case 7: CALL(7); break; case 8: CALL(8); break; case 9: CALL(9); break;              \
    case 10: CALL(10); break; case 11: CALL(11); break; case 12: CALL(12); break;        \
    case 13: CALL(13); break; case 14: CALL(14); break; case 15: CALL(15); break;        \
    case 16: CALL(16); break;                                                            \
    default: TORCH_CHECK(false, "the C++ attention kernel takes 1 to 16 fields, got ", F_RUNTIME); \
  }

}  // namespace

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
#define CALL(FV) forward_tiles<FV>(a, pp, ak, hk, po, pa, t0, t1)
    DISPATCH_F(F, CALL)
#undef CALL
  });
  return {out, alpha};
}

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
#define CALL(FV) backward_tiles<FV>(a, pp, pa, po, pg, pga, ak, hk, gp, t0, t1)
    DISPATCH_F(F, CALL)
#undef CALL
  });
  return grad_p;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("attention_forward", &attention_forward, "Eqs. 5-8, column layout: (out, alpha)");
  m.def("attention_backward", &attention_backward, "Eqs. 5-8's gradient with respect to p");
}
