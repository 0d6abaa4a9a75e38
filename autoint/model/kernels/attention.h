// Eqs. 5-8 of AutoInt's interacting layer in the column layout, forward and hand-derived backward, for CPU, float32.
// The maths is autoint/model/autoint.py's `attention_forward` / `attention_backward`, line for line; this file only
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
// Two pairs of operators share that maths (forward_core / backward_core):
//   * layer_forward / layer_backward (the CPU default, issue 14 attempt 12): the layer's projection too. For each
//     tile, in the thread that owns it, W (P*H*D, in) times the tile's x (in, F * TILE) with a register-blocked
//     micro-kernel (`gemm`), then the attention on that tile while it is in L2; backward: the tile's grad_p, then
//     its grad_x and the thread's partial grad_W (summed at the end). So the projection and the attention
//     partition the batch the same way, and p and grad_p never go through memory between them.
//   * attention_forward / attention_backward (attempt 9): the attention alone, on a p that torch.mm projected.
//
// Shapes: P = 3 or 4 parts (query, key, value, residual), H heads, D = d', F fields, B batch.
//   p (P, H, D, F, B); alpha, attn_keep, grad_alpha (H, F, F, B); out, grad_out, head_keep (H, D, F, B);
//   x, grad_x (in, F, B); weight (P*H*D, in) in nn.Linear's row order.
// Only the headers it uses (parsed in ~4 s, against ~15 s for <torch/extension.h>, the whole C++ frontend), and the
// operators registered with the dispatcher (TORCH_LIBRARY), not as a pybind11 module; the forward and backward
// operators are three translation units that compile side by side (attention_forward.cpp, attention_backward.cpp,
// layer_backward.cpp).
// The first build is the one-time cost of a fresh checkout's first start and of every CI run.
#pragma once
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/Exception.h>

#include <cstring>
#include <cstdint>
#ifdef __AVX512F__
#include <immintrin.h>
#endif
#include <mutex>
#include <optional>
#include <vector>

