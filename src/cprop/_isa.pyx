"""The instruction-set layer: CPU detection, the ``CPROP_KERNEL`` override, and the installed path.

Design
1. The kernel paths are listed once, in ``cprop/_kernel_paths.py`` (reference, avx2, avx512, neon);
   each has a module ``cprop._kernels_<name>`` rendered from ``src/cprop/_kernels.pyx.tp`` and built
   with its instruction set's flags, holding one static ``KernelPath`` (see _isa.pxd).
2. CPU detection lives here and nowhere else: CPUID for the instruction sets and XGETBV (XCR0) for
   whether the OS saves the wide registers (ymm for AVX2, opmask + zmm for AVX-512; macOS enables
   AVX-512 state on first use, so there the kernel's ``hw.optional.avx512f`` is asked instead).
   NEON is the baseline of every arm64 CPU.  A path's module is imported only when the CPU offers
   every feature its entry requires, so its code (module init included) never runs on an older CPU.
3. ``CPROP_KERNEL=auto|<path>`` picks at import (auto: the last available path of the list, the
   fastest); forcing a path the CPU or build lacks is an error at import.  ``set_kernel`` switches
   at run time by one atomic pointer store; running passes keep the path they started with.
4. Per-CPU-model blocks: the CPU's identity (CPUID vendor, family, model) names a model of
   ``CPU_MODELS`` (e.g. zen4); a path whose entry carries ``"cpus"`` blocks for it is installed as
   a copy of its static KernelPath with those MC/KC/NC (heap, made once, never freed, like the
   static paths).  ``CPROP_CPU_MODEL=auto|generic|<model>`` overrides the identity at import (tests
   and comparisons); ``set_cpu_model`` does so at run time.  ``kernel_info()`` says whose blocks
   are active.
5. Fail loudly: a path built for this architecture whose module the CPU could run but that does
   not import is reported by ``kernel_info()['missing']`` (the tests require it to be empty), and a
   path whose blocks exceed the workspace bounds of ``_config.pxd`` is refused.
"""
import importlib
import os
import platform

from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_New
from libc.stdlib cimport malloc

from cprop._kernel_paths import CPU_MODELS, PATHS, built_for, cpu_model

