"""HardwareSpec: the peak table against hand-computed figures, parsers on real-looking cpuinfo/sysfs fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import honed
from honed.errors import InvalidArgument
from honed.hardware import (
    HardwareSpec,
    build_spec,
    detect_hardware,
    estimate_peaks,
    isa_from_flags,
    parse_cpuinfo,
    parse_nvidia_smi,
    physical_cores_among,
    read_caches,
    read_cgroup_limits,
    read_max_freq_ghz,
)

# --- fixtures: /proc/cpuinfo text as the kernel writes it (trimmed to the fields honed reads and a few more) ---

_ZEN3_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall "
    "nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid extd_apicid "
    "tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes "
    "xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw "
    "topoext ssbd ibrs ibpb stibp vmmcall fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap "
    "clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves clzero xsaveerptr wbnoinvd arat umip pku ospke vaes "
    "vpclmulqdq rdpid fsrm"
)
_ZEN4_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall "
    "nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc cpuid extd_apicid aperfmperf "
    "rapl pni pclmulqdq monitor ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand "
    "lahf_lm cmp_legacy svm extapic cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw ibs skinit wdt tce "
    "topoext perfctr_core perfctr_nb bpext perfctr_llc mwaitx cpb cat_l3 cdp_l3 hw_pstate ssbd mba perfmon_v2 "
    "ibrs ibpb stibp ibrs_enhanced vmmcall fsgsbase bmi1 avx2 smep bmi2 erms invpcid cqm rdt_a avx512f avx512dq "
    "rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves "
    "cqm_llc cqm_occup_llc cqm_mbm_total cqm_mbm_local avx512_bf16 clzero irperf xsaveerptr rdpru wbnoinvd amd_ppin "
    "cppc arat npt lbrv svm_lock nrip_save tsc_scale vmcb_clean flushbyasid decodeassists pausefilter pfthreshold "
    "avic v_vmsave_vmload vgif x2avic v_spec_ctrl vnmi avx512vbmi umip pku ospke avx512_vbmi2 gfni vaes "
    "vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq la57 rdpid overflow_recov succor smca fsrm flush_l1d"
)
_SPR_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx fxsr sse sse2 ss "
    "ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc art arch_perfmon pebs bts rep_good nopl xtopology "
    "nonstop_tsc cpuid aperfmperf tsc_known_freq pni pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 sdbg "
    "fma cx16 xtpr pdcm pcid dca sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand "
    "lahf_lm abm 3dnowprefetch cpuid_fault epb cat_l3 cat_l2 cdp_l3 invpcid_single intel_ppin cdp_l2 ssbd mba "
    "ibrs ibpb stibp ibrs_enhanced tpr_shadow flexpriority ept vpid ept_ad fsgsbase tsc_adjust bmi1 avx2 smep "
    "bmi2 erms invpcid cqm rdt_a avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb intel_pt avx512cd "
    "sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves cqm_llc cqm_occup_llc cqm_mbm_total cqm_mbm_local "
    "split_lock_detect avx_vnni avx512_bf16 wbnoinvd dtherm ida arat pln pts hfi vnmi avx512vbmi umip pku ospke "
    "waitpkg avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg tme avx512_vpopcntdq la57 rdpid "
    "bus_lock_detect cldemote movdiri movdir64b enqcmd fsrm md_clear serialize tsxldtrk pconfig arch_lbr ibt "
    "amx_bf16 avx512_fp16 amx_tile amx_int8 flush_l1d arch_capabilities"
)
_GRAVITON3_FEATURES = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop sha3 "
    "sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcp flagm ssbs paca pacg dcpodp svei8mm svebf16 i8mm bf16 "
    "dgh rng"
)


def _x86_cpuinfo(*, vendor: str, family: int, model: int, name: str, mhz: float, flags: str, cpus: int, cores: int):
    """cpuinfo text for ``cpus`` logical CPUs on ``cores`` physical cores (SMT siblings when cpus > cores)."""
    blocks = []
    for cpu in range(cpus):
        blocks.append(
            f"processor\t: {cpu}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
            f"model name\t: {name}\nstepping\t: 1\ncpu MHz\t\t: {mhz:.3f}\ncache size\t: 512 KB\n"
            f"physical id\t: 0\nsiblings\t: {cpus}\ncore id\t\t: {cpu % cores}\ncpu cores\t: {cores}\n"
            f"fpu\t\t: yes\nflags\t\t: {flags}\nbogomips\t: 4890.81\nclflush size\t: 64\n"
        )
    return "\n".join(blocks) + "\n"


ZEN3_THIS_BOX = _x86_cpuinfo(
    vendor="AuthenticAMD", family=25, model=1, name="AMD EPYC", mhz=2445.406, flags=_ZEN3_FLAGS, cpus=2, cores=2
)
ZEN4 = _x86_cpuinfo(
    vendor="AuthenticAMD",
    family=25,
    model=17,
    name="AMD EPYC 9R14 96-Core Processor",
    mhz=3600.0,
    flags=_ZEN4_FLAGS,
    cpus=4,
    cores=2,
)
SPR = _x86_cpuinfo(
    vendor="GenuineIntel",
    family=6,
    model=143,
    name="Intel(R) Xeon(R) Platinum 8488C @ 2.40GHz",
    mhz=2400.0,
    flags=_SPR_FLAGS,
    cpus=8,
    cores=4,
)
GRAVITON3 = "".join(
    f"processor\t: {cpu}\nBogoMIPS\t: 2100.00\nFeatures\t: {_GRAVITON3_FEATURES}\nCPU implementer\t: 0x41\n"
    "CPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd40\nCPU revision\t: 1\n\n"
    for cpu in range(2)
)


def _sysfs(
    root: Path,
    *,
    topology: dict[int, tuple[int, int]],
    caches: list[tuple[int, str, str]],
    max_freq_khz: int | None = None,
) -> Path:
    """Write a /sys tree: ``topology`` maps cpu -> (package, core); ``caches`` are (level, type, size) per cpu."""
    for cpu, (package, core) in topology.items():
        base = root / "devices" / "system" / "cpu" / f"cpu{cpu}"
        (base / "topology").mkdir(parents=True)
        (base / "topology" / "core_id").write_text(f"{core}\n")
        (base / "topology" / "physical_package_id").write_text(f"{package}\n")
        for i, (level, kind, size) in enumerate(caches):
            index = base / "cache" / f"index{i}"
            index.mkdir(parents=True)
            (index / "level").write_text(f"{level}\n")
            (index / "type").write_text(f"{kind}\n")
            (index / "size").write_text(f"{size}\n")
            (index / "shared_cpu_list").write_text(f"{cpu}\n")
        if max_freq_khz is not None:
            (base / "cpufreq").mkdir()
            (base / "cpufreq" / "cpuinfo_max_freq").write_text(f"{max_freq_khz}\n")
    return root


# --- the peak table ----------------------------------------------------------------------------------------


def test_zen4_reference_from_the_issue() -> None:
    # 2 cores x 3.6 GHz x 32 FLOP/cycle (AVX-512 double-pumped on 256-bit units)
    peaks = estimate_peaks(isa_from_flags(_ZEN4_FLAGS.split()), 2, 3.6, "AMD", 25)
    assert peaks.fp32_per_cycle == 32
    assert peaks.fp32_gflops == pytest.approx(230.4)
    assert peaks.bf16_gflops == pytest.approx(460.8)
    assert peaks.int8_gops == pytest.approx(921.6)
    # the issue's rounded reference: about 230 / 466 / 934
    assert peaks.fp32_gflops == pytest.approx(230, rel=0.02)
    assert peaks.bf16_gflops == pytest.approx(466, rel=0.02)
    assert peaks.int8_gops == pytest.approx(934, rel=0.02)


def test_zen3_avx2_only() -> None:
    peaks = estimate_peaks(isa_from_flags(_ZEN3_FLAGS.split()), 2, 2.5, "AMD", 25, 1)
    assert (peaks.fp32_gflops, peaks.bf16_gflops, peaks.int8_gops) == (160.0, 160.0, 320.0)


def test_sapphire_rapids_amx() -> None:
    # 4 cores x 2.0 GHz: AVX-512 64 FLOP/cycle; AMX 1024 BF16 FLOP/cycle and 2048 INT8 op/cycle
    peaks = estimate_peaks(isa_from_flags(_SPR_FLAGS.split()), 4, 2.0, "Intel", 6)
    assert (peaks.fp32_gflops, peaks.bf16_gflops, peaks.int8_gops) == (512.0, 8192.0, 16384.0)


@pytest.mark.parametrize(
    ("isa", "vendor", "family", "model", "per_cycle"),
    [
        (("avx512f", "avx2", "fma"), "AMD", 26, 2, 64),  # Zen 5: full 512-bit
        (("avx2", "fma"), "AMD", 23, 1, 16),  # Zen 1: 128-bit units
        (("avx2", "fma"), "AMD", 23, 0x31, 32),  # Zen 2
        (("avx2", "fma", "avx_vnni"), "Intel", 6, 151, 32),  # Alder Lake
        (("avx", "sse4_2"), "Intel", 6, 42, 16),  # Sandy Bridge: no FMA
        (("sse4_2",), "Intel", 6, 26, 8),
        (("neon",), "ARM", None, None, 16),
        (("neon", "sve"), "ARM", None, None, 32),
    ],
)
def test_fp32_rate_per_path(isa, vendor, family, model, per_cycle) -> None:
    peaks = estimate_peaks(isa, 1, 1.0, vendor, family, model)
    assert peaks.fp32_per_cycle == per_cycle
    assert peaks.fp32_gflops == float(per_cycle)


def test_avx_vnni_quadruples_int8_without_avx512() -> None:
    assert estimate_peaks(("avx2", "fma", "avx_vnni"), 1, 1.0, "Intel").int8_gops == 128.0


def test_peaks_unknown_without_clock_cores_or_isa() -> None:
    assert estimate_peaks(("avx2", "fma"), 2, None, "AMD").fp32_gflops is None
    assert estimate_peaks(("avx2", "fma"), 0, 3.0, "AMD").fp32_gflops is None
    unknown = estimate_peaks((), 2, 3.0, "")
    assert (unknown.fp32_gflops, unknown.fp32_per_cycle) == (None, None)


# --- parsers -----------------------------------------------------------------------------------------------


def test_parse_cpuinfo_x86_with_smt() -> None:
    info = parse_cpuinfo(SPR)
    assert info.vendor == "Intel"
    assert (info.family, info.model_number) == (6, 143)
    assert info.logical_cpus == 8
    assert info.physical_cores == 4
    assert info.max_mhz == pytest.approx(2400.0)


def test_parse_cpuinfo_arm() -> None:
    info = parse_cpuinfo(GRAVITON3)
    assert info.vendor == "ARM"
    assert info.model_name == "Neoverse V1"
    assert info.physical_cores is None
    assert isa_from_flags(info.flags) == ("neon", "neon_bf16", "neon_dotprod", "sve")


def test_parse_cpuinfo_empty_text() -> None:
    info = parse_cpuinfo("")
    assert (info.model_name, info.vendor, info.flags, info.logical_cpus) == (None, None, (), 0)


def test_isa_names_are_sorted_and_filtered() -> None:
    assert isa_from_flags(_SPR_FLAGS.split()) == (
        "amx_bf16",
        "amx_int8",
        "amx_tile",
        "avx",
        "avx2",
        "avx512_bf16",
        "avx512_fp16",
        "avx512_vnni",
        "avx512bw",
        "avx512f",
        "avx512vl",
        "avx_vnni",
        "f16c",
        "fma",
        "sse4_2",
    )


def test_read_caches_and_freq(tmp_path: Path) -> None:
    root = _sysfs(
        tmp_path,
        topology={0: (0, 0)},
        caches=[(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "2048K"), (3, "Unified", "105M")],
        max_freq_khz=3800000,
    )
    assert read_caches(root) == {"l1d": 48 * 1024, "l1i": 32 * 1024, "l2": 2 * 1024**2, "l3": 105 * 1024**2}
    assert read_max_freq_ghz(root) == pytest.approx(3.8)


def test_missing_sysfs_is_not_an_error(tmp_path: Path) -> None:
    assert read_caches(tmp_path / "nope") == {}
    assert read_max_freq_ghz(tmp_path / "nope") is None
    assert physical_cores_among([0, 1], tmp_path / "nope") is None


def test_smt_siblings_count_once(tmp_path: Path) -> None:
    root = _sysfs(tmp_path, topology={0: (0, 0), 1: (0, 1), 2: (0, 0), 3: (0, 1)}, caches=[])
    assert physical_cores_among([0, 2], root) == 1
    assert physical_cores_among([0, 1, 2, 3], root) == 2


def test_cgroup_v2_limits_of_this_process(tmp_path: Path) -> None:
    group = tmp_path / "fs" / "cgroup" / "kubepods" / "pod1"
    group.mkdir(parents=True)
    (group / "cpu.max").write_text("150000 100000\n")
    (group / "memory.max").write_text("4294967296\n")
    (tmp_path / "fs" / "cgroup" / "cpu.max").write_text("max 100000\n")
    assert read_cgroup_limits(tmp_path, "0::/kubepods/pod1\n") == (1.5, 4 * 1024**3)
    assert read_cgroup_limits(tmp_path, "0::/\n") == (None, None)


def test_cgroup_v1_limits(tmp_path: Path) -> None:
    cpu = tmp_path / "fs" / "cgroup" / "cpu,cpuacct" / "docker" / "abc"
    mem = tmp_path / "fs" / "cgroup" / "memory" / "docker" / "abc"
    cpu.mkdir(parents=True)
    mem.mkdir(parents=True)
    (cpu / "cpu.cfs_quota_us").write_text("200000\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    (mem / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    text = "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n"
    assert read_cgroup_limits(tmp_path, text) == (2.0, None)
    (mem / "memory.limit_in_bytes").write_text("1073741824\n")
    assert read_cgroup_limits(tmp_path, text) == (2.0, 1024**3)


def test_cpu_quota_caps_the_peak(tmp_path: Path) -> None:
    root = _sysfs(tmp_path, topology={c: (0, c) for c in range(4)}, caches=[], max_freq_khz=2000000)
    (root / "fs" / "cgroup").mkdir(parents=True)
    (root / "fs" / "cgroup" / "cpu.max").write_text("50000 100000\n")
    spec = build_spec(cpuinfo_text=ZEN3_THIS_BOX, sysfs_root=root, arch="x86_64", usable_cores=range(4))
    assert (spec.peak_cores, spec.cpu_quota_cores) == (4, 0.5)
    assert spec.peak_fp32_gflops == pytest.approx(0.5 * 2.0 * 32)


def test_parse_nvidia_smi() -> None:
    text = "NVIDIA H100 80GB HBM3, 81559 MiB\nNVIDIA A10G, 23028 MiB\n"
    gpus = parse_nvidia_smi(text, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert [g.name for g in gpus] == ["NVIDIA H100 80GB HBM3", "NVIDIA A10G"]
    assert gpus[0].memory_bytes == 81559 * 1024**2
    assert gpus[1].ort_providers == ("CUDAExecutionProvider",)
    assert parse_nvidia_smi("Tesla T4, [N/A]\n")[0].memory_bytes is None


# --- whole specs from fixtures -----------------------------------------------------------------------------


def test_spec_sapphire_rapids_server(tmp_path: Path) -> None:
    root = _sysfs(
        tmp_path,
        topology={c: (0, c % 4) for c in range(8)},
        caches=[(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "2048K"), (3, "Unified", "107520K")],
        max_freq_khz=3800000,
    )
    spec = build_spec(
        cpuinfo_text=SPR,
        sysfs_root=root,
        arch="x86_64",
        usable_cores=range(8),
        memory_bytes=64 * 1024**3,
        ort_providers=["CPUExecutionProvider"],
    )
    assert spec.vendor == "Intel"
    assert (spec.logical_cores, spec.physical_cores, spec.peak_cores) == (8, 4, 4)
    assert spec.has("amx_bf16", "amx_int8", "avx512_vnni")
    assert (spec.clock_ghz, spec.clock_source) == (3.8, "sysfs cpuinfo_max_freq")
    assert "clock_ghz" not in spec.estimated
    assert spec.caches["l3"] == 107520 * 1024
    assert spec.peak_gflops("fp32") == pytest.approx(4 * 3.8 * 64)
    assert spec.peak_gflops("bf16") == pytest.approx(4 * 3.8 * 1024)
    assert spec.peak_gflops("int8") == pytest.approx(4 * 3.8 * 2048)


def test_spec_zen4_two_cores_by_affinity(tmp_path: Path) -> None:
    # 4 logical CPUs on 2 cores; the process may only use one sibling of each core; no cpufreq in the VM
    root = _sysfs(tmp_path, topology={0: (0, 0), 1: (0, 1), 2: (0, 0), 3: (0, 1)}, caches=[(2, "Unified", "1024K")])
    spec = build_spec(cpuinfo_text=ZEN4, sysfs_root=root, arch="x86_64", usable_cores=[0, 1])
    assert spec.peak_cores == 2
    assert spec.clock_source == "/proc/cpuinfo cpu MHz"
    assert "clock_ghz" in spec.estimated
    assert (spec.peak_fp32_gflops, spec.peak_bf16_gflops, spec.peak_int8_gops) == (230.4, 460.8, 921.6)


def test_spec_this_box_zen3(tmp_path: Path) -> None:
    root = _sysfs(
        tmp_path,
        topology={0: (0, 0), 1: (0, 1)},
        caches=[(1, "Data", "32K"), (1, "Instruction", "32K"), (2, "Unified", "512K"), (3, "Unified", "32768K")],
    )
    spec = build_spec(cpuinfo_text=ZEN3_THIS_BOX, sysfs_root=root, arch="x86_64", usable_cores=[0, 1])
    assert spec.isa == ("avx", "avx2", "f16c", "fma", "sse4_2")
    assert spec.clock_ghz == pytest.approx(2.445)
    assert spec.peak_fp32_gflops == pytest.approx(round(2 * 2.445 * 32, 1))
    assert spec.peak_bf16_gflops == spec.peak_fp32_gflops  # no native BF16
    assert spec.peak_int8_gops == pytest.approx(2 * spec.peak_fp32_gflops, abs=0.1)  # no VNNI


def test_clock_from_model_name_as_last_resort(tmp_path: Path) -> None:
    text = "\n".join(line for line in SPR.splitlines() if not line.startswith("cpu MHz"))
    spec = build_spec(cpuinfo_text=text, sysfs_root=tmp_path, arch="x86_64", usable_cores=[0])
    assert (spec.clock_ghz, spec.clock_source) == (2.4, "model name")
    assert "peak_cores" in spec.estimated  # no topology in sysfs


def test_nothing_known_still_builds(tmp_path: Path) -> None:
    spec = build_spec(cpuinfo_text="", sysfs_root=tmp_path, arch="riscv64", usable_cores=[])
    assert spec.peak_gflops("fp32") is None
    assert spec.clock_source == "unknown"
    assert spec.caches == {}


def test_json_round_trip(tmp_path: Path) -> None:
    root = _sysfs(tmp_path, topology={0: (0, 0)}, caches=[(1, "Data", "32K")])
    spec = build_spec(
        cpuinfo_text=ZEN4,
        sysfs_root=root,
        arch="x86_64",
        usable_cores=[0],
        ort_providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
        nvidia_smi_text="NVIDIA L4, 23034 MiB\n",
    )
    data = json.loads(json.dumps(spec.to_dict()))
    assert HardwareSpec.from_dict(data) == spec
    assert data["gpus"][0]["ort_providers"] == ["CUDAExecutionProvider"]


def test_from_dict_rejects_bad_data() -> None:
    with pytest.raises(InvalidArgument, match="missing the field 'cpu_model'"):
        HardwareSpec.from_dict({})
    good = detect_hardware().to_dict()
    with pytest.raises(InvalidArgument, match="malformed"):
        HardwareSpec.from_dict({**good, "logical_cores": "many"})


def test_unknown_precision() -> None:
    with pytest.raises(InvalidArgument, match="fp32, bf16, int8"):
        detect_hardware().peak_gflops("fp8")


def test_detect_hardware_on_this_machine() -> None:
    spec = detect_hardware()
    assert spec is detect_hardware()  # cached
    assert detect_hardware(refresh=True) == spec
    assert honed.detect_hardware is detect_hardware
    assert spec.usable_cores and 1 <= spec.peak_cores <= len(spec.usable_cores)
    assert spec.logical_cores >= len(spec.usable_cores)
    assert spec.memory_bytes > 0
    assert "CPUExecutionProvider" in spec.ort_providers