namespace {

typedef float vf __attribute__((vector_size(64)));  // 16 floats
typedef int vi __attribute__((vector_size(64)));
constexpr int W = 16;          // samples a vector
constexpr int TILE = 64;       // samples a tile
constexpr int NV = TILE / W;   // vectors a tile

// A broadcast (vbroadcastss), not `vf{} + x`: 0 + x cannot fold away under IEEE rules (-0), and the micro-kernel's
// inner loop would pay a scalar add for every element of A.
inline vf splat(float x) { return vf{x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }
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

// The maths of one head on one vector of 16 samples. Every (channel c or field m, field) array is addressed as
// X[r * s + f]: `s` vectors between its rows (F in the packed layout of attention_forward/backward, NV * F in
// the tile layout of layer_forward/backward), the caller's pointer already at the vector.
template <int F>
inline void forward_core(const Args& a, int64_t s, const vf* Q, const vf* K, const vf* V, const vf* R,
                         const vf* HK, const vf* AK, vf* O, vf* A, vf* w) {
  const int64_t D = a.D;
  for (int m = 0; m < F; ++m) {  // Eq. 5: scores of field m against every k, then the softmax over k
    vf acc[F];
#pragma GCC unroll 16
    for (int kk = 0; kk < F; ++kk) acc[kk] = splat(0.0f);
    for (int64_t c = 0; c < D; ++c) {
      const vf qm = Q[c * s + m];
      const vf* Kc = K + c * s;
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
      A[m * s + kk] = alpha_mk;
      w[m * F + kk] = AK ? alpha_mk * AK[m * s + kk] : alpha_mk;
    }
  }
  for (int64_t c = 0; c < D; ++c) {  // Eq. 6: sum_k alpha_mk v_k; Eq. 8: + W_Res e_m, ReLU
    vf vk[F];
#pragma GCC unroll 16
    for (int kk = 0; kk < F; ++kk) vk[kk] = V[c * s + kk];
#pragma GCC unroll 16
    for (int m = 0; m < F; ++m) {
      vf acc = splat(0.0f);
#pragma GCC unroll 16
      for (int kk = 0; kk < F; ++kk) acc += w[m * F + kk] * vk[kk];
      if (HK) acc *= HK[c * s + m];
      if (R) acc += R[c * s + m];
      O[c * s + m] = relu(acc);
    }
  }
}

// The gradient of forward_core. Q, K, V after the ReLU of qkv_relu; RQ, RK, RV, RR the raw projection (its
// ReLU's masks; null without qkv_relu; RR null without the residual too); GR null without the residual.
// Scratch: gc (D * F), w and gs (F * F).
template <int F>
inline void backward_core(const Args& a, int64_t s, const vf* Q, const vf* K, const vf* V, const vf* RQ,
                          const vf* RK, const vf* RV, const vf* RR, const vf* O, const vf* GO, const vf* HK,
                          const vf* A, const vf* AK, const vf* GA, vf* GQ, vf* GK, vf* GV, vf* GR, vf* gc, vf* w,
                          vf* gs) {
  const int64_t D = a.D;
  // Through Eq. 8's ReLU (and the head dropout); grad_weights_mk = sum_c grad_combined_cm v_ck.
  for (int m = 0; m < F; ++m) {
    vf acc[F];
#pragma GCC unroll 16
    for (int kk = 0; kk < F; ++kk) acc[kk] = splat(0.0f);
    for (int64_t c = 0; c < D; ++c) {
      const int64_t i = c * s + m;
      const vf g = O[i] > 0.0f ? GO[i] : splat(0.0f);
      if (GR) GR[i] = RR ? (RR[i] > 0.0f ? g : splat(0.0f)) : g;
      const vf g2 = HK ? g * HK[i] : g;
      gc[c * F + m] = g2;
      const vf* Vc = V + c * s;
#pragma GCC unroll 16
      for (int kk = 0; kk < F; ++kk) acc[kk] += g2 * Vc[kk];
    }
    // The softmax's gradient: grad_scores = alpha (gat - sum_k alpha gat) scale.
    vf gat[F];
    vf dot = splat(0.0f);
#pragma GCC unroll 16
    for (int kk = 0; kk < F; ++kk) {
      const int64_t i = m * s + kk;
      gat[kk] = AK ? acc[kk] * AK[i] : acc[kk];
      if (GA) gat[kk] += GA[i];
      dot += A[i] * gat[kk];
      w[m * F + kk] = AK ? A[i] * AK[i] : A[i];
    }
#pragma GCC unroll 16
    for (int kk = 0; kk < F; ++kk) gs[m * F + kk] = A[m * s + kk] * (gat[kk] - dot) * a.scale;
  }
  // grad_value_ck = sum_m w_mk gc_cm; grad_key_ck = sum_m gs_mk q_cm; grad_query_cm = sum_k gs_mk k_ck.
  for (int64_t c = 0; c < D; ++c) {
    vf accv[F], acck[F];
#pragma GCC unroll 16
    for (int kk = 0; kk < F; ++kk) { accv[kk] = splat(0.0f); acck[kk] = splat(0.0f); }
#pragma GCC unroll 16
    for (int m = 0; m < F; ++m) {
      const vf g = gc[c * F + m], qm = Q[c * s + m];
#pragma GCC unroll 16
      for (int kk = 0; kk < F; ++kk) { accv[kk] += w[m * F + kk] * g; acck[kk] += gs[m * F + kk] * qm; }
    }
    const vf* Kc = K + c * s;
#pragma GCC unroll 16
    for (int m = 0; m < F; ++m) {
      vf acc = splat(0.0f);
#pragma GCC unroll 16
      for (int kk = 0; kk < F; ++kk) acc += gs[m * F + kk] * Kc[kk];
      const int64_t i = c * s + m;
      GQ[i] = RQ ? (RQ[i] > 0.0f ? acc : splat(0.0f)) : acc;
    }
#pragma GCC unroll 16
    for (int kk = 0; kk < F; ++kk) {
      const int64_t i = c * s + kk;
      GV[i] = RV ? (RV[i] > 0.0f ? accv[kk] : splat(0.0f)) : accv[kk];
      GK[i] = RK ? (RK[i] > 0.0f ? acck[kk] : splat(0.0f)) : acck[kk];
    }
  }
}

// ---- Wide schemas (more than 16 fields; Criteo 39, Avazu 22+) -----------------------------------------------
// forward_core / backward_core keep F vectors per contraction in registers; past 16 fields (AVX-512 has 32
// registers) they would spill on every multiply-add. The *_wide cores take F at run time and block every
// contraction over k in chunks of KB = 16 fields (the last chunk KN = F % 16, a template): a chunk's
// accumulators stay in registers and the partial sums go through the (L1-resident) output row between chunks.
// The softmax takes two passes over the stored scores (max, then exp and sum) and one to normalise. The sums
// run in the same order over k as in forward_core / backward_core.
constexpr int KB = 16;

// out[kk] = sum_c Q[c * sq] K[c * sk + kk] for kk < KN (Q at field m, K at the chunk's first field).
template <int KN>
inline void dot_chunk(int64_t D, int64_t sq, int64_t sk, const vf* Q, const vf* K, vf* out) {
  vf acc[KN];
#pragma GCC unroll 16
  for (int kk = 0; kk < KN; ++kk) acc[kk] = splat(0.0f);
  for (int64_t c = 0; c < D; ++c) {
    const vf q = Q[c * sq];
    const vf* Kc = K + c * sk;
#pragma GCC unroll 16
    for (int kk = 0; kk < KN; ++kk) acc[kk] += q * Kc[kk];
  }
#pragma GCC unroll 16
  for (int kk = 0; kk < KN; ++kk) out[kk] = acc[kk];
}

// row[m] (+)= sum_{kk < KN} M[m * F + kk] V[kk] for m < F: V (one channel's chunk of fields) in registers.
template <int KN>
inline void mix_chunk(int64_t F, const vf* V, const vf* M, vf* row, bool first) {
  vf v[KN];
#pragma GCC unroll 16
  for (int kk = 0; kk < KN; ++kk) v[kk] = V[kk];
#pragma GCC unroll 2
  for (int64_t m = 0; m < F; ++m) {
    vf acc = first ? splat(0.0f) : row[m];
    const vf* Mm = M + m * F;
#pragma GCC unroll 16
    for (int kk = 0; kk < KN; ++kk) acc += Mm[kk] * v[kk];
    row[m] = acc;
  }
}

// out[kk] = sum_m M[m * F + kk] G[m * g] for kk < KN (G one channel's row, at stride g).
template <int KN>
inline void gather_chunk(int64_t F, const vf* M, const vf* G, int64_t g, vf* out) {
  vf acc[KN];
#pragma GCC unroll 16
  for (int kk = 0; kk < KN; ++kk) acc[kk] = splat(0.0f);
  for (int64_t m = 0; m < F; ++m) {
    const vf x = G[m * g];
    const vf* Mm = M + m * F;
#pragma GCC unroll 16
    for (int kk = 0; kk < KN; ++kk) acc[kk] += Mm[kk] * x;
  }
#pragma GCC unroll 16
  for (int kk = 0; kk < KN; ++kk) out[kk] = acc[kk];
}

// Each chunk of fields, the last one KN = F % KB wide (a switch over the instantiations).
#define WIDE_CHUNKS(F, FN, ...)                                                                    \
  for (int64_t k0 = 0; k0 < (F); k0 += KB) {                                                       \
    switch ((int)std::min<int64_t>(KB, (F) - k0)) {                                                \
      case 16: FN<16>(__VA_ARGS__); break; case 15: FN<15>(__VA_ARGS__); break;                   \
      case 14: FN<14>(__VA_ARGS__); break; case 13: FN<13>(__VA_ARGS__); break;                   \
      case 12: FN<12>(__VA_ARGS__); break; case 11: FN<11>(__VA_ARGS__); break;                   \
      case 10: FN<10>(__VA_ARGS__); break; case 9: FN<9>(__VA_ARGS__); break;                     \
      case 8: FN<8>(__VA_ARGS__); break; case 7: FN<7>(__VA_ARGS__); break;                       \
      case 6: FN<6>(__VA_ARGS__); break; case 5: FN<5>(__VA_ARGS__); break;                       \
      case 4: FN<4>(__VA_ARGS__); break; case 3: FN<3>(__VA_ARGS__); break;                       \
      case 2: FN<2>(__VA_ARGS__); break; default: FN<1>(__VA_ARGS__); break;                      \
    }                                                                                              \
  }

// forward_core for any F (scratch w: F * F).
inline void forward_core_wide(const Args& a, int64_t F, int64_t s, const vf* Q, const vf* K, const vf* V,
                              const vf* R, const vf* HK, const vf* AK, vf* O, vf* A, vf* w) {
  const int64_t D = a.D;
  for (int64_t m = 0; m < F; ++m) {  // Eq. 5: the scores into alpha's row, then the softmax over it
    vf* Am = A + m * s;
    WIDE_CHUNKS(F, dot_chunk, D, s, s, Q + m, K + k0, Am + k0)
    vf mx = Am[0] * a.scale;
    for (int64_t kk = 0; kk < F; ++kk) { Am[kk] *= a.scale; mx = vmax(mx, Am[kk]); }
    vf sum = splat(0.0f);
    for (int64_t kk = 0; kk < F; ++kk) { Am[kk] = vexp(Am[kk] - mx); sum += Am[kk]; }
    const vf inv = 1.0f / sum;
    for (int64_t kk = 0; kk < F; ++kk) {
      const vf alpha_mk = Am[kk] * inv;
      Am[kk] = alpha_mk;
      w[m * F + kk] = AK ? alpha_mk * AK[m * s + kk] : alpha_mk;
    }
  }
  for (int64_t c = 0; c < D; ++c) {  // Eq. 6: sum_k alpha_mk v_k; Eq. 8: + W_Res e_m, ReLU
    vf* Oc = O + c * s;
    WIDE_CHUNKS(F, mix_chunk, F, V + c * s + k0, w + k0, Oc, k0 == 0)
    for (int64_t m = 0; m < F; ++m) {
      vf acc = Oc[m];
      if (HK) acc *= HK[c * s + m];
      if (R) acc += R[c * s + m];
      Oc[m] = relu(acc);
    }
  }
}

// backward_core for any F (scratch gc: D * F, w and gs: F * F).
inline void backward_core_wide(const Args& a, int64_t F, int64_t s, const vf* Q, const vf* K, const vf* V,
                               const vf* RQ, const vf* RK, const vf* RV, const vf* RR, const vf* O, const vf* GO,
                               const vf* HK, const vf* A, const vf* AK, const vf* GA, vf* GQ, vf* GK, vf* GV,
                               vf* GR, vf* gc, vf* w, vf* gs) {
  const int64_t D = a.D;
  for (int64_t c = 0; c < D; ++c) {  // through Eq. 8's ReLU (and the head dropout)
    for (int64_t m = 0; m < F; ++m) {
      const int64_t i = c * s + m;
      const vf g = O[i] > 0.0f ? GO[i] : splat(0.0f);
      if (GR) GR[i] = RR ? (RR[i] > 0.0f ? g : splat(0.0f)) : g;
      gc[c * F + m] = HK ? g * HK[i] : g;
    }
  }
  for (int64_t m = 0; m < F; ++m) {
    vf* gm = gs + m * F;  // grad_weights_mk = sum_c gc_cm v_ck, then the softmax's gradient in place
    WIDE_CHUNKS(F, dot_chunk, D, F, s, gc + m, V + k0, gm + k0)
    vf dot = splat(0.0f);
    for (int64_t kk = 0; kk < F; ++kk) {
      const int64_t i = m * s + kk;
      vf gat = AK ? gm[kk] * AK[i] : gm[kk];
      if (GA) gat += GA[i];
      dot += A[i] * gat;
      gm[kk] = gat;
      w[m * F + kk] = AK ? A[i] * AK[i] : A[i];
    }
    for (int64_t kk = 0; kk < F; ++kk) gm[kk] = A[m * s + kk] * (gm[kk] - dot) * a.scale;
  }
  // grad_value_ck = sum_m w_mk gc_cm; grad_key_ck = sum_m gs_mk q_cm; grad_query_cm = sum_k gs_mk k_ck.
  for (int64_t c = 0; c < D; ++c) {
    vf *GVc = GV + c * s, *GKc = GK + c * s, *GQc = GQ + c * s;
    WIDE_CHUNKS(F, gather_chunk, F, w + k0, gc + c * F, 1, GVc + k0)
    WIDE_CHUNKS(F, gather_chunk, F, gs + k0, Q + c * s, 1, GKc + k0)
    WIDE_CHUNKS(F, mix_chunk, F, K + c * s + k0, gs + k0, GQc, k0 == 0)
    for (int64_t kk = 0; kk < F; ++kk) {
      const int64_t i = c * s + kk;
      if (RQ) GQ[i] = RQ[i] > 0.0f ? GQ[i] : splat(0.0f);
      if (RV) GV[i] = RV[i] > 0.0f ? GV[i] : splat(0.0f);
      if (RK) GK[i] = RK[i] > 0.0f ? GK[i] : splat(0.0f);
    }
  }
}

// The cores as the tile loops call them: FT the compile-time field count (1..16), or 0 for the wide cores.
template <int FT>
inline void forward_core_any(const Args& a, int64_t F, int64_t s, const vf* Q, const vf* K, const vf* V,
                             const vf* R, const vf* HK, const vf* AK, vf* O, vf* A, vf* w) {
  if constexpr (FT > 0) forward_core<FT>(a, s, Q, K, V, R, HK, AK, O, A, w);
  else forward_core_wide(a, F, s, Q, K, V, R, HK, AK, O, A, w);
}

template <int FT>
inline void backward_core_any(const Args& a, int64_t F, int64_t s, const vf* Q, const vf* K, const vf* V,
                              const vf* RQ, const vf* RK, const vf* RV, const vf* RR, const vf* O, const vf* GO,
                              const vf* HK, const vf* A, const vf* AK, const vf* GA, vf* GQ, vf* GK, vf* GV,
                              vf* GR, vf* gc, vf* w, vf* gs) {
  if constexpr (FT > 0)
    backward_core<FT>(a, s, Q, K, V, RQ, RK, RV, RR, O, GO, HK, A, AK, GA, GQ, GK, GV, GR, gc, w, gs);
  else
    backward_core_wide(a, F, s, Q, K, V, RQ, RK, RV, RR, O, GO, HK, A, AK, GA, GQ, GK, GV, GR, gc, w, gs);
}

template <int FT>
void forward_tiles(const Args& a, int64_t Fr, const float* p, const float* attn_keep, const float* head_keep,
                   float* out, float* alpha, int64_t t0, int64_t t1) {
  const int64_t F = FT > 0 ? FT : Fr;
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
      for (int j = 0; j < NV; ++j)
        forward_core_any<FT>(a, F, F, &q[j * DF], &k[j * DF], &v[j * DF], a.residual ? &res[j * DF] : nullptr,
                        head_keep ? &hk[j * DF] : nullptr, attn_keep ? &ak[j * FF] : nullptr, &o[j * DF],
                        &al[j * FF], w.data());
      unpack(out + h * DF * B, o.data(), DF, B, b0, n);
      unpack(alpha + h * FF * B, al.data(), FF, B, b0, n);
    }
  }
}

