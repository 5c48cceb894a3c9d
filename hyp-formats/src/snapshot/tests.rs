//! Round trips, chains, and a fuzzer: random bytes, every truncation, bit flips and byte
//! corruptions of a valid file, and structural mutations with the CRCs repaired so they reach
//! the checks behind the checksums. Every bad file must be refused, never a panic.

use super::crc::crc32;
use super::*;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;
use proptest::prelude::*;

const RAM_BASE: u64 = 0x4000_0000;
const FIRST_GFN: u64 = RAM_BASE / 4096;

fn config(vcpus: u32, ram_pages: u64) -> VmConfig {
    VmConfig {
        name: VmName::new("linux").unwrap(),
        vcpus,
        ram_base: RAM_BASE,
        ram_size: ram_pages * 4096,
        counter_freq: 62_500_000,
    }
}

fn header(id: u64, kind: Kind, config: VmConfig) -> Header {
    Header {
        id,
        kind,
        config,
        counter: 0x1234_5678_9abc + id,
        live: false,
    }
}

/// xorshift64: deterministic filler.
fn mix(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

fn vcpu(index: u32, seed: u64) -> VcpuState {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        s = mix(s);
        s
    };
    let mut v = VcpuState {
        index,
        power: if index == 0 {
            PowerState::On
        } else {
            PowerState::Off
        },
        pstate: 0x3c5,
        ..VcpuState::default()
    };
    for x in &mut v.x {
        *x = next();
    }
    v.sp_el0 = next();
    v.pc = next();
    v.el1.sctlr_el1 = next();
    v.el1.spsr_el1 = next();
    v.el1.cntv_cval_el0 = next();
    for q in &mut v.q {
        *q = u128::from(next()) << 64 | u128::from(next());
    }
    v.fpcr = next();
    v.fpsr = next();
    v.gic.ich_vmcr = next();
    v.gic.ich_ap1r[3] = next();
    v
}

fn pages(gfn: u64, count: usize, seed: u8) -> Vec<u8> {
    (0..count * PAGE_SIZE)
        .map(|i| (i as u64 ^ gfn.wrapping_mul(31)) as u8 ^ seed)
        .collect()
}

struct Spec {
    header: Header,
    vcpus: Vec<VcpuState>,
    devices: Vec<(DeviceKind, Vec<u8>)>,
    runs: Vec<(u64, Vec<u8>)>,
}

fn write(spec: &Spec) -> (Vec<u8>, Summary) {
    let mut out = Vec::new();
    let mut w = SnapshotWriter::begin(&mut out, &spec.header).unwrap();
    // Interleave section kinds: the format allows any order.
    for (i, (gfn, data)) in spec.runs.iter().enumerate() {
        w.pages(*gfn, data).unwrap();
        if let Some(v) = spec.vcpus.get(i) {
            w.vcpu(v).unwrap();
        }
    }
    for v in spec.vcpus.iter().skip(spec.runs.len()) {
        w.vcpu(v).unwrap();
    }
    for (k, blob) in &spec.devices {
        w.device(*k, blob).unwrap();
    }
    let summary = w.finish().unwrap();
    (out, summary)
}

fn full_spec(vcpus: u32) -> Spec {
    Spec {
        header: header(7, Kind::Full, config(vcpus, 64)),
        vcpus: (0..vcpus).map(|i| vcpu(i, u64::from(i) + 1)).collect(),
        devices: vec![
            (DeviceKind::Vgic, (0..300u32).map(|i| i as u8).collect()),
            (DeviceKind::Uart, b"uart state".to_vec()),
        ],
        runs: vec![
            (FIRST_GFN + 10, pages(FIRST_GFN + 10, 3, 1)),
            (FIRST_GFN, pages(FIRST_GFN, 2, 2)),
            (FIRST_GFN + 63, pages(FIRST_GFN + 63, 1, 3)),
        ],
    }
}

/// A small valid file for the exhaustive corruption tests: one vCPU, both devices, one page.
fn small_file() -> Vec<u8> {
    let spec = Spec {
        header: header(1, Kind::Full, config(1, 4)),
        vcpus: vec![vcpu(0, 9)],
        devices: vec![
            (DeviceKind::Vgic, vec![1, 2, 3]),
            (DeviceKind::Uart, vec![4; 5]),
        ],
        runs: vec![(FIRST_GFN + 1, pages(FIRST_GFN + 1, 1, 4))],
    };
    write(&spec).0
}

