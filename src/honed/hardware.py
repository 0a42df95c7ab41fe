"""What this machine can do: :class:`HardwareSpec`, how it is detected, and the peak-throughput estimate.

This module owns the description of the hardware honed runs on: the CPU (model, vendor, cores usable by this
process, ISA extensions, caches, clock), memory, the GPUs and execution providers ONNX Runtime can use, and an
estimate of the peak FP32 FLOP/s, BF16 FLOP/s and INT8 op/s. ``bench`` compares achieved throughput against
those peaks; ``optimize`` and ``plan`` read the ISA and core counts. Nothing here runs a model.

Detection is best-effort: every probe (``/proc/cpuinfo``, ``/sys``, psutil, ``nvidia-smi``, ONNX Runtime) may be
missing and never raises; the names of values that were guessed rather than read are listed in
``HardwareSpec.estimated``. The parsers take text and a sysfs root, so they run on fixtures in tests.

Caches
    ``caches`` holds the size in bytes of each cache level as seen from one usable core (``l1d``, ``l1i``,
    ``l2``, ``l3``): L1 and L2 are per-core sizes; ``l3`` is the size of the one L3 instance that core shares
    with its neighbours (not multiplied by the number of instances).

Peak estimate
    ``peak = cores x clock_GHz x ops_per_cycle_per_core`` where ``cores`` is the number of distinct physical
    cores among the CPUs this process may run on (SMT siblings share the vector units), capped by the cgroup
    CPU quota when there is one, and the clock is the
    highest one found (``cpuinfo_max_freq`` from sysfs, else ``cpu MHz`` from /proc/cpuinfo, else the
    ``@ x.xxGHz`` in the model name). FP32 FLOP/cycle/core comes from the widest FMA path
    (an FMA is 2 FLOP per lane):

    ====================================================  =====================  ==========
    ISA path                                              assumption             FP32 FLOP
    ====================================================  =====================  ==========
    AVX-512F, Intel                                       2 x 512-bit FMA ports  64
    AVX-512F, AMD family 25 (Zen 4) or unknown family     256-bit double-pumped  32
    AVX-512F, AMD family >= 26 (Zen 5)                    2 x 512-bit FMA        64
    AVX2 + FMA (Intel Haswell+, AMD Zen 2/3)              2 x 256-bit FMA ports  32
    AVX2 + FMA, AMD family 23 model < 0x30 (Zen/Zen+)     2 x 128-bit FMA        16
    AVX without FMA                                       256-bit add + mul      16
    SSE4.2 only                                           128-bit add + mul      8
    Arm SVE                                               2 x 256-bit FMA (V1)   32
    Arm NEON                                              2 x 128-bit FMA (N1)   16
    ====================================================  =====================  ==========

    Intel parts with a single AVX-512 FMA port (Xeon Bronze/Silver, client Ice/Tiger Lake) reach half of 64;
    the table assumes the server two-port layout.

    BF16 FLOP/cycle/core: AMX-BF16 1024 (one TDPBF16PS, 16x16x32 MACs, per 16 cycles; 16x the AVX-512 FP32
    rate), else AVX512_BF16 or Arm BF16 2x FP32 (a dot product of BF16 pairs per FP32 lane), else 1x FP32
    (BF16 is widened and computed at the FP32 rate).

    INT8 op/cycle/core: AMX-INT8 2048 (TDPBSSD, 16x16x64 MACs per 16 cycles), else 4x FP32 with VNNI
    (AVX512_VNNI or AVX_VNNI: four u8 x s8 products per 32-bit lane) or Arm dot product, else 2x FP32
    (vpmaddubsw + vpmaddwd without VNNI).

    Example: a 2-core Zen 4 (AVX-512, VNNI, BF16) at 3.6 GHz: 2 x 3.6 x 32 = 230.4 GFLOP/s FP32,
    460.8 GFLOP/s BF16, 921.6 GOP/s INT8.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from honed.errors import InvalidArgument
from honed.fields import Fields

__all__ = [
    "GpuInfo",
    "HardwareSpec",
    "Peaks",
    "ProcCpuInfo",
    "build_spec",
    "detect_hardware",
    "estimate_peaks",
    "isa_class",
    "isa_from_flags",
    "parse_cpuinfo",
    "parse_nvidia_smi",
    "physical_cores_among",
    "read_caches",
    "read_cgroup_limits",
    "read_max_freq_ghz",
]

PRECISIONS = ("fp32", "bf16", "int8")

# honed's ISA names, keyed by the flag that reports them in /proc/cpuinfo (x86 "flags", Arm "Features").
_X86_FLAGS = {
    "sse4_2": "sse4_2",
    "avx": "avx",
    "avx2": "avx2",
    "fma": "fma",
    "f16c": "f16c",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512vl": "avx512vl",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "avx512_bf16": "avx512_bf16",
    "avx512_fp16": "avx512_fp16",
    "amx_tile": "amx_tile",
    "amx_int8": "amx_int8",
    "amx_bf16": "amx_bf16",
    "amx_fp16": "amx_fp16",
}
_ARM_FLAGS = {
    "asimd": "neon",
    "sve": "sve",
    "asimddp": "neon_dotprod",
    "bf16": "neon_bf16",
}
# ISA names shown first/highlighted by the CLI: the ones that decide which kernels ONNX Runtime can use.
KEY_ISA = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "neon", "sve")

# The ISA classes that decide which candidates pay first, weakest first: each adds to the one before it.
# ``avx2``: no 8-bit dot product (or no x86 vectors at all); ``vnni``: an 8-bit dot product that does not saturate
# (AVX512_VNNI, AVX_VNNI, Arm dot product); ``bf16``: that plus native BF16 arithmetic (AVX512_BF16, Arm BF16);
# ``amx``: Intel AMX tiles (AMX-INT8/AMX-BF16), ranked above VNNI for INT8 and above AVX512_BF16 for BF16.
ISA_CLASSES = ("avx2", "vnni", "bf16", "amx")
_VNNI_NAMES = ("avx512_vnni", "avx_vnni", "neon_dotprod", "amx_int8")
_BF16_NAMES = ("avx512_bf16", "neon_bf16", "amx_bf16")


def isa_class(isa: Iterable[str]) -> str:
    """The :data:`ISA_CLASSES` entry an ISA tuple belongs to (the strongest whose extensions it has)."""
    names = set(isa)
    if names & {"amx_int8", "amx_bf16"}:
        return "amx"
    if names & set(_VNNI_NAMES):
        return "bf16" if names & set(_BF16_NAMES) else "vnni"
    return "avx2"


_VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "HygonGenuine": "Hygon"}
_ARM_IMPLEMENTERS = {
    0x41: "ARM",
    0x42: "Broadcom",
    0x48: "HiSilicon",
    0x4E: "NVIDIA",
    0x51: "Qualcomm",
    0x61: "Apple",
    0xC0: "Ampere",
}
_ARM_PARTS = {0xD0C: "Neoverse N1", 0xD40: "Neoverse V1", 0xD49: "Neoverse N2", 0xD4F: "Neoverse V2"}

_NVIDIA_SMI_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class GpuInfo:
    """One GPU, with the ONNX Runtime providers installed here that can run models on it."""

    name: str
    vendor: str
    memory_bytes: int | None
    ort_providers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProcCpuInfo:
    """What ``/proc/cpuinfo`` says, parsed; every field is ``None``/empty when the text does not say."""

    model_name: str | None
    vendor: str | None
    family: int | None
    model_number: int | None
    flags: tuple[str, ...]
    max_mhz: float | None
    logical_cpus: int
    physical_cores: int | None


@dataclass(frozen=True)
class Peaks:
    """Peak throughput estimate and the per-core, per-cycle rates it came from."""

    fp32_gflops: float | None
    bf16_gflops: float | None
    int8_gops: float | None
    fp32_per_cycle: int | None
    bf16_per_cycle: int | None
    int8_per_cycle: int | None
    basis: str


@dataclass(frozen=True)
class HardwareSpec:
    """The machine honed runs on, as one immutable value; JSON round-trips through :meth:`to_dict`/:meth:`from_dict`.

    ``caches`` are bytes per level as seen from one core (L1/L2 per core, L3 one shared instance).
    ``usable_cores`` are the logical CPU ids this process may run on; ``peak_cores`` the distinct physical
    cores among them. ``cpu_quota_cores`` and ``memory_limit_bytes`` are the cgroup limits (``None``: none);
    the peaks are computed for ``min(peak_cores, cpu_quota_cores)`` cores. ``estimated`` names the fields
    that were guessed.
    """

    cpu_model: str
    vendor: str
    arch: str
    logical_cores: int
    physical_cores: int
    usable_cores: tuple[int, ...]
    isa: tuple[str, ...]
    caches: dict[str, int] = field(hash=False)
    clock_ghz: float | None
    clock_source: str
    memory_bytes: int
    gpus: tuple[GpuInfo, ...]
    ort_providers: tuple[str, ...]
    peak_fp32_gflops: float | None
    peak_bf16_gflops: float | None
    peak_int8_gops: float | None
    peak_cores: int
    peak_basis: str
    cpu_family: int | None = None
    cpu_model_number: int | None = None
    cpu_quota_cores: float | None = None
    memory_limit_bytes: int | None = None
    estimated: tuple[str, ...] = ()

    def has(self, *names: str) -> bool:
        """True when every ISA name given is present (``spec.has("avx512f", "avx512_vnni")``)."""
        return all(n in self.isa for n in names)

    @property
    def isa_class(self) -> str:
        """Which of :data:`ISA_CLASSES` this CPU is in (``avx2``, ``vnni``, ``bf16`` or ``amx``)."""
        return isa_class(self.isa)

    @property
    def default_threads(self) -> int:
        """The intra-op threads a runtime left at its default uses here: one per physical core it may run on."""
        usable = len(self.usable_cores) or self.logical_cores
        return max(1, min(self.physical_cores or usable, usable))

    def peak_gflops(self, precision: str) -> float | None:
        """Peak GFLOP/s (GOP/s for int8) for ``"fp32"``, ``"bf16"`` or ``"int8"``; ``None`` when unknown."""
        key = precision.lower()
        if key == "fp32":
            return self.peak_fp32_gflops
        if key == "bf16":
            return self.peak_bf16_gflops
        if key == "int8":
            return self.peak_int8_gops
        raise InvalidArgument(f"unknown precision {precision!r}; use one of: {', '.join(PRECISIONS)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (tuples become lists)."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        data["gpus"] = [{**g, "ort_providers": list(g["ort_providers"])} for g in data["gpus"]]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HardwareSpec:
        """Rebuild a spec from :meth:`to_dict` output; raises InvalidArgument on missing or malformed fields."""
        f = _SpecFields(data, "hardware spec")
        return f.read(
            cls,
            gpus=tuple(_gpu(g.data, g.where) for g in f.objects("gpus")) if "gpus" in f.data else (),
            ort_providers=f.strings("ort_providers", default=()),
            peak_basis=f.text("peak_basis", default=""),
            estimated=f.strings("estimated", default=()),
        )


class _SpecFields(Fields):
    """A hardware spec's fields, with its phrasing."""

    missing_says = "{where} is missing the field {key!r}"
    wrong_says = "{where} has a malformed field: {key} must be {expected}, got {value}"