template <int FT>
void backward_tiles(const Args& a, int64_t Fr, const float* p, const float* alpha, const float* out, const float* grad_out,
                    const float* grad_alpha, const float* attn_keep, const float* head_keep, float* grad_p,
                    int64_t t0, int64_t t1) {
  const int64_t F = FT > 0 ? FT : Fr;
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
        const int64_t x = j * DF, y = j * FF;
        const bool r = a.qkv_relu;
        backward_core_any<FT>(a, F, F, &q[x], &k[x], &v[x], r ? &rq[x] : nullptr, r ? &rk[x] : nullptr,
                         r ? &rv[x] : nullptr, r && a.residual ? &pres[x] : nullptr, &o[x], &go[x],
                         head_keep ? &hk[x] : nullptr, &al[y], attn_keep ? &ak[y] : nullptr,
                         grad_alpha ? &ga[y] : nullptr, &gq[x], &gk[x], &gv[x], a.residual ? &gr[x] : nullptr,
                         gc.data(), w.data(), gs.data());
      }
      float* gh = grad_p + h * DF * B;
      unpack(gh, gq.data(), DF, B, b0, n);
      unpack(gh + part, gk.data(), DF, B, b0, n);
      unpack(gh + 2 * part, gv.data(), DF, B, b0, n);
      if (a.residual) unpack(gh + 3 * part, gr.data(), DF, B, b0, n);
    }
  }
}