fn assert_matches(s: &Snapshot<'_>, spec: &Spec) {
    assert_eq!(s.header(), &spec.header);
    assert_eq!(s.vcpus(), spec.vcpus.as_slice());
    for k in DeviceKind::ALL {
        let want = spec
            .devices
            .iter()
            .find(|(d, _)| *d == k)
            .map(|(_, b)| &b[..]);
        assert_eq!(s.device(k), want, "{k:?}");
    }
    let mut want: Vec<(u64, &[u8])> = spec.runs.iter().map(|(g, d)| (*g, &d[..])).collect();
    want.sort_by_key(|r| r.0);
    let got: Vec<(u64, &[u8])> = s.runs().map(|r| (r.first_gfn, r.data)).collect();
    assert_eq!(got, want);
    let total: usize = spec.runs.iter().map(|r| r.1.len() / PAGE_SIZE).sum();
    assert_eq!(s.page_count(), total as u64);
    for (gfn, data) in &spec.runs {
        for (i, page) in data.chunks(PAGE_SIZE).enumerate() {
            assert_eq!(s.page(gfn + i as u64), Some(page));
        }
    }
}

#[test]
fn full_snapshot_round_trips() {
    let spec = full_spec(3);
    let (bytes, summary) = write(&spec);
    assert_eq!(summary.bytes, bytes.len() as u64);
    assert_eq!(summary.sections, 3 + 2 + 3);
    assert_eq!(summary.pages, 6);
    assert_eq!(summary.crc, crc32(&bytes[..bytes.len() - TRAILER_LEN]));
    assert_eq!(&bytes[..8], b"HYPSNAP\0");
    assert_eq!(&bytes[bytes.len() - 32..][..8], b"HYPSEND\0");
    let s = Snapshot::parse(&bytes).unwrap();
    assert_matches(&s, &spec);
    assert_eq!(s.page(FIRST_GFN + 2), None, "gap between runs");
    assert_eq!(s.page(FIRST_GFN + 13), None, "just past a run");
    assert_eq!(s.len(), bytes.len());
}

#[test]
fn header_layout_is_as_documented() {
    let spec = full_spec(2);
    let b = write(&spec).0;
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    assert_eq!(u32_at(8), 3, "version");
    assert_eq!(u32_at(12), 120, "header length");
    assert_eq!(u32_at(16), 1, "full");
    assert_eq!(u64_at(24), 7, "id");
    assert_eq!(&b[40..46], b"linux\0");
    assert_eq!(u32_at(72), 2, "vCPUs");
    assert_eq!(u64_at(80), RAM_BASE);
    assert_eq!(u64_at(88), 64 * 4096);
    assert_eq!(u64_at(96), spec.header.counter);
    assert_eq!(u64_at(104), 62_500_000);
    assert_eq!(u32_at(116), crc32(&b[..116]));
    // The first section: a PAGES run of 3 pages.
    assert_eq!(u32_at(120), 4);
    assert_eq!(u64_at(128), 16 + 3 * 4096);
    let end = 144 + 16 + 3 * 4096;
    let mut sec = b[120..136].to_vec();
    sec.extend_from_slice(&b[144..end]);
    assert_eq!(
        u32_at(136),
        crc32(&sec),
        "section CRC covers type, flags, length, payload"
    );
    assert_eq!(u64_at(144), FIRST_GFN + 10);
    assert_eq!(u64_at(152), 3);
    // Then vCPU 0: index, power, x0.
    assert_eq!(u32_at(end), 1);
    assert_eq!(u64_at(end + 8), VCPU_LEN as u64);
    assert_eq!(u32_at(end + 24), 0);
    assert_eq!(u32_at(end + 28), 1, "vCPU 0 is on");
    assert_eq!(u64_at(end + 32), spec.vcpus[0].x[0]);
    let trailer = b.len() - 32;
    assert_eq!(u64_at(trailer + 8), 3 + 2 + 2, "sections");
    assert_eq!(u64_at(trailer + 16), 6, "pages");
}

#[test]
fn el1_register_order_is_the_documented_one() {
    assert_eq!(El1Regs::NAMES[0], "sctlr_el1");
    assert_eq!(El1Regs::NAMES[18], "cntv_ctl_el0");
    assert_eq!(El1Regs::NAMES[24], "spsr_el1");
    assert_eq!(El1Regs::NAMES[35], "cntp_ctl_el0");
    assert_eq!(El1Regs::NAMES[36], "cntp_cval_el0");
    let mut v = vcpu(0, 1);
    v.el1 = El1Regs {
        cntv_cval_el0: 0xfeed,
        ..El1Regs::default()
    };
    let b = v.encode();
    // index, power, 31 x, sp_el0, pc, pstate: 8 + 34 * 8 = 280; cntv_cval_el0 is the 20th.
    assert_eq!(
        u64::from_le_bytes(b[280 + 19 * 8..][..8].try_into().unwrap()),
        0xfeed
    );
}