def _gpu(data: Mapping[str, Any], where: str) -> GpuInfo:
    f = _SpecFields(data, where)
    providers = f.strings("ort_providers", default=())
    return GpuInfo(f.text("name"), f.text("vendor"), f.opt_whole("memory_bytes"), providers)


# --- peaks -------------------------------------------------------------------------------------------------


def _fp32_path(isa: frozenset[str], vendor: str, family: int | None, model: int | None) -> tuple[int | None, str]:
    amd = vendor.upper() in ("AMD", "HYGON")
    if "avx512f" in isa:
        if amd and (family is None or family < 26):
            return 32, "AVX-512 double-pumped on 256-bit units (Zen 4): 32 FP32 FLOP/cycle"
        return 64, "AVX-512 with 2 x 512-bit FMA ports: 64 FP32 FLOP/cycle"
    if "fma" in isa and ("avx2" in isa or "avx" in isa):
        if amd and family == 23 and model is not None and model < 0x30:
            return 16, "AVX2+FMA on 128-bit units (Zen/Zen+): 16 FP32 FLOP/cycle"
        return 32, "AVX2+FMA with 2 x 256-bit FMA ports: 32 FP32 FLOP/cycle"
    if "avx" in isa:
        return 16, "AVX without FMA (256-bit add + mul): 16 FP32 FLOP/cycle"
    if "sse4_2" in isa:
        return 8, "SSE (128-bit add + mul): 8 FP32 FLOP/cycle"
    if "sve" in isa:
        return 32, "SVE, assumed 2 x 256-bit FMA: 32 FP32 FLOP/cycle"
    if "neon" in isa:
        return 16, "NEON with 2 x 128-bit FMA: 16 FP32 FLOP/cycle"
    return None, "no known vector ISA: peak unknown"