// ---- The layer with its projection, per batch tile (issue 14 attempt 12) ----------------------------------
// layer_forward / layer_backward compute W_Query, W_Key, W_Value and W_Res of all heads for one 64-sample tile
// in the thread that owns the tile, then the attention on that tile while it is in L2; backward: the tile's
// grad_p, then its grad_x and a per-thread partial grad_W. The tile layout: a (rows, F) array of the tile is
// rows x NV x F vectors, vector (r, j, f) at [(r * NV + j) * F + f]; so the projection of a tile is one
// (rows_W, in) x (in, NV * F vectors) product.

// Copy rows (r, f) of a (R, F, B) column-layout array (row r * F + f starts at src + (r * F + f) * B + b0) into
// the tile layout, zero-padding past n samples.
inline void pack_tile(vf* dst, const float* src, int64_t R, int64_t F, int64_t B, int64_t b0, int n) {
  const int64_t rows = R * F;
  for (int64_t i = 0; i < rows; ++i) {
    const float* s = src + i * B + b0;
    vf* d = dst + (i / F) * NV * F + i % F;
    if (i + AHEAD < rows) {
      const float* next = s + AHEAD * B;
      for (int j = 0; j < NV; ++j) __builtin_prefetch(next + j * W, 0, 3);
    }
    if (n == TILE) {
      for (int j = 0; j < NV; ++j) std::memcpy(&d[j * F], s + j * W, sizeof(vf));
    } else {
      float tmp[TILE] = {0};
      std::memcpy(tmp, s, n * sizeof(float));
      for (int j = 0; j < NV; ++j) std::memcpy(&d[j * F], tmp + j * W, sizeof(vf));
    }
  }
}