fn diff_chain() -> (Spec, Spec, Spec) {
    let base = full_spec(2);
    let cfg = base.header.config;
    let d1 = Spec {
        header: header(8, Kind::Diff { base_id: 7 }, cfg),
        vcpus: vec![vcpu(0, 100), vcpu(1, 101)],
        devices: vec![(DeviceKind::Uart, b"newer uart".to_vec())],
        runs: vec![(FIRST_GFN + 1, pages(FIRST_GFN + 1, 1, 50))],
    };
    let d2 = Spec {
        header: header(9, Kind::Diff { base_id: 8 }, cfg),
        vcpus: vec![vcpu(0, 200), vcpu(1, 201)],
        devices: vec![],
        runs: vec![
            (FIRST_GFN + 1, pages(FIRST_GFN + 1, 1, 60)),
            (FIRST_GFN + 11, pages(FIRST_GFN + 11, 2, 61)),
            (FIRST_GFN + 30, pages(FIRST_GFN + 30, 1, 62)),
        ],
    };
    (base, d1, d2)
}

#[test]
fn diff_round_trips_and_chain_applies_newest() {
    let (base, d1, d2) = diff_chain();
    let files = [write(&base).0, write(&d1).0, write(&d2).0];
    let snaps: Vec<Snapshot<'_>> = files.iter().map(|f| Snapshot::parse(f).unwrap()).collect();
    assert_matches(&snaps[1], &d1);
    assert_matches(&snaps[2], &d2);
    let chain = Chain::new(snaps[0].clone(), snaps[1..].iter().cloned()).unwrap();
    assert_eq!(chain.header().id, 9);
    assert_eq!(chain.vcpus(), d2.vcpus.as_slice());
    assert_eq!(chain.device(DeviceKind::Uart), Some(&b"newer uart"[..]));
    assert_eq!(chain.device(DeviceKind::Vgic), Some(&base.devices[0].1[..]));

    // Reference: apply every run in order into a map.
    let mut want = alloc::collections::BTreeMap::new();
    for spec in [&base, &d1, &d2] {
        for (gfn, data) in &spec.runs {
            for (i, p) in data.chunks(PAGE_SIZE).enumerate() {
                want.insert(gfn + i as u64, p.to_vec());
            }
        }
    }
    let mut got: Vec<(u64, Vec<u8>)> = chain.pages().map(|(g, p)| (g, p.to_vec())).collect();
    got.sort();
    let want: Vec<(u64, Vec<u8>)> = want.into_iter().collect();
    assert_eq!(got, want);
    assert_eq!(chain.page_count(), 7, "6 base pages and frame +30");
    assert_eq!(
        chain.page(FIRST_GFN + 1),
        Some(&pages(FIRST_GFN + 1, 1, 60)[..])
    );
    assert_eq!(
        chain.page(FIRST_GFN),
        Some(&pages(FIRST_GFN, 2, 2)[..PAGE_SIZE])
    );
    assert_eq!(chain.page(FIRST_GFN + 40), None);
}

#[test]
fn chain_refuses_bad_links() {
    let (base, d1, d2) = diff_chain();
    let f = [write(&base).0, write(&d1).0, write(&d2).0];
    let [b, d1s, d2s] = f.each_ref().map(|f| Snapshot::parse(f).unwrap());
    assert_eq!(
        Chain::new(d1s.clone(), []).unwrap_err(),
        ChainError::BaseNotFull { id: 8 }
    );
    assert_eq!(
        Chain::new(b.clone(), [d2s.clone()]).unwrap_err(),
        ChainError::BrokenLink {
            position: 1,
            base_id: 8,
            previous_id: 7
        }
    );
    assert_eq!(
        Chain::new(b.clone(), [b.clone()]).unwrap_err(),
        ChainError::NotADiff { position: 1, id: 7 }
    );
    let mut other = diff_chain().1;
    other.header.config.counter_freq = 1;
    let of = write(&other).0;
    let e = Chain::new(b.clone(), [Snapshot::parse(&of).unwrap()]).unwrap_err();
    assert_eq!(e, ChainError::ConfigMismatch { position: 1 });
    assert!(e.to_string().contains("diff 1"));
    Chain::new(b, [d1s, d2s]).unwrap();
}

/// A sink that fails once `limit` bytes were written.
struct Short {
    limit: usize,
    got: usize,
}

impl Sink for Short {
    type Error = &'static str;
    fn write(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        if self.got + bytes.len() > self.limit {
            return Err("disk full");
        }
        self.got += bytes.len();
        Ok(())
    }
}