def estimate_peaks(
    isa: Iterable[str],
    cores: float | None,
    clock_ghz: float | None,
    vendor: str = "",
    cpu_family: int | None = None,
    cpu_model_number: int | None = None,
) -> Peaks:
    """Peak FP32 GFLOP/s, BF16 GFLOP/s and INT8 GOP/s for ``cores`` physical cores at ``clock_ghz``.

    ``cores`` may be fractional (a cgroup CPU quota of 1.5 CPUs).

    A pure function of its arguments; the table and assumptions are in this module's docstring. Rates are
    ``None`` when the ISA has no known vector path, or the core count or clock is unknown.
    """
    names = frozenset(isa)
    fp32, basis = _fp32_path(names, vendor, cpu_family, cpu_model_number)
    bf16: int | None = None
    int8: int | None = None
    if fp32 is not None:
        if "amx_bf16" in names:
            bf16, bf16_note = 1024, "BF16 via AMX: 1024 FLOP/cycle"
        elif "avx512_bf16" in names or "neon_bf16" in names:
            bf16, bf16_note = 2 * fp32, "BF16 dot product: 2x FP32"
        else:
            bf16, bf16_note = fp32, "no native BF16: 1x FP32"
        if "amx_int8" in names:
            int8, int8_note = 2048, "INT8 via AMX: 2048 op/cycle"
        elif "avx512_vnni" in names or "avx_vnni" in names or "neon_dotprod" in names:
            int8, int8_note = 4 * fp32, "INT8 dot product (VNNI): 4x FP32"
        else:
            int8, int8_note = 2 * fp32, "INT8 without VNNI: 2x FP32"
        basis = f"{basis}; {bf16_note}; {int8_note}"
    if fp32 is None or bf16 is None or int8 is None or not cores or cores <= 0 or not clock_ghz or clock_ghz <= 0:
        return Peaks(None, None, None, fp32, bf16, int8, basis)
    scale = cores * clock_ghz
    return Peaks(
        fp32_gflops=round(scale * fp32, 1),
        bf16_gflops=round(scale * bf16, 1),
        int8_gops=round(scale * int8, 1),
        fp32_per_cycle=fp32,
        bf16_per_cycle=bf16,
        int8_per_cycle=int8,
        basis=basis,
    )