inline void unpack_tile(float* dst, const vf* src, int64_t R, int64_t F, int64_t B, int64_t b0, int n) {
  const int64_t rows = R * F;
  for (int64_t i = 0; i < rows; ++i) {
    float* d = dst + i * B + b0;
    const vf* s = src + (i / F) * NV * F + i % F;
    if (i + AHEAD < rows) {
      float* next = d + AHEAD * B;
      for (int j = 0; j < NV; ++j) __builtin_prefetch(next + j * W, 1, 3);
    }
    if (n == TILE) {
      for (int j = 0; j < NV; ++j) std::memcpy(d + j * W, &s[j * F], sizeof(vf));
    } else {
      float tmp[TILE];
      for (int j = 0; j < NV; ++j) std::memcpy(tmp + j * W, &s[j * F], sizeof(vf));
      std::memcpy(d, tmp, n * sizeof(float));
    }
  }
}

// C[m][n] (+)= sum_k A[m * lda + k] B[k * ldb + n]: MR rows of scalars against NR vectors, in registers.
template <int MR, int NR>
inline void micro(int64_t K, const float* A, int64_t lda, const vf* B, int64_t ldb, vf* C, int64_t ldc,
                  bool accumulate) {
  vf acc[MR][NR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NR; ++v) acc[r][v] = accumulate ? C[r * ldc + v] : splat(0.0f);
  for (int64_t k = 0; k < K; ++k) {
    vf b[NR];
#pragma GCC unroll 4
    for (int v = 0; v < NR; ++v) b[v] = B[k * ldb + v];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const vf x = splat(A[r * lda + k]);
#pragma GCC unroll 4
      for (int v = 0; v < NR; ++v) acc[r][v] += x * b[v];
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NR; ++v) C[r * ldc + v] = acc[r][v];
}

