"""The kernel paths: one entry per instruction set, the only list of them.

Each entry is a context in the sense of BLIS's per-architecture contexts (``config/haswell/
bli_cntx_init_haswell.c``, ``config/skx/...``): what the CPU must offer, the compiler flags of its
module, its register blocking (MR x NR as rows x vectors) and cache blocking (MC, KC, NC) per dtype,
and the C definitions of the few vector operations the micro-kernel uses.

``setup.py`` reads this file (without importing cprop) and renders ``src/cprop/_kernels.pyx.tp``
once per entry whose architecture matches the build target, into ``src/cprop/_kernels_<name>.pyx``,
compiled with the entry's flags.  At run time ``cprop._isa`` imports a path's module only when the CPU
(and OS) offer every feature the entry ``requires``.  Adding an instruction set is one entry here
(plus, for a CPU feature not yet detected, one bit in ``cprop._isa``'s detection code).

Per-CPU-model blocks: an entry's ``"cpus"`` maps a CPU model of ``CPU_MODELS`` (below) to cache-block
overrides per dtype (``{"s": {"mc": .., "kc": .., "nc": ..}, "d": {...}}``), as BLIS keeps
``config/zen4`` beside ``config/skx`` for the same instructions.  ``cprop._isa`` identifies the CPU
at import (CPUID vendor, family, model; ``CPROP_CPU_MODEL=auto|generic|<model>`` overrides it) and
installs the path with that model's blocks when the entry has them; only MC, KC, NC and the
``direct_a_max_n`` / ``direct_at_max_n`` thresholds may differ (the register blocks belong to the
compiled micro-kernels), e.g. ``"cpus": {"zen4": {"d": {"kc": 128}, "direct_a_max_n": 512}}``.
A model entry may also set ``direct_a_alias_bytes``: a row-major op(A) whose rows span a multiple of
that many bytes is packed instead of read in place (L1 set aliasing).  On Zen 4 no cache blocks
measured better than the generic ones on every shape; the avx512 entry's "zen4" model carries only
the 4 KiB aliasing rule (benchmarks/results/2026-12-07-oversubscription-zen4.md).

Block sizes (origin of each in its entry) must stay within the workspace bounds in
``src/cprop/_config.pxd`` (NR_MAX, S_MC_MAX, S_KC_MAX, D_MC_MAX, D_KC_MAX); ``cprop._isa`` checks each path at import
and refuses one that does not.
"""

X86 = ("x86_64", "amd64", "i386", "i686", "x86")
ARM64 = ("aarch64", "arm64")


def _vec_ops(prefix, ctype, vtype, lanes, zero, load, store, bcast, set1, fma, mul):
    """C macros the template's micro-kernel is written in: cprop_<p>v_zero(), _load(p), _store(p, v),
    _bcast(p) (one value broadcast to every lane), _set1(x), _fma(a, b, c) = a*b + c, _mul(a, b)."""
    p = prefix + "v"
    return {
        "ctype": ctype, "lanes": lanes, "vtype": vtype,
        "c": "\n".join([
            f"typedef {vtype} cprop_{p};",
            f"#define cprop_{p}_zero() ({zero})",
            f"#define cprop_{p}_load(p) ({load})",
            f"#define cprop_{p}_store(p, v) ({store})",
            f"#define cprop_{p}_bcast(p) ({bcast})",
            f"#define cprop_{p}_set1(x) ({set1})",
            f"#define cprop_{p}_fma(a, b, c) ({fma})",
            f"#define cprop_{p}_mul(a, b) ({mul})",
        ]),
    }


# CPU models that may carry their own blocks: vendor string of CPUID leaf 0, family and model as
# CPUID leaf 1 composes them (family = base + extended when base is 0xF; model = base + extended << 4
# for families 6 and 0xF), model ranges inclusive.  AMD family 19h is Zen 3 and Zen 4; Zen 4 is
# models 10h-1Fh (Genoa: EPYC 9004, model 17 = 11h), 60h-7Fh (Raphael, Phoenix) and A0h-AFh
# (Bergamo, Siena), from AMD's processor programming references and Linux's arch/x86 model lists.
CPU_MODELS = [
    {"name": "zen4", "vendor": "AuthenticAMD", "family": 0x19,
     "models": ((0x10, 0x1F), (0x60, 0x7F), (0xA0, 0xAF))},
]