# --- parsers (pure: text in, values out) -------------------------------------------------------------------


def _int_auto(text: str) -> int | None:
    try:
        return int(text.strip(), 0)
    except ValueError:
        return None


def parse_cpuinfo(text: str) -> ProcCpuInfo:
    """Parse ``/proc/cpuinfo`` text from x86 or Arm Linux."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip().lower()] = value.strip()
    if current:
        blocks.append(current)
    cpus = [b for b in blocks if "processor" in b and _int_auto(b["processor"]) is not None]
    first = cpus[0] if cpus else (blocks[0] if blocks else {})
    merged = {k: v for b in blocks for k, v in b.items()}  # Arm puts "Hardware"/model lines in a trailing block

    vendor = _VENDORS.get(first.get("vendor_id", ""), first.get("vendor_id") or None)
    model_name = first.get("model name") or merged.get("model name")
    implementer = _int_auto(first.get("cpu implementer", "") or "x")
    if vendor is None and implementer is not None:
        vendor = _ARM_IMPLEMENTERS.get(implementer, f"implementer {implementer:#x}")
    if model_name is None and implementer is not None:
        part = _int_auto(first.get("cpu part", "") or "x")
        if part is not None:
            known = _ARM_PARTS.get(part) if implementer == 0x41 else None
            model_name = known or f"{vendor} part {part:#x}"

    flags = tuple((first.get("flags") or first.get("features") or "").split())
    mhz_values = []
    for b in cpus:
        try:
            mhz_values.append(float(b["cpu mhz"]))
        except (KeyError, ValueError):
            continue
    cores = {
        (b.get("physical id", "0"), b["core id"]) for b in cpus if "core id" in b
    }  # x86 only; Arm has no core ids here
    return ProcCpuInfo(
        model_name=model_name,
        vendor=vendor,
        family=_int_auto(first.get("cpu family", "") or "x"),
        model_number=_int_auto(first.get("model", "") or "x"),
        flags=flags,
        max_mhz=max(mhz_values) if mhz_values else None,
        logical_cpus=len(cpus),
        physical_cores=len(cores) or None,
    )


def isa_from_flags(flags: Iterable[str]) -> tuple[str, ...]:
    """honed's sorted ISA names for the x86 ``flags`` or Arm ``Features`` of /proc/cpuinfo."""
    found: set[str] = set()
    for flag in flags:
        name = _X86_FLAGS.get(flag) or _ARM_FLAGS.get(flag)
        if name:
            found.add(name)
    return tuple(sorted(found))


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _cache_bytes(text: str) -> int | None:
    match = re.fullmatch(r"(\d+)\s*([KMG]?)B?", text.strip(), re.IGNORECASE)
    if not match:
        return None
    scale = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[match.group(2).upper()]
    return int(match.group(1)) * scale