constexpr int MR = 6, NR = 4;

template <int R>
inline void micro_rows(int nr, int64_t K, const float* A, int64_t lda, const vf* B, int64_t ldb, vf* C,
                       int64_t ldc, bool acc) {
  switch (nr) {
    case 4: micro<R, 4>(K, A, lda, B, ldb, C, ldc, acc); break;
    case 3: micro<R, 3>(K, A, lda, B, ldb, C, ldc, acc); break;
    case 2: micro<R, 2>(K, A, lda, B, ldb, C, ldc, acc); break;
    default: micro<R, 1>(K, A, lda, B, ldb, C, ldc, acc); break;
  }
}

// C (M x N vectors, row stride ldc) (+)= A (M x K scalars, row stride lda) B (K x N vectors, row stride ldb),
// K in chunks of kc rows of B (kept in L1 while the row blocks of A go past).
void gemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const vf* B, int64_t ldb, vf* C,
          int64_t ldc, bool accumulate, int64_t kc) {
  for (int64_t k0 = 0; k0 < K; k0 += kc) {
    const int64_t kk = std::min(kc, K - k0);
    const bool acc = accumulate || k0 > 0;
    for (int64_t n0 = 0; n0 < N; n0 += NR) {
      const int nr = (int)std::min<int64_t>(NR, N - n0);
      for (int64_t m0 = 0; m0 < M; m0 += MR) {
        const int mr = (int)std::min<int64_t>(MR, M - m0);
        const float* a = A + m0 * lda + k0;
        const vf* b = B + k0 * ldb + n0;
        vf* c = C + m0 * ldc + n0;
        switch (mr) {
          case 6: micro_rows<6>(nr, kk, a, lda, b, ldb, c, ldc, acc); break;
          case 5: micro_rows<5>(nr, kk, a, lda, b, ldb, c, ldc, acc); break;
          case 4: micro_rows<4>(nr, kk, a, lda, b, ldb, c, ldc, acc); break;
          case 3: micro_rows<3>(nr, kk, a, lda, b, ldb, c, ldc, acc); break;
          case 2: micro_rows<2>(nr, kk, a, lda, b, ldb, c, ldc, acc); break;
          default: micro_rows<1>(nr, kk, a, lda, b, ldb, c, ldc, acc); break;
        }
      }
    }
  }
}

// Each thread's buffers for layer_forward / layer_backward, kept between calls: no allocation, zeroing or page
// faults per call (a call's buffers come to ~1 MB a thread at the paper's shape). Contents are undefined.
struct Scratch {
  std::vector<vf> slots[16];
  vf* get(int slot, int64_t n) {
    auto& b = slots[slot];
    if ((int64_t)b.size() < n) b.assign(n, splat(0.0f));
    return b.data();
  }
};

inline Scratch& scratch() {
  static thread_local Scratch s;
  return s;
}

// Rows of W in head-major order (h, part, c), so that one head's projection is one contiguous block of PD rows.
struct LayerArgs {
  Args a;
  int64_t F, in, PD;  // PD = parts * D: rows of W (and of a tile's p) per head
  int64_t kept;       // rows of a head's p kept for the backward: Q, K, V, and W_Res e only for qkv_relu's mask
};