cdef extern from *:
    """
    enum { CPROP_F_AVX2 = 1, CPROP_F_FMA = 2, CPROP_F_AVX512F = 4, CPROP_F_AVX512DQ = 8,
           CPROP_F_AVX512BW = 16, CPROP_F_AVX512VL = 32, CPROP_F_NEON = 64 };
    #if defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
    #include <intrin.h>
    #define CPROP_X86 1
    static void cprop_cpuid(int leaf, int sub, unsigned int r[4]) {
        int q[4]; __cpuidex(q, leaf, sub);
        r[0] = q[0]; r[1] = q[1]; r[2] = q[2]; r[3] = q[3];
    }
    static unsigned long long cprop_xcr0(void) { return _xgetbv(0); }
    #elif (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    #include <cpuid.h>
    #define CPROP_X86 1
    static void cprop_cpuid(int leaf, int sub, unsigned int r[4]) {
        __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
    }
    static unsigned long long cprop_xcr0(void) {
        unsigned int lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));   /* only after OSXSAVE */
        return ((unsigned long long)hi << 32) | lo;
    }
    #endif
    #if defined(CPROP_X86) && defined(__APPLE__)
    #include <sys/sysctl.h>
    static int cprop_macos_avx512(void) {
        int v = 0; size_t n = sizeof(v);
        return sysctlbyname("hw.optional.avx512f", &v, &n, NULL, 0) == 0 && v;
    }
    #endif

    static int cprop_cpu_features(void) {
        int f = 0;
    #if defined(CPROP_X86)
        unsigned int r[4], max_leaf, ecx1;
        unsigned long long xcr0;
        int os_ymm, os_zmm;
        cprop_cpuid(0, 0, r);
        max_leaf = r[0];
        if (max_leaf < 7) return 0;
        cprop_cpuid(1, 0, r);
        ecx1 = r[2];
        if (!((ecx1 >> 27) & 1) || !((ecx1 >> 28) & 1)) return 0;   /* OSXSAVE, AVX */
        xcr0 = cprop_xcr0();
        os_ymm = (xcr0 & 0x6) == 0x6;                               /* xmm + ymm state */
    #if defined(__APPLE__)
        os_zmm = os_ymm && cprop_macos_avx512();
    #else
        os_zmm = (xcr0 & 0xe6) == 0xe6;                             /* + opmask, zmm0-15 hi, zmm16-31 */
    #endif
        if (!os_ymm) return 0;
        cprop_cpuid(7, 0, r);
        if ((r[1] >> 5) & 1) f |= CPROP_F_AVX2;
        if ((ecx1 >> 12) & 1) f |= CPROP_F_FMA;
        if (os_zmm) {
            if ((r[1] >> 16) & 1) f |= CPROP_F_AVX512F;
            if ((r[1] >> 17) & 1) f |= CPROP_F_AVX512DQ;
            if ((r[1] >> 30) & 1) f |= CPROP_F_AVX512BW;
            if ((r[1] >> 31) & 1) f |= CPROP_F_AVX512VL;
        }
    #elif defined(__aarch64__) || defined(_M_ARM64)
        f |= CPROP_F_NEON;
    #endif
        return f;
    }

    /* CPU identity: vendor string of leaf 0, family and model as leaf 1 composes them (the
       extended family counts when the base family is 0xF, the extended model for families 6 and
       0xF).  Returns 0 off x86. */
    #include <string.h>
    static int cprop_cpu_identity(char vendor[13], int* family, int* model) {
        vendor[0] = 0; *family = 0; *model = 0;
    #if defined(CPROP_X86)
        unsigned int r[4], eax, base_family, base_model;
        cprop_cpuid(0, 0, r);
        memcpy(vendor, &r[1], 4); memcpy(vendor + 4, &r[3], 4); memcpy(vendor + 8, &r[2], 4);
        vendor[12] = 0;
        if (r[0] < 1) return 1;
        cprop_cpuid(1, 0, r);
        eax = r[0];
        base_family = (eax >> 8) & 0xF;
        base_model = (eax >> 4) & 0xF;
        *family = (int)(base_family == 0xF ? base_family + ((eax >> 20) & 0xFF) : base_family);
        *model = (int)((base_family == 6 || base_family == 0xF)
                       ? base_model + (((eax >> 16) & 0xF) << 4) : base_model);
        return 1;
    #else
        return 0;
    #endif
    }

    /* The installed path: one pointer, loaded and stored atomically. */
    static const void* cprop_installed = NULL;
    #if defined(__GNUC__) || defined(__clang__)
    static const void* cprop_get_installed(void) {
        return __atomic_load_n(&cprop_installed, __ATOMIC_ACQUIRE);
    }
    static void cprop_set_installed(const void* p) {
        __atomic_store_n(&cprop_installed, p, __ATOMIC_RELEASE);
    }
    #else  /* MSVC: aligned pointer-sized loads and stores are atomic on x64 and arm64 */
    static const void* cprop_get_installed(void) { return *(const void* volatile*)&cprop_installed; }
    static void cprop_set_installed(const void* p) { *(const void* volatile*)&cprop_installed = p; }
    #endif
    """
    int cprop_cpu_features() nogil
    int cprop_cpu_identity(char* vendor, int* family, int* model) nogil
    const void* cprop_get_installed() nogil
    void cprop_set_installed(const void* p) nogil
    int CPROP_F_AVX2, CPROP_F_FMA, CPROP_F_AVX512F, CPROP_F_AVX512DQ, CPROP_F_AVX512BW
    int CPROP_F_AVX512VL, CPROP_F_NEON