def read_caches(sysfs_root: Path, cpu: int = 0) -> dict[str, int]:
    """Cache sizes in bytes for ``cpu`` from ``<sysfs_root>/devices/system/cpu/cpuN/cache``; ``{}`` when absent."""
    base = sysfs_root / "devices" / "system" / "cpu" / f"cpu{cpu}" / "cache"
    caches: dict[str, int] = {}
    try:
        indexes = sorted(p for p in base.iterdir() if p.name.startswith("index"))
    except OSError:
        return caches
    for index in indexes:
        level, kind, size = (_read(index / n) for n in ("level", "type", "size"))
        if not level or not kind or not size or (nbytes := _cache_bytes(size)) is None:
            continue
        suffix = {"data": "d", "instruction": "i"}.get(kind.lower(), "")
        caches[f"l{level}{suffix}"] = nbytes
    return dict(sorted(caches.items()))


def read_max_freq_ghz(sysfs_root: Path, cpu: int = 0) -> float | None:
    """``cpuinfo_max_freq`` (kHz in sysfs) in GHz, or ``None`` when the cpufreq driver does not expose it."""
    text = _read(sysfs_root / "devices" / "system" / "cpu" / f"cpu{cpu}" / "cpufreq" / "cpuinfo_max_freq")
    try:
        khz = int(text) if text else 0
    except ValueError:
        return None
    return round(khz / 1e6, 3) if khz > 0 else None


def physical_cores_among(cpus: Iterable[int], sysfs_root: Path) -> int | None:
    """How many distinct physical cores the logical ``cpus`` sit on, from sysfs topology; ``None`` if unknown."""
    seen: set[tuple[str, str]] = set()
    for cpu in cpus:
        topo = sysfs_root / "devices" / "system" / "cpu" / f"cpu{cpu}" / "topology"
        core, package = _read(topo / "core_id"), _read(topo / "physical_package_id")
        if core is None or package is None:
            return None
        seen.add((package, core))
    return len(seen) or None