#[test]
fn writer_refuses_what_the_reader_would() {
    let cfg = config(2, 16);
    let h = header(1, Kind::Full, cfg);
    let mut out = Vec::new();
    let mut w = SnapshotWriter::begin(&mut out, &h).unwrap();
    assert_eq!(
        w.vcpu(&vcpu(2, 1)),
        Err(WriteError::VcpuIndex { index: 2, vcpus: 2 })
    );
    w.vcpu(&vcpu(1, 1)).unwrap();
    assert_eq!(w.vcpu(&vcpu(1, 1)), Err(WriteError::VcpuTwice { index: 1 }));
    let mut el2 = vcpu(0, 1);
    el2.pstate = 0x3c9;
    assert_eq!(
        w.vcpu(&el2),
        Err(WriteError::Pstate {
            index: 0,
            pstate: 0x3c9
        })
    );
    w.device(DeviceKind::Vgic, b"x").unwrap();
    assert_eq!(
        w.device(DeviceKind::Vgic, b"y"),
        Err(WriteError::DeviceTwice {
            kind: DeviceKind::Vgic
        })
    );
    assert_eq!(
        w.pages(FIRST_GFN, &[]),
        Err(WriteError::PageData { len: 0 })
    );
    assert_eq!(
        w.pages(FIRST_GFN, &[0; 4097]),
        Err(WriteError::PageData { len: 4097 })
    );
    assert_eq!(
        w.pages(FIRST_GFN + 15, &[0; 8192]),
        Err(WriteError::RunOutsideRam {
            first_gfn: FIRST_GFN + 15,
            count: 2
        })
    );
    assert_eq!(
        w.pages(FIRST_GFN - 1, &[0; 4096]),
        Err(WriteError::RunOutsideRam {
            first_gfn: FIRST_GFN - 1,
            count: 1
        })
    );
    assert_eq!(
        w.pages(u64::MAX, &[0; 4096]),
        Err(WriteError::RunOutsideRam {
            first_gfn: u64::MAX,
            count: 1
        })
    );
    w.pages(FIRST_GFN + 15, &[0; 4096]).unwrap();
    assert_eq!(w.finish(), Err(WriteError::MissingVcpu { index: 0 }));

    let mut bad = h;
    bad.config.vcpus = 0;
    assert!(matches!(
        SnapshotWriter::begin(Vec::new(), &bad),
        Err(WriteError::Config(ConfigError::VcpuCount { vcpus: 0 }))
    ));
    bad = h;
    bad.config.ram_base = 0x1001;
    assert!(matches!(
        SnapshotWriter::begin(Vec::new(), &bad),
        Err(WriteError::Config(ConfigError::Ram { .. }))
    ));
}

#[test]
fn sink_failure_poisons_the_writer() {
    let h = header(1, Kind::Full, config(1, 16));
    let mut w = SnapshotWriter::begin(Short { limit: 200, got: 0 }, &h).unwrap();
    assert_eq!(w.vcpu(&vcpu(0, 1)), Err(WriteError::Sink("disk full")));
    assert_eq!(w.vcpu(&vcpu(0, 1)), Err(WriteError::Poisoned));
    assert_eq!(w.finish(), Err(WriteError::Poisoned));
    assert!(SnapshotWriter::begin(Short { limit: 10, got: 0 }, &h).is_err());
}

#[test]
fn other_version_is_refused_naming_both() {
    let mut f = small_file();
    f[8..12].copy_from_slice(&(VERSION + 1).to_le_bytes());
    let e = Snapshot::parse(&f).unwrap_err();
    assert_eq!(
        e,
        SnapshotError::Version {
            found: VERSION + 1,
            supported: VERSION
        }
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&alloc::format!("version {}", VERSION + 1))
            && msg.contains(&alloc::format!("version {VERSION}")),
        "{msg}"
    );
    // Even a bare 12-byte prefix of a future file is refused by version, not as truncated.
    assert!(matches!(
        Snapshot::parse(&f[..12]),
        Err(SnapshotError::Version { found, .. }) if found == VERSION + 1
    ));
}

#[test]
fn version_2_files_are_refused_for_the_physical_timer() {
    // A version 2 file lacks the emulated physical timer: refused by version, with both named.
    let mut f = small_file();
    f[8..12].copy_from_slice(&2u32.to_le_bytes());
    let e = Snapshot::parse(&f).unwrap_err();
    assert_eq!(
        e,
        SnapshotError::Version {
            found: 2,
            supported: 3
        }
    );
}

#[test]
fn corrupt_page_names_its_section_offset() {
    let mut f = small_file();
    let page_byte = section_offsets(&f)[0] + SECTION_HEADER_LEN + PAGES_PREFIX_LEN + 100;
    f[page_byte] ^= 0x40;
    let e = Snapshot::parse(&f).unwrap_err();
    let SnapshotError::SectionCrc { offset, kind, .. } = e else {
        panic!("{e:?}")
    };
    assert_eq!(kind, SectionKind::Pages);
    assert!(e.to_string().contains(&alloc::format!("offset {offset}")));
}

// ---- structural refusals behind valid CRCs ---------------------------------------------