from cprop._config cimport NR_MAX, S_MC_MAX, S_KC_MAX, D_MC_MAX, D_KC_MAX

_FEATURE_BITS = {"avx2": CPROP_F_AVX2, "fma": CPROP_F_FMA, "avx512f": CPROP_F_AVX512F,
                 "avx512dq": CPROP_F_AVX512DQ, "avx512bw": CPROP_F_AVX512BW,
                 "avx512vl": CPROP_F_AVX512VL, "neon": CPROP_F_NEON}
_PATH_NAMES = [p["name"] for p in PATHS]
_ARCH = platform.machine().lower()

_MODEL_NAMES = [m["name"] for m in CPU_MODELS]
_BLOCK_KEYS = ("mc", "kc", "nc")
_DIRECT_KEYS = ("direct_a_max_n", "direct_at_max_n", "direct_a_alias_bytes")

# name -> (capsule, module) of every path imported so far; the capsules keep the pointers valid.
_loaded = {}
# (name, blocks tag) -> capsule of a heap copy of that path with other cache blocks.
_variants = {}
_installed_name = None
_installed_blocks = "generic"     # whose blocks the installed path runs: "generic", a model, "custom"
_cpu_model = None                 # the CPU model whose blocks paths use (None: generic blocks)


cdef const KernelPath* current_path() noexcept nogil:
    return <const KernelPath*>cprop_get_installed()


def cpu_features():
    """The instruction-set features this CPU and OS offer, as the names the path list uses.

    Examples
    --------
    >>> from cprop._isa import cpu_features
    >>> isinstance(cpu_features(), list)
    True
    """
    cdef int f = cprop_cpu_features()
    return sorted(name for name, bit in _FEATURE_BITS.items() if f & bit)


def cpu_identity():
    """This CPU's identity from CPUID: ``{"vendor", "family", "model"}``, or None off x86.

    Examples
    --------
    >>> from cprop._isa import cpu_identity
    >>> ident = cpu_identity()
    >>> ident is None or sorted(ident) == ['family', 'model', 'vendor']
    True
    """
    cdef char vendor[13]
    cdef int family = 0, model = 0
    if not cprop_cpu_identity(vendor, &family, &model):
        return None
    return {"vendor": vendor[:12].decode("ascii", "replace"), "family": family, "model": model}


def detected_cpu_model():
    """The ``CPU_MODELS`` entry (cprop/_kernel_paths.py) this CPU matches, e.g. 'zen4', or None."""
    ident = cpu_identity()
    return None if ident is None else cpu_model(ident["vendor"], ident["family"], ident["model"])


def cpu_supports(str name):
    """True when this CPU and OS offer every feature the named kernel path requires."""
    entry = _entry(name)
    have = set(cpu_features())
    return all(r in have for r in entry["requires"])


def _entry(str name):
    for p in PATHS:
        if p["name"] == name:
            return p
    raise ValueError(f"unknown kernel {name!r}; expected 'auto' or one of {_PATH_NAMES}.")


cdef _check_blocks(const KernelPath* kp, str name):
    """Refuse a path whose blocks do not fit the workspace bounds every plan is sized with."""
    for dt, mr, nr, mc, kc, nc, mc_max, kc_max in (
            ("float32", kp.gemm.s.mr, kp.gemm.s.nr, kp.gemm.s.mc, kp.gemm.s.kc, kp.gemm.s.nc,
             S_MC_MAX, S_KC_MAX),
            ("float64", kp.gemm.d.mr, kp.gemm.d.nr, kp.gemm.d.mc, kp.gemm.d.kc, kp.gemm.d.nc,
             D_MC_MAX, D_KC_MAX)):
        if (mr < 1 or nr < 1 or NR_MAX % nr or mc % mr or nc % nr or mc > mc_max
                or kc > kc_max or kc % 8):
            raise RuntimeError(
                f"kernel path {name!r} ({dt}: MR={mr} NR={nr} MC={mc} KC={kc} NC={nc}) does not fit "
                f"the workspace bounds of _config.pxd (NR divides {NR_MAX}, MC multiple of MR and "
                f"<= {mc_max}, KC multiple of 8 and <= {kc_max}, NC multiple of NR); fix its entry "
                "in cprop/_kernel_paths.py or the bounds.")