def _cgroup_dirs(sysfs_root: Path, cgroup_text: str, controller: str) -> list[Path]:
    """Candidate folders for ``controller`` (``""`` = cgroup v2), this process's own first, then the root."""
    base = sysfs_root / "fs" / "cgroup"
    dirs: list[Path] = []
    for line in cgroup_text.splitlines():
        _, _, rest = line.partition(":")
        names, _, path = rest.partition(":")
        rel = path.strip().lstrip("/")
        if not controller and not names and line.startswith("0:"):
            dirs += [base / rel] if rel else []
        elif controller and controller in names.split(","):
            for mount in (names, controller):
                dirs += [base / mount / rel] if rel else []
    if controller:
        dirs += [base / controller] + ([base / "cpu,cpuacct"] if controller == "cpu" else [])
    else:
        dirs.append(base)
    return list(dict.fromkeys(dirs))


def read_cgroup_limits(sysfs_root: Path, cgroup_text: str = "") -> tuple[float | None, int | None]:
    """(CPU quota in cores, memory limit in bytes) from cgroup v2 or v1; ``None`` for no limit or unknown.

    ``cgroup_text`` is ``/proc/self/cgroup``, used to find this process's own group.
    """
    quota: float | None = None
    memory: int | None = None
    for folder in _cgroup_dirs(sysfs_root, cgroup_text, ""):
        cpu_max = _read(folder / "cpu.max")
        if quota is None and cpu_max:
            limit, _, period = cpu_max.partition(" ")
            if limit.isdigit() and period.strip().isdigit() and int(period) > 0:
                quota = int(limit) / int(period)
        mem_max = _read(folder / "memory.max")
        if memory is None and mem_max and mem_max.isdigit():
            memory = int(mem_max)
    for folder in _cgroup_dirs(sysfs_root, cgroup_text, "cpu"):
        limit_text, period_text = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
        if quota is None and limit_text and period_text and limit_text.isdigit() and period_text.isdigit():
            quota = int(limit_text) / int(period_text) if int(period_text) > 0 else None
    for folder in _cgroup_dirs(sysfs_root, cgroup_text, "memory"):
        mem_limit = _read(folder / "memory.limit_in_bytes")
        # v1 writes "no limit" as a huge page-rounded number near 2**63
        if memory is None and mem_limit and mem_limit.isdigit() and int(mem_limit) < 2**62:
            memory = int(mem_limit)
    return (round(quota, 3) if quota is not None else None), memory


def parse_nvidia_smi(text: str, ort_providers: Iterable[str] = ()) -> tuple[GpuInfo, ...]:
    """GPUs from ``nvidia-smi --query-gpu=name,memory.total --format=csv,noheader`` output."""
    usable = tuple(p for p in ort_providers if p in ("CUDAExecutionProvider", "TensorrtExecutionProvider"))
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        name, _, memory = line.rpartition(",")
        match = re.fullmatch(r"\s*(\d+)\s*MiB\s*", memory)
        if not name.strip():
            name, match = line, None
        gpus.append(
            GpuInfo(
                name=name.strip(),
                vendor="NVIDIA",
                memory_bytes=int(match.group(1)) * 1024**2 if match else None,
                ort_providers=usable,
            )
        )
    return tuple(gpus)


def _clock_from_model_name(name: str | None) -> float | None:
    match = re.search(r"@\s*([\d.]+)\s*GHz", name or "", re.IGNORECASE)
    return float(match.group(1)) if match else None


# --- assembling a spec -------------------------------------------------------------------------------------