// The kept projection goes straight to memory (non-temporal stores): it is read again only in the backward, so
// caching it would only evict the tile's working set (and a normal store reads each line first).
inline void stream_out(float* dst, const vf* src, int64_t n) {
#ifdef __AVX512F__
  if ((reinterpret_cast<std::uintptr_t>(dst) & 63) == 0) {
    for (int64_t i = 0; i < n; ++i) _mm512_stream_ps(dst + i * W, (__m512)src[i]);
    return;
  }
#endif
  std::memcpy(dst, src, n * sizeof(vf));
}

template <int FT>
void layer_forward_tiles(const LayerArgs& L, const float* x, const float* Wh, const float* bias_h,
                         const float* attn_keep, const float* head_keep, float* out, float* alpha, float* saved,
                         int64_t t0, int64_t t1) {
  const Args& a = L.a;
  const int64_t F = FT > 0 ? FT : L.F;
  const int64_t D = a.D, H = a.H, B = a.B, N = NV * F, PD = L.PD, in = L.in;
  Scratch& S = scratch();
  vf *xt = S.get(0, in * N), *pt = S.get(1, PD * N), *ot = S.get(2, H * D * N), *at = S.get(3, H * F * N);
  vf *w = S.get(4, F * F), *hk = S.get(5, head_keep ? H * D * N : 0), *ak = S.get(6, attn_keep ? H * F * N : 0);
  for (int64_t tile = t0; tile < t1; ++tile) {
    const int64_t b0 = tile * TILE;
    const int n = (int)std::min<int64_t>(TILE, B - b0);
    pack_tile(xt, x, in, F, B, b0, n);
    if (head_keep) pack_tile(hk, head_keep, H * D, F, B, b0, n);
    if (attn_keep) pack_tile(ak, attn_keep, H * F, F, B, b0, n);
    for (int64_t h = 0; h < H; ++h) {
      if (bias_h) {
        for (int64_t r = 0; r < PD; ++r)
          for (int64_t c = 0; c < N; ++c) pt[r * N + c] = splat(bias_h[h * PD + r]);
      }
      gemm(PD, N, in, Wh + h * PD * in, in, xt, N, pt, N, bias_h != nullptr, 64);
      if (saved) stream_out(saved + (tile * H + h) * L.kept * N * W, pt, L.kept * N);
      if (a.qkv_relu)
        for (int64_t i = 0; i < PD * N; ++i) pt[i] = relu(pt[i]);
      const vf* P = pt;
      for (int j = 0; j < NV; ++j) {
        const int64_t o = j * F;
        forward_core_any<FT>(a, F, N, P + o, P + D * N + o, P + 2 * D * N + o, a.residual ? P + 3 * D * N + o : nullptr,
                        head_keep ? &hk[h * D * N + o] : nullptr, attn_keep ? &ak[h * F * N + o] : nullptr,
                        &ot[h * D * N + o], &at[h * F * N + o], w);
      }
    }
    unpack_tile(out, ot, H * D, F, B, b0, n);
    unpack_tile(alpha, at, H * F, F, B, b0, n);
  }
#ifdef __AVX512F__
  _mm_sfence();  // the streamed stores are visible before the backward reads them
#endif
}