def cpu_model(vendor, family, model):
    """Name of the ``CPU_MODELS`` entry a CPU identity matches, or None."""
    for m in CPU_MODELS:
        if vendor == m["vendor"] and family == m["family"] and any(
                lo <= model <= hi for lo, hi in m["models"]):
            return m["name"]
    return None


PATHS = [
    {
        # Portable C (SSE2 on x86_64, whatever the compiler targets elsewhere): fixed-size array
        # accumulators that gcc -O3 keeps in registers; packed A~ only (with runtime A strides gcc
        # vectorised across k with shuffles, 4x slower).  Always built, always available.
        "name": "reference",
        "arch": None,
        "requires": (),
        "flags": {"unix": [], "msvc": []},
        "header": "",
        "vector": False,
        "direct_a": False,
        "s": {"mr": 4, "nr": 8, "vec": None, "mc": 144, "kc": 256, "nc": 4080},
        "d": {"mr": 4, "nr": 4, "vec": None, "mc": 72, "kc": 256, "nc": 2040},
    },
    {
        # AVX2 + FMA (Haswell and later, Zen).  BLIS haswell/zen register blocks: 6 x 16 float32 and
        # 6 x 8 float64, twelve ymm accumulators + 2 B + 1 broadcast = 15 of 16 ymm.  Cache blocks
        # from bli_cntx_init_zen.c (sgemm MC=144 KC=256 NC=4080; dgemm MC=72 KC=256), rounded to MR.
        # Not -funroll-loops: gcc 12 then spilled an accumulator of the float64 kernel (half speed).
        "name": "avx2",
        "arch": X86,
        "requires": ("avx2", "fma"),
        "flags": {"unix": ["-mavx2", "-mfma"], "msvc": ["/arch:AVX2"]},
        "header": "#include <immintrin.h>",
        "vector": True,
        # op(A) read in place up to these N (row-major / column-major op(A)); packing A~ costs
        # about what it saves when N spans few B~ panels.  Zen 3, the benchmark's kernel table.
        "direct_a": True, "direct_a_max_n": 1024, "direct_at_max_n": 256,
        "s": {"mr": 6, "nr": 16, "mc": 144, "kc": 256, "nc": 4080,
              "vec": _vec_ops("s", "float", "__m256", 8, "_mm256_setzero_ps()",
                              "_mm256_loadu_ps(p)", "_mm256_storeu_ps((p), (v))",
                              "_mm256_broadcast_ss(p)", "_mm256_set1_ps(x)",
                              "_mm256_fmadd_ps((a), (b), (c))", "_mm256_mul_ps((a), (b))")},
        "d": {"mr": 6, "nr": 8, "mc": 72, "kc": 256, "nc": 2040,
              "vec": _vec_ops("d", "double", "__m256d", 4, "_mm256_setzero_pd()",
                              "_mm256_loadu_pd(p)", "_mm256_storeu_pd((p), (v))",
                              "_mm256_broadcast_sd(p)", "_mm256_set1_pd(x)",
                              "_mm256_fmadd_pd((a), (b), (c))", "_mm256_mul_pd((a), (b))")},
    },
    {
        # AVX-512 F (+ DQ, BW, VL for the compiler's elementwise code): Skylake-SP and later Xeons,
        # Ice Lake, Sapphire Rapids, Zen 4/5.  32 zmm: 12 x 32 float32 and 12 x 16 float64 tiles in
        # 24 accumulators + 2 B + 1 broadcast (BLIS skx's 24-accumulator sgemm/dgemm blocks, in our
        # row-major orientation).  Cache blocks from bli_cntx_init_skx.c (sgemm MC=480 KC=384
        # NC=3072, dgemm MC=240 KC=256 NC=3752), MC rounded to MR, NC to NR.
        # -mprefer-vector-width=512: the epilogues and optimizer updates vectorise 16/8 wide.
        "name": "avx512",
        "arch": X86,
        "requires": ("avx512f", "avx512dq", "avx512bw", "avx512vl", "avx2", "fma"),
        "flags": {"unix": ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2",
                           "-mfma", "-mprefer-vector-width=512"],
                  "msvc": ["/arch:AVX512"]},
        "header": "#include <immintrin.h>",
        "vector": True,
        # X^T D packs A~ whatever N (direct_at_max_n 0): with MR = 12 values of a row of X per k
        # step, reading X^T in place was 7-11% slower than packing on the 784x100x200 weight
        # gradient (Intel Xeon, Sapphire Rapids class, 1 thread, paired builds, both dtypes);
        # a row-major op(A) read in place stays 10-25% faster than packed (200x100x784 forward).
        "direct_a": True, "direct_a_max_n": 1024, "direct_at_max_n": 0,
        # Zen 4 (32 KiB 8-way L1d): 12 rows read in place 4 KiB apart share one set; packing them
        # took float64 1024^3 from 0.85 to 0.90 and float32 1024^3 from 0.87 to 0.98 of OpenBLAS
        # (1 thread, alternating processes; results/2026-12-07-oversubscription-zen4.md).
        # Sapphire Rapids' L1d is 12-way: not measured, so no rule there.
        "cpus": {"zen4": {"direct_a_alias_bytes": 4096}},
        "s": {"mr": 12, "nr": 32, "mc": 480, "kc": 384, "nc": 3072,
              "vec": _vec_ops("s", "float", "__m512", 16, "_mm512_setzero_ps()",
                              "_mm512_loadu_ps(p)", "_mm512_storeu_ps((p), (v))",
                              "_mm512_set1_ps(*(p))", "_mm512_set1_ps(x)",
                              "_mm512_fmadd_ps((a), (b), (c))", "_mm512_mul_ps((a), (b))")},
        "d": {"mr": 12, "nr": 16, "mc": 240, "kc": 256, "nc": 3744,
              "vec": _vec_ops("d", "double", "__m512d", 8, "_mm512_setzero_pd()",
                              "_mm512_loadu_pd(p)", "_mm512_storeu_pd((p), (v))",
                              "_mm512_set1_pd(*(p))", "_mm512_set1_pd(x)",
                              "_mm512_fmadd_pd((a), (b), (c))", "_mm512_mul_pd((a), (b))")},
    },
    {
        # ARMv8 Advanced SIMD (NEON): the baseline of every arm64 CPU (Apple M-series, Graviton),
        # so no flags.  32 128-bit registers: 6 x 16 float32 (4 vectors of 4) and 6 x 8 float64
        # (4 vectors of 2) in 24 accumulators + 4 B + 1 broadcast.  Cache blocks as BLIS's
        # armv8a/firestorm configurations' order of magnitude (MC=120 KC=256 float32).
        "name": "neon",
        "arch": ARM64,
        "requires": ("neon",),
        "flags": {"unix": [], "msvc": []},
        "header": "#include <arm_neon.h>",
        "vector": True,
        # as avx2 (not measured on arm64 hardware)
        "direct_a": True, "direct_a_max_n": 1024, "direct_at_max_n": 256,
        "s": {"mr": 6, "nr": 16, "mc": 120, "kc": 256, "nc": 4080,
              "vec": _vec_ops("s", "float", "float32x4_t", 4, "vdupq_n_f32(0.0f)",
                              "vld1q_f32(p)", "vst1q_f32((p), (v))", "vld1q_dup_f32(p)",
                              "vdupq_n_f32(x)", "vfmaq_f32((c), (a), (b))",
                              "vmulq_f32((a), (b))")},
        "d": {"mr": 6, "nr": 8, "mc": 72, "kc": 256, "nc": 2040,
              "vec": _vec_ops("d", "double", "float64x2_t", 2, "vdupq_n_f64(0.0)",
                              "vld1q_f64(p)", "vst1q_f64((p), (v))", "vld1q_dup_f64(p)",
                              "vdupq_n_f64(x)", "vfmaq_f64((c), (a), (b))",
                              "vmulq_f64((a), (b))")},
    },
]


def built_for(arch):
    """Names of the paths built for a target architecture (``platform.machine()`` spelling)."""
    arch = (arch or "").lower()
    return [p["name"] for p in PATHS if p["arch"] is None or arch in p["arch"]]