def build_spec(
    *,
    cpuinfo_text: str,
    sysfs_root: Path,
    arch: str,
    usable_cores: Iterable[int],
    logical_cores: int | None = None,
    physical_cores: int | None = None,
    memory_bytes: int = 0,
    ort_providers: Iterable[str] = (),
    nvidia_smi_text: str | None = None,
    cgroup_text: str = "",
) -> HardwareSpec:
    """A :class:`HardwareSpec` from raw sources; :func:`detect_hardware` feeds it the live ones."""
    info = parse_cpuinfo(cpuinfo_text)
    estimated: list[str] = []
    usable = tuple(sorted(set(usable_cores)))
    providers = tuple(ort_providers)

    isa = isa_from_flags(info.flags)
    if not isa and arch.lower() in ("arm64", "aarch64"):
        isa = ("neon",)  # baseline of every 64-bit Arm CPU
        estimated.append("isa")

    logical = logical_cores or info.logical_cpus or len(usable) or 1
    physical = physical_cores or info.physical_cores
    if physical is None:
        physical = logical
        estimated.append("physical_cores")
    if not usable:
        usable = tuple(range(logical))
        estimated.append("usable_cores")

    first_cpu = usable[0] if usable else 0
    clock = read_max_freq_ghz(sysfs_root, first_cpu)
    source = "sysfs cpuinfo_max_freq"
    if clock is None and info.max_mhz:
        clock, source = round(info.max_mhz / 1000, 3), "/proc/cpuinfo cpu MHz"
        estimated.append("clock_ghz")
    if clock is None and (parsed := _clock_from_model_name(info.model_name)) is not None:
        clock, source = parsed, "model name"
        estimated.append("clock_ghz")
    if clock is None:
        source = "unknown"

    peak_cores = physical_cores_among(usable, sysfs_root)
    if peak_cores is None:
        peak_cores = min(len(usable), physical)
        estimated.append("peak_cores")
    quota, memory_limit = read_cgroup_limits(sysfs_root, cgroup_text)
    vendor = info.vendor or "unknown"
    effective = min(float(peak_cores), quota) if quota is not None else peak_cores
    peaks = estimate_peaks(isa, effective, clock, vendor, info.family, info.model_number)
    if peaks.fp32_gflops is not None:
        estimated += ["peak_fp32_gflops", "peak_bf16_gflops", "peak_int8_gops"]

    caches = read_caches(sysfs_root, first_cpu)
    if not caches:
        estimated.append("caches")

    gpus = parse_nvidia_smi(nvidia_smi_text, providers) if nvidia_smi_text else ()
    return HardwareSpec(
        cpu_model=info.model_name or platform.processor() or "unknown",
        vendor=vendor,
        arch=arch,
        logical_cores=logical,
        physical_cores=physical,
        usable_cores=usable,
        isa=isa,
        caches=caches,
        clock_ghz=clock,
        clock_source=source,
        memory_bytes=memory_bytes,
        gpus=gpus,
        ort_providers=providers,
        peak_fp32_gflops=peaks.fp32_gflops,
        peak_bf16_gflops=peaks.bf16_gflops,
        peak_int8_gops=peaks.int8_gops,
        peak_cores=peak_cores,
        peak_basis=peaks.basis,
        cpu_family=info.family,
        cpu_model_number=info.model_number,
        cpu_quota_cores=quota,
        memory_limit_bytes=memory_limit,
        estimated=tuple(estimated),
    )


def _usable_cpus() -> tuple[int, ...]:
    getaffinity = getattr(os, "sched_getaffinity", None)
    if getaffinity is not None:
        try:
            return tuple(sorted(getaffinity(0)))
        except OSError:
            pass
    return tuple(range(os.cpu_count() or 1))


def _ort_providers() -> tuple[str, ...]:
    try:
        import onnxruntime

        return tuple(onnxruntime.get_available_providers())
    except Exception:  # a broken or missing ONNX Runtime install must not stop detection
        return ()


def _nvidia_smi() -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run(
            [exe, "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=_NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


_CACHED: HardwareSpec | None = None


def detect_hardware(refresh: bool = False) -> HardwareSpec:
    """Describe this machine; the result is cached for the process unless ``refresh`` is true. Never raises."""
    global _CACHED
    if _CACHED is not None and not refresh:
        return _CACHED
    import psutil

    cpuinfo = _read(Path("/proc/cpuinfo")) or ""
    try:
        memory = int(psutil.virtual_memory().total)
    except Exception:  # psutil can fail inside odd sandboxes; memory is then reported as 0
        memory = 0
    try:
        physical = psutil.cpu_count(logical=False)
    except Exception:
        physical = None
    _CACHED = build_spec(
        cpuinfo_text=cpuinfo,
        sysfs_root=Path("/sys"),
        arch=platform.machine() or "unknown",
        usable_cores=_usable_cpus(),
        logical_cores=os.cpu_count(),
        physical_cores=physical,
        memory_bytes=memory,
        ort_providers=_ort_providers(),
        nvidia_smi_text=_nvidia_smi(),
        cgroup_text=_read(Path("/proc/self/cgroup")) or "",
    )
    return _CACHED