template <int FT>
void layer_backward_tiles(const LayerArgs& L, const float* x, const float* Wt, const float* saved,
                          const float* alpha, const float* out, const float* grad_out, const float* grad_alpha,
                          const float* attn_keep, const float* head_keep, float* grad_x, vf* grad_w, vf* grad_b,
                          int64_t t0, int64_t t1) {
  const Args& a = L.a;
  const int64_t F = FT > 0 ? FT : L.F;
  const int64_t D = a.D, H = a.H, B = a.B, N = NV * F, PD = L.PD, in = L.in, inv = (in + W - 1) / W;
  const int64_t O = H * PD, K = N * W;  // rows of W; samples x fields of a tile (the weight grad's reduction)
  Scratch& S = scratch();
  vf *xt = S.get(0, in * N), *xtt = S.get(1, K * inv), *gt = S.get(2, PD * N), *gx = S.get(3, in * N);
  vf *ot = S.get(4, H * D * N), *got = S.get(5, H * D * N), *at = S.get(6, H * F * N);
  vf *hk = S.get(7, head_keep ? H * D * N : 0), *ak = S.get(8, attn_keep ? H * F * N : 0);
  vf *ga = S.get(9, grad_alpha ? H * F * N : 0), *pr = S.get(10, a.qkv_relu ? 3 * D * N : 0);
  vf *gc = S.get(11, D * F), *w = S.get(12, F * F), *gs = S.get(13, F * F);
  if (in % W) {  // the padding columns of the transposed x stay zero
    float* t = reinterpret_cast<float*>(xtt);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t i = in; i < inv * W; ++i) t[k * inv * W + i] = 0.0f;
  }
  for (int64_t tile = t0; tile < t1; ++tile) {
    const int64_t b0 = tile * TILE;
    const int n = (int)std::min<int64_t>(TILE, B - b0);
    pack_tile(xt, x, in, F, B, b0, n);
    {  // the tile's x transposed, (samples x fields, in) with in padded to whole vectors: the weight grad's B
      float* t = reinterpret_cast<float*>(xtt);
      const float* s = reinterpret_cast<const float*>(xt);
      const int64_t ld = inv * W;
      for (int64_t i = 0; i < in; ++i)
        for (int64_t k = 0; k < K; ++k) t[k * ld + i] = s[i * K + k];
    }
    pack_tile(ot, out, H * D, F, B, b0, n);
    pack_tile(got, grad_out, H * D, F, B, b0, n);
    pack_tile(at, alpha, H * F, F, B, b0, n);
    if (head_keep) pack_tile(hk, head_keep, H * D, F, B, b0, n);
    if (attn_keep) pack_tile(ak, attn_keep, H * F, F, B, b0, n);
    if (grad_alpha) pack_tile(ga, grad_alpha, H * F, F, B, b0, n);
    for (int64_t h = 0; h < H; ++h) {
      const vf* raw = reinterpret_cast<const vf*>(saved) + (tile * H + h) * L.kept * N;
      const vf* P = raw;
      if (a.qkv_relu) {
        for (int64_t i = 0; i < 3 * D * N; ++i) pr[i] = relu(raw[i]);
        P = pr;
      }
      vf* G = gt;
      for (int j = 0; j < NV; ++j) {
        const int64_t o = j * F, od = h * D * N + o, of = h * F * N + o;
        const bool r = a.qkv_relu;
        backward_core_any<FT>(a, F, N, P + o, P + D * N + o, P + 2 * D * N + o, r ? raw + o : nullptr,
                         r ? raw + D * N + o : nullptr, r ? raw + 2 * D * N + o : nullptr,
                         r && a.residual ? raw + 3 * D * N + o : nullptr, &ot[od], &got[od],
                         head_keep ? &hk[od] : nullptr, &at[of], attn_keep ? &ak[of] : nullptr,
                         grad_alpha ? &ga[of] : nullptr, G + o, G + D * N + o, G + 2 * D * N + o,
                         a.residual ? G + 3 * D * N + o : nullptr, gc, w, gs);
      }
      // grad_x += W_h^T G_h; grad_W_h += G_h x^T; grad_b_h += G_h 1
      gemm(in, N, PD, Wt + h * PD, O, G, N, gx, N, h > 0, 64);
      gemm(PD, inv, K, reinterpret_cast<const float*>(G), K, xtt, inv, grad_w + h * PD * inv, inv, true, 128);
      if (grad_b) {
        for (int64_t r = 0; r < PD; ++r) {
          vf acc = grad_b[h * PD + r];
          for (int64_t c = 0; c < N; ++c) acc += G[r * N + c];
          grad_b[h * PD + r] = acc;
        }
      }
    }
    if (grad_x) unpack_tile(grad_x, gx, in, F, B, b0, n);
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
    default: TORCH_CHECK(F_RUNTIME > 0, "no fields"); CALL(0); break; /* wider: F at run time */ \
  }

}  // namespace

// The four operators (attention_forward.cpp, attention_backward.cpp).
std::vector<at::Tensor> attention_forward(at::Tensor p, std::optional<at::Tensor> attn_keep,
                                          std::optional<at::Tensor> head_keep, double scale, bool residual,
                                          bool qkv_relu);
at::Tensor attention_backward(at::Tensor p, at::Tensor alpha, at::Tensor out, at::Tensor grad_out,
                              std::optional<at::Tensor> grad_alpha, std::optional<at::Tensor> attn_keep,
                              std::optional<at::Tensor> head_keep, double scale, bool residual, bool qkv_relu);
std::vector<at::Tensor> layer_forward(at::Tensor x, at::Tensor weight, std::optional<at::Tensor> bias,
                                      std::optional<at::Tensor> attn_keep, std::optional<at::Tensor> head_keep,
                                      int64_t heads, double scale, bool residual, bool qkv_relu, bool save);
std::vector<at::Tensor> layer_backward(at::Tensor x, at::Tensor weight, at::Tensor saved, at::Tensor alpha,
                                       at::Tensor out, at::Tensor grad_out, std::optional<at::Tensor> grad_alpha,
                                       std::optional<at::Tensor> attn_keep, std::optional<at::Tensor> head_keep,
                                       int64_t heads, double scale, bool residual, bool qkv_relu, bool input_grad,
                                       bool bias_grad);