def _load(str name):
    """Import a path's module (only call when the CPU supports it); returns its capsule."""
    if name in _loaded:
        return _loaded[name][0]
    mod = importlib.import_module(f"cprop._kernels_{name}")
    cap = mod.path()
    cdef const KernelPath* kp = <const KernelPath*>PyCapsule_GetPointer(cap, b"cprop._isa.KernelPath")
    if kp.name.decode() != name:
        raise RuntimeError(f"module cprop._kernels_{name} holds path {kp.name.decode()!r}.")
    _check_blocks(kp, name)
    _loaded[name] = (cap, mod)
    return cap


cdef object _variant(str name, str tag, dict over):
    """Capsule of a copy of path ``name`` with cache blocks ``over`` ({"s"|"d": {"mc", "kc",
    "nc"}}), made once per (name, blocks) and checked against the workspace bounds; ``tag`` names
    the blocks in messages."""
    key = (name, repr(sorted((k, sorted(v.items()) if isinstance(v, dict) else v)
                             for k, v in over.items())))
    if key in _variants:
        return _variants[key]
    for part, val in over.items():
        if part in _DIRECT_KEYS and isinstance(val, int) and val >= 0:
            continue
        if part not in ("s", "d") or not isinstance(val, dict) or set(val) - set(_BLOCK_KEYS):
            raise ValueError(f"blocks for path {name!r} ({tag}): expected {{'s'|'d': {{'mc', 'kc', "
                             f"'nc'}}, 'direct_a_max_n', 'direct_at_max_n', 'direct_a_alias_bytes': int}} (cache "
                             f"blocks and when op(A) is read in place only); got {over!r}.")
    cap = _load(name)
    cdef const KernelPath* base = <const KernelPath*>PyCapsule_GetPointer(
        cap, b"cprop._isa.KernelPath")
    cdef KernelPath probe = base[0]
    s, d = over.get("s", {}), over.get("d", {})
    probe.gemm.s.mc = s.get("mc", probe.gemm.s.mc)
    probe.gemm.s.kc = s.get("kc", probe.gemm.s.kc)
    probe.gemm.s.nc = s.get("nc", probe.gemm.s.nc)
    probe.gemm.d.mc = d.get("mc", probe.gemm.d.mc)
    probe.gemm.d.kc = d.get("kc", probe.gemm.d.kc)
    probe.gemm.d.nc = d.get("nc", probe.gemm.d.nc)
    probe.gemm.direct_a_max_n = over.get("direct_a_max_n", probe.gemm.direct_a_max_n)
    probe.gemm.direct_at_max_n = over.get("direct_at_max_n", probe.gemm.direct_at_max_n)
    probe.gemm.direct_a_alias_bytes = over.get("direct_a_alias_bytes",
                                               probe.gemm.direct_a_alias_bytes)
    _check_blocks(&probe, f"{name} ({tag} blocks)")
    cdef KernelPath* kp = <KernelPath*>malloc(sizeof(KernelPath))
    if kp == NULL:
        raise MemoryError("could not allocate a kernel path context.")
    kp[0] = probe
    _variants[key] = PyCapsule_New(<void*>kp, b"cprop._isa.KernelPath", NULL)
    return _variants[key]


def _capsule_for(str name):
    """(capsule, blocks tag) of path ``name`` under the current CPU model."""
    over = (_entry(name).get("cpus") or {}).get(_cpu_model) if _cpu_model else None
    if not over:
        return _load(name), "generic"
    return _variant(name, _cpu_model, over), _cpu_model