/// Recomputes the header CRC, every section CRC whose section fits, and the trailer CRC, so a
/// deliberately malformed file reaches the checks behind the checksums.
fn reseal(f: &mut [u8]) {
    if f.len() >= HEADER_LEN {
        let c = crc32(&f[..116]);
        f[116..120].copy_from_slice(&c.to_le_bytes());
    }
    let Some(end) = f.len().checked_sub(TRAILER_LEN) else {
        return;
    };
    let mut at = HEADER_LEN;
    while at + SECTION_HEADER_LEN <= end {
        let len = u64::from_le_bytes(f[at + 8..at + 16].try_into().unwrap());
        let Some(stop) = usize::try_from(len)
            .ok()
            .and_then(|l| (at + SECTION_HEADER_LEN).checked_add(l))
            .filter(|&s| s <= end)
        else {
            break;
        };
        let mut c = super::crc::Crc32::new();
        c.update(&f[at..at + 16]);
        c.update(&f[at + SECTION_HEADER_LEN..stop]);
        f[at + 16..at + 20].copy_from_slice(&c.value().to_le_bytes());
        at = stop;
    }
    if end >= HEADER_LEN {
        let c = crc32(&f[..end]);
        f[end + 24..end + 28].copy_from_slice(&c.to_le_bytes());
    }
}

/// Offsets of the sections of a valid file.
fn section_offsets(f: &[u8]) -> Vec<usize> {
    let mut v = Vec::new();
    let mut at = HEADER_LEN;
    while at < f.len() - TRAILER_LEN {
        v.push(at);
        at += SECTION_HEADER_LEN
            + u64::from_le_bytes(f[at + 8..at + 16].try_into().unwrap()) as usize;
    }
    v
}

fn refused_with(mut f: Vec<u8>, edit: impl FnOnce(&mut Vec<u8>)) -> SnapshotError {
    edit(&mut f);
    reseal(&mut f);
    Snapshot::parse(&f).unwrap_err()
}