def _survey():
    """(available, missing): paths this build and CPU can run, in list order; and paths built for
    this architecture that the CPU could run but whose module does not import (a broken build)."""
    available, missing = [], []
    built = built_for(_ARCH)
    for name in _PATH_NAMES:
        if name not in built or not cpu_supports(name):
            continue
        try:
            _load(name)
        except ImportError as exc:
            missing.append(f"{name} ({exc})")
            continue
        available.append(name)
    return available, missing


def available_kernels():
    """Kernel paths this build and CPU can run, fastest last (e.g. ['reference', 'avx2', 'avx512']).

    Examples
    --------
    >>> from cprop._isa import available_kernels
    >>> available_kernels()[0]
    'reference'
    """
    return _survey()[0]


def set_kernel(str name):
    """Install one kernel path: 'auto' (the fastest available) or a name from ``available_kernels``.

    Every product, epilogue and optimizer update started afterwards uses it; one already running
    keeps the path it started with (the switch is one atomic pointer store).  Returns the name.

    Examples
    --------
    >>> from cprop._isa import set_kernel, kernel_info
    >>> before = kernel_info()["name"]
    >>> set_kernel("reference")
    'reference'
    >>> kernel_info()["name"]
    'reference'
    >>> _ = set_kernel(before)
    """
    avail = available_kernels()
    if name == "auto":
        name = avail[len(avail) - 1]
    _entry(name)
    if name not in avail:
        raise RuntimeError(
            f"kernel {name!r} is not available on this CPU/build (CPU features: {cpu_features()}; "
            f"available: {avail}).")
    cap, tag = _capsule_for(name)
    _install(cap, name, tag)
    return name


def _install(cap, str name, str tag):
    global _installed_name, _installed_blocks
    cprop_set_installed(PyCapsule_GetPointer(cap, b"cprop._isa.KernelPath"))
    _installed_name = name
    _installed_blocks = tag


def set_cpu_model(str model):
    """Use the cache blocks of a CPU model: 'auto' (this CPU's, see ``detected_cpu_model``),
    'generic' (each path's own) or a model of ``cprop._kernel_paths.CPU_MODELS`` (e.g. 'zen4', on
    any CPU: blocks change speed, never whether a path runs).  Reinstalls the installed path with
    them (paths without blocks for the model keep their own) and returns the model, or 'generic'.

    Blocks set the k-blocking of a product, so for K above KC the last bits of a result may differ
    between models (never between thread counts).

    Examples
    --------
    >>> from cprop._isa import set_cpu_model, kernel_info
    >>> set_cpu_model("generic")
    'generic'
    >>> kernel_info()["blocks"]
    'generic'
    >>> _ = set_cpu_model("auto")
    """
    global _cpu_model
    model = model.strip().lower()
    if model == "auto":
        want = detected_cpu_model()
    elif model == "generic":
        want = None
    elif model in _MODEL_NAMES:
        want = model
    else:
        raise ValueError(f"unknown CPU model {model!r}; expected 'auto', 'generic' or one of "
                         f"{_MODEL_NAMES}.")
    old = _cpu_model
    _cpu_model = want
    try:
        if _installed_name is not None:
            set_kernel(_installed_name)
    except Exception:
        _cpu_model = old            # blocks refused: keep what ran before
        raise
    return want or "generic"


def _set_blocks(dict over):
    """Install the current path with cache blocks ``over`` ({"s"|"d": {"mc", "kc", "nc"}},
    optionally "direct_a_max_n", "direct_at_max_n"), for
    block sweeps in benchmarks; ``set_kernel``/``set_cpu_model`` restore the configured ones."""
    _install(_variant(_installed_name, "custom", over), _installed_name, "custom")
    return kernel_info()


def path_capsule(name=None):
    """A capsule holding the KernelPath of the named path (None: the installed one) with the
    current CPU model's blocks."""
    if name is None:
        return _installed_capsule()
    return _capsule_for(name)[0]