#[test]
fn structural_errors_behind_valid_crcs() {
    // small_file sections: PAGES, VCPU, VGIC, UART.
    let f = small_file();
    let s = section_offsets(&f);
    assert_eq!(s.len(), 4);
    let set32 =
        |f: &mut Vec<u8>, at: usize, v: u32| f[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let set64 =
        |f: &mut Vec<u8>, at: usize, v: u64| f[at..at + 8].copy_from_slice(&v.to_le_bytes());

    let e = refused_with(f.clone(), |f| set32(f, s[2], 9));
    assert_eq!(
        e,
        SnapshotError::UnknownSection {
            offset: s[2],
            raw: 9
        }
    );
    assert!(e.to_string().contains("unknown section type 9"));
    assert_eq!(
        refused_with(f.clone(), |f| set32(f, s[2] + 4, 1)),
        SnapshotError::SectionFlags {
            offset: s[2],
            flags: 1
        }
    );
    // The UART section retyped as a second VGIC.
    assert_eq!(
        refused_with(f.clone(), |f| set32(f, s[3], 2)),
        SnapshotError::DeviceTwice {
            offset: s[3],
            kind: DeviceKind::Vgic
        }
    );
    assert_eq!(
        refused_with(f.clone(), |f| set32(f, s[1] + 24, 1)),
        SnapshotError::VcpuIndex {
            offset: s[1],
            index: 1,
            vcpus: 1
        }
    );
    assert_eq!(
        refused_with(f.clone(), |f| set32(f, s[1] + 28, 2)),
        SnapshotError::VcpuPower {
            offset: s[1],
            index: 0,
            raw: 2
        }
    );
    let pstate_at = s[1] + 24 + 8 + 33 * 8;
    assert_eq!(
        refused_with(f.clone(), |f| set64(f, pstate_at, 0x3c9)),
        SnapshotError::VcpuPstate {
            offset: s[1],
            index: 0,
            pstate: 0x3c9
        }
    );
    // The VCPU section retyped as UART: a second UART.
    assert_eq!(
        refused_with(f.clone(), |f| set32(f, s[1], 3)),
        SnapshotError::DeviceTwice {
            offset: s[3],
            kind: DeviceKind::Uart
        }
    );
    // The VCPU section cut out (and the trailer's count fixed): vCPU 0 is missing.
    assert_eq!(
        refused_with(f.clone(), |f| {
            f.drain(s[1]..s[2]);
            let end = f.len() - TRAILER_LEN;
            set64(f, end + 8, 3);
        }),
        SnapshotError::MissingVcpu { index: 0 }
    );
    assert_eq!(
        refused_with(f.clone(), |f| set64(f, s[0] + 24, FIRST_GFN + 4)),
        SnapshotError::RunOutsideRam {
            offset: s[0],
            first_gfn: FIRST_GFN + 4,
            count: 1
        }
    );
    assert_eq!(
        refused_with(f.clone(), |f| set64(f, s[0] + 32, 2)),
        SnapshotError::RunCount {
            offset: s[0],
            count: 2,
            length: 16 + 4096
        }
    );
    assert_eq!(
        refused_with(f.clone(), |f| set64(f, s[0] + 32, 0)),
        SnapshotError::RunCount {
            offset: s[0],
            count: 0,
            length: 16 + 4096
        }
    );
    assert_eq!(
        refused_with(f.clone(), |f| {
            let end = f.len() - TRAILER_LEN;
            set64(f, end + 16, 2);
        }),
        SnapshotError::TrailerCounts {
            sections: 4,
            sections_found: 4,
            pages: 2,
            pages_found: 1
        }
    );
    assert_eq!(
        refused_with(f.clone(), |f| set32(f, s[0] + 20, 1)),
        SnapshotError::Reserved { offset: s[0] + 20 }
    );
    assert_eq!(
        refused_with(f.clone(), |f| set32(f, 112, 1)),
        SnapshotError::Reserved { offset: 112 }
    );
    assert_eq!(
        refused_with(f.clone(), |f| set64(f, 32, 5)),
        SnapshotError::Kind { raw: 1, base_id: 5 }
    );
    assert_eq!(
        refused_with(f.clone(), |f| set32(f, 16, 3)),
        SnapshotError::Kind { raw: 3, base_id: 0 }
    );
    assert_eq!(
        refused_with(f.clone(), |f| f[41] = 0),
        SnapshotError::Config(ConfigError::Name),
        "bytes after the first NUL"
    );
    assert_eq!(
        refused_with(f.clone(), |f| set32(f, 72, 129)),
        SnapshotError::Config(ConfigError::VcpuCount { vcpus: 129 })
    );
    assert_eq!(
        refused_with(f.clone(), |f| set64(f, 104, 0)),
        SnapshotError::Config(ConfigError::CounterFrequency)
    );
    assert_eq!(
        refused_with(f.clone(), |f| set32(f, 12, 128)),
        SnapshotError::HeaderLength {
            found: 128,
            expected: 120
        }
    );
    let e = refused_with(f.clone(), |f| f.extend_from_slice(&[0; 8]));
    assert!(matches!(e, SnapshotError::NoTrailer { .. }), "{e:?}");
    // A length running into the trailer.
    let e = refused_with(f.clone(), |f| set64(f, s[3] + 8, 1 << 40));
    assert!(
        matches!(
            e,
            SnapshotError::Truncated {
                what: "section payload",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn overlapping_runs_are_refused() {
    let mut spec = full_spec(1);
    spec.runs = vec![
        (FIRST_GFN + 4, pages(FIRST_GFN + 4, 4, 1)),
        (FIRST_GFN + 20, pages(FIRST_GFN + 20, 1, 2)),
    ];
    let f = write(&spec).0;
    let s = section_offsets(&f);
    let second_run = s[2]; // PAGES, VCPU, PAGES, ...
    assert_eq!(&f[second_run..second_run + 4], &4u32.to_le_bytes());
    let e = refused_with(f.clone(), |f| {
        f[second_run + 24..second_run + 32].copy_from_slice(&(FIRST_GFN + 7).to_le_bytes())
    });
    assert_eq!(
        e,
        SnapshotError::PageTwice {
            offset: second_run,
            gfn: FIRST_GFN + 7
        }
    );
    // Adjacent is fine.
    let mut ok = f.clone();
    ok[second_run + 24..second_run + 32].copy_from_slice(&(FIRST_GFN + 8).to_le_bytes());
    reseal(&mut ok);
    let snap = Snapshot::parse(&ok).unwrap();
    assert_eq!(
        snap.runs().map(|r| r.first_gfn).collect::<Vec<_>>(),
        [FIRST_GFN + 4, FIRST_GFN + 8]
    );
}

/// Writes a LIVE file with `runs` in order and checks every frame reads as the latest copy.
fn check_live(runs: &[(u64, usize, u8)]) {
    let mut spec = full_spec(1);
    spec.header.live = true;
    spec.runs = runs
        .iter()
        .map(|&(off, n, seed)| (FIRST_GFN + off, pages(FIRST_GFN + off, n, seed)))
        .collect();
    let (f, summary) = write(&spec);
    let s = Snapshot::parse(&f).unwrap();
    assert!(s.header().live);
    let mut want = alloc::collections::BTreeMap::new();
    for (gfn, data) in &spec.runs {
        for (i, p) in data.chunks(PAGE_SIZE).enumerate() {
            want.insert(gfn + i as u64, p);
        }
    }
    let got: Vec<(u64, &[u8])> = s.runs().flat_map(|r| r.pages()).collect();
    let want: Vec<(u64, &[u8])> = want.into_iter().collect();
    assert_eq!(got, want, "runs {runs:?}");
    for &(gfn, p) in &want {
        assert_eq!(s.page(gfn), Some(p));
    }
    assert_eq!(s.page_count(), want.len() as u64);
    assert_eq!(s.pages_written(), summary.pages);
    check_accepted(&s);
}

#[test]
fn live_file_keeps_the_latest_copy_of_each_page() {
    check_live(&[(0, 4, 1), (2, 1, 2), (3, 3, 3), (1, 1, 4)]);
    check_live(&[(5, 2, 1), (0, 10, 2)]);
    check_live(&[(0, 10, 1), (2, 2, 2), (6, 2, 3), (1, 8, 4), (0, 1, 5)]);
    // The same repeats without LIVE are refused.
    let mut spec = full_spec(1);
    spec.runs = vec![
        (FIRST_GFN, pages(FIRST_GFN, 2, 1)),
        (FIRST_GFN + 1, pages(FIRST_GFN + 1, 1, 2)),
    ];
    let f = write(&spec).0;
    assert!(
        matches!(Snapshot::parse(&f), Err(SnapshotError::PageTwice { gfn, .. }) if gfn == FIRST_GFN + 1)
    );
    let e = refused_with(small_file(), |f| f[20] = 2);
    assert_eq!(e, SnapshotError::HeaderFlags { flags: 2 });
}

// ---- fuzzing ---------------------------------------------------------------------------

#[test]
fn every_truncation_is_refused() {
    let f = small_file();
    Snapshot::parse(&f).unwrap();
    for len in 0..f.len() {
        assert!(
            Snapshot::parse(&f[..len]).is_err(),
            "accepted {len} of {} bytes",
            f.len()
        );
    }
}

#[test]
fn every_single_byte_corruption_is_refused() {
    let f = small_file();
    let mut g = f.clone();
    for at in 0..f.len() {
        // A different bit per offset, and a whole-byte change, at every offset.
        for mask in [1u8 << (at % 8), 0xff] {
            g[at] ^= mask;
            assert!(
                Snapshot::parse(&g).is_err(),
                "accepted a flip of {mask:#x} at {at}"
            );
            g[at] ^= mask;
        }
    }
}

/// Whatever `parse` accepts is internally consistent.
fn check_accepted(s: &Snapshot<'_>) {
    let cfg = s.header().config;
    assert_eq!(s.vcpus().len(), cfg.vcpus as usize);
    for (i, v) in s.vcpus().iter().enumerate() {
        assert_eq!(v.index as usize, i);
    }
    let ram = cfg.ram_gfns();
    let mut total = 0;
    let mut prev_end = 0;
    for r in s.runs() {
        assert!(r.count() > 0 && r.first_gfn >= ram.start && r.first_gfn + r.count() <= ram.end);
        assert!(r.first_gfn >= prev_end);
        prev_end = r.first_gfn + r.count();
        assert_eq!(r.data.len() as u64, r.count() * 4096);
        total += r.count();
    }
    assert_eq!(total, s.page_count());
    assert!(s.pages_written() >= total);
    if !s.header().live {
        assert_eq!(s.pages_written(), total);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_are_refused(tail in prop::collection::vec(any::<u8>(), 0..600), prefix in 0usize..4) {
        // Random data behind more and more of a valid header start, to get past the magic.
        let mut f = small_file()[..[0, 8, 12, 16][prefix]].to_vec();
        f.extend_from_slice(&tail);
        prop_assert!(Snapshot::parse(&f).is_err());
    }

    #[test]
    fn random_bit_flips_are_refused(flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4)) {
        let f = small_file();
        let mut g = f.clone();
        for (at, bit) in flips {
            g[at.index(f.len())] ^= 1 << bit;
        }
        // Flips that cancel out leave the original, which must still parse the same.
        match Snapshot::parse(&g) {
            Ok(s) => {
                prop_assert_eq!(&g, &f);
                check_accepted(&s);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn byte_overwrites_are_refused(at in any::<prop::sample::Index>(), bytes in prop::collection::vec(any::<u8>(), 1..16)) {
        let f = small_file();
        let mut g = f.clone();
        let at = at.index(f.len());
        for (i, b) in bytes.iter().enumerate() {
            if let Some(x) = g.get_mut(at + i) {
                *x = *b;
            }
        }
        if g != f {
            prop_assert!(Snapshot::parse(&g).is_err());
        }
    }

    /// Structural mutations with repaired CRCs: whatever gets through must be consistent.
    #[test]
    fn resealed_mutations_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..6),
        vcpus in 1u32..3,
    ) {
        let mut spec = full_spec(vcpus);
        spec.runs.truncate(2);
        spec.runs[0].1.truncate(PAGE_SIZE);
        let mut f = write(&spec).0;
        for (at, byte, op) in edits {
            let i = at.index(f.len() + 1);
            match op {
                0 => if i < f.len() { f[i] = byte },
                1 => f.insert(i, byte),
                2 => if i < f.len() { f.remove(i); },
                // Small values in length-like positions reach the range checks.
                _ => if i + 8 <= f.len() { f[i..i + 8].copy_from_slice(&u64::from(byte).to_le_bytes()) },
            }
        }
        reseal(&mut f);
        if let Ok(s) = Snapshot::parse(&f) {
            check_accepted(&s);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn live_runs_resolve_to_the_latest_copy(
        runs in prop::collection::vec((0u64..24, 1usize..6, any::<u8>()), 1..8),
    ) {
        check_live(&runs);
    }
}

/// Throughput figure for the notes: `cargo test -p hyp --lib --release -- --ignored
/// snapshot_throughput --nocapture` (64 MiB of pages in 2 MiB runs).
#[test]
#[ignore]
fn snapshot_throughput() {
    extern crate std;
    let ram_pages = 16384;
    let data = pages(FIRST_GFN, 512, 7);
    let h = header(1, Kind::Full, config(1, ram_pages));
    let t = std::time::Instant::now();
    let mut out = Vec::with_capacity(ram_pages as usize * PAGE_SIZE + (1 << 20));
    let mut w = SnapshotWriter::begin(&mut out, &h).unwrap();
    w.vcpu(&vcpu(0, 1)).unwrap();
    for run in 0..ram_pages / 512 {
        w.pages(FIRST_GFN + run * 512, &data).unwrap();
    }
    w.finish().unwrap();
    let written = t.elapsed();
    let t = std::time::Instant::now();
    let s = Snapshot::parse(&out).unwrap();
    let parsed = t.elapsed();
    assert_eq!(s.page_count(), ram_pages);
    let mib = out.len() as f64 / (1 << 20) as f64;
    std::println!(
        "{mib:.0} MiB: write {:.0} MiB/s, parse {:.0} MiB/s",
        mib / written.as_secs_f64(),
        mib / parsed.as_secs_f64()
    );
}

/// One random snapshot of a chain: runs of (frame offset, pages, fill) and whether it is LIVE.
type RandomSnap = (Vec<(u64, usize, u8)>, bool);

fn random_snap() -> impl Strategy<Value = RandomSnap> {
    (
        prop::collection::vec((0u64..40, 1usize..4, any::<u8>()), 0..5),
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A chain reads as applying every run of every snapshot in order.
    #[test]
    fn chain_equals_applying_runs_in_order(snaps in prop::collection::vec(random_snap(), 1..4)) {
        let cfg = config(1, 48);
        let mut files = Vec::new();
        let mut want = alloc::collections::BTreeMap::new();
        for (k, (runs, live)) in snaps.iter().enumerate() {
            let id = k as u64 + 1;
            let kind = if k == 0 { Kind::Full } else { Kind::Diff { base_id: id - 1 } };
            let mut h = header(id, kind, cfg);
            // Without LIVE, keep only runs that do not overlap earlier ones of this file.
            h.live = *live;
            let mut taken = alloc::collections::BTreeSet::new();
            let mut spec_runs = Vec::new();
            for &(off, n, fill) in runs {
                let frames: Vec<u64> = (off..off + n as u64).collect();
                if !live && frames.iter().any(|f| taken.contains(f)) {
                    continue;
                }
                taken.extend(frames);
                let data = pages(FIRST_GFN + off, n, fill);
                for (i, p) in data.chunks(PAGE_SIZE).enumerate() {
                    want.insert(FIRST_GFN + off + i as u64, p.to_vec());
                }
                spec_runs.push((FIRST_GFN + off, data));
            }
            let spec = Spec { header: h, vcpus: vec![vcpu(0, id)], devices: vec![], runs: spec_runs };
            files.push(write(&spec).0);
        }
        let parsed: Vec<Snapshot<'_>> = files.iter().map(|f| Snapshot::parse(f).unwrap()).collect();
        let chain = Chain::new(parsed[0].clone(), parsed[1..].iter().cloned()).unwrap();
        let mut got: Vec<(u64, Vec<u8>)> = chain.pages().map(|(g, p)| (g, p.to_vec())).collect();
        got.sort();
        let want: Vec<(u64, Vec<u8>)> = want.into_iter().collect();
        prop_assert_eq!(chain.page_count(), want.len() as u64);
        for (gfn, p) in &want {
            prop_assert_eq!(chain.page(*gfn), Some(&p[..]));
        }
        prop_assert_eq!(got, want);
        prop_assert_eq!(chain.vcpus()[0], vcpu(0, snaps.len() as u64));
    }
}