def _installed_capsule():
    return PyCapsule_New(<void*>current_path(), b"cprop._isa.KernelPath", NULL)


def gemm_context(name=None):
    """A capsule holding the GemmContext of the named path (None: the installed one), with the
    current CPU model's blocks."""
    cap = path_capsule(name)
    cdef KernelPath* kp = <KernelPath*>PyCapsule_GetPointer(cap, b"cprop._isa.KernelPath")
    return PyCapsule_New(<void*>&kp.gemm, b"cprop._kernels.GemmContext", NULL)


def kernel_info():
    """The installed path, its blocks per dtype, and what this CPU and build offer.

    Returns a dict: ``name``; ``float32``/``float64``: dicts of ``mr``, ``nr`` (register block) and
    ``mc``, ``kc``, ``nc`` (cache blocks); ``direct_a_max_n``/``direct_at_max_n``: up to which N a
    row-/column-major op(A) is read in place rather than packed; ``available``: paths that can run here, fastest last;
    ``missing``: paths built for this architecture and supported by this CPU whose module did not
    import (empty unless the build is broken); ``cpu_features``; ``cpu``: the CPU's identity
    (``cpu_identity()``); ``cpu_model``: the CPU model whose blocks paths use (detected, or set by
    ``CPROP_CPU_MODEL``/``set_cpu_model``; None: generic); ``blocks``: whose cache blocks the
    installed path runs now ('generic', a model such as 'zen4', or 'custom').

    Examples
    --------
    >>> from cprop._isa import kernel_info
    >>> info = kernel_info()
    >>> info["name"] in info["available"]
    True
    """
    cdef const KernelPath* kp = current_path()
    available, missing = _survey()
    return {"name": _installed_name,
            "float32": {"mr": kp.gemm.s.mr, "nr": kp.gemm.s.nr, "mc": kp.gemm.s.mc,
                        "kc": kp.gemm.s.kc, "nc": kp.gemm.s.nc},
            "float64": {"mr": kp.gemm.d.mr, "nr": kp.gemm.d.nr, "mc": kp.gemm.d.mc,
                        "kc": kp.gemm.d.kc, "nc": kp.gemm.d.nc},
            "direct_a_max_n": kp.gemm.direct_a_max_n if kp.gemm.direct_a else 0,
            "direct_at_max_n": kp.gemm.direct_at_max_n if kp.gemm.direct_a else 0,
            "direct_a_alias_bytes": kp.gemm.direct_a_alias_bytes if kp.gemm.direct_a else 0,
            "available": available, "missing": missing, "cpu_features": cpu_features(),
            "cpu": cpu_identity(), "cpu_model": _cpu_model, "blocks": _installed_blocks}


def _init():
    """At import: CPROP_CPU_MODEL=auto|generic|<model> and CPROP_KERNEL=auto|<path> (default auto)."""
    global _cpu_model
    model = os.environ.get("CPROP_CPU_MODEL", "auto").strip().lower() or "auto"
    if model not in ["auto", "generic"] + _MODEL_NAMES:
        raise ValueError(f"CPROP_CPU_MODEL={model!r} is not a CPU model; expected 'auto', "
                         f"'generic' or one of {_MODEL_NAMES}.")
    _cpu_model = (detected_cpu_model() if model == "auto" else
                  None if model == "generic" else model)
    want = os.environ.get("CPROP_KERNEL", "auto").strip().lower() or "auto"
    if want != "auto" and want not in _PATH_NAMES:
        raise ValueError(f"CPROP_KERNEL={want!r} is not a kernel path; expected 'auto' or one of "
                         f"{_PATH_NAMES}.")
    try:
        set_kernel(want)
    except RuntimeError as exc:
        raise RuntimeError(f"CPROP_KERNEL={want}: {exc} Unset CPROP_KERNEL (or set it to 'auto') "
                           "to use the fastest available path.") from None


_init()
